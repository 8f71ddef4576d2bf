"""One run: reuse or redo each seed, then resume, generate, write, score and record it."""
