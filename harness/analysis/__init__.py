"""After the fact: score pairs, compare two variants, the regression gate, the lm-eval export."""
