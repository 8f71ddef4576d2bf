"""Text normalisations shared by task specs and metrics."""

from __future__ import annotations

import re
import string

_DIGIT_RUN = re.compile(r"\d+")
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def imageclef_normalise(text: str) -> str:
    """ImageCLEFmedical Caption's caption normalisation, in its order: lowercase, every run of
    digits (regex \\d+, Unicode digits included) -> "number", ASCII punctuation
    (string.punctuation) removed. Whitespace is left as it is."""
    return _DIGIT_RUN.sub("number", text.lower()).translate(_ASCII_PUNCTUATION)
