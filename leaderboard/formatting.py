"""How the page writes numbers: scores to Table I's four decimals, costs to a few significant
digits in the unit that reads best."""

from __future__ import annotations

import json
from typing import Any

DECIMALS = 4  # as in the paper's Table I


def fmt_score(value: float) -> str:
    text = f"{value:.{DECIMALS}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0000"


def fmt_sig(value: float) -> str:
    """Three significant digits without switching to exponent notation for large values."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def fmt_count(value: float) -> str:
    """Parameter counts the way papers write them: 1.82 B, 5.3 M."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


def fmt_bytes(value: float) -> str:
    for scale, unit in ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def fmt_mib(value: float) -> str:
    return f"{value / 1024:.3g} GiB" if value >= 10 * 1024 else f"{value:,.0f} MiB"


def fmt_counted_mib(value: float) -> str:
    """Four significant digits: a counted figure, where variants of one model differ in the
    third (a tenth of a MiB of weights on 41 MiB)."""
    if value >= 10 * 1024:
        return f"{value / 1024:#.4g} GiB"
    return f"{value:,.0f} MiB" if value >= 1000 else f"{value:#.4g} MiB"


def fmt_joules(value: float) -> str:
    for scale, unit in ((1e6, "MJ"), (1e3, "kJ")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} J"


def fmt_seconds(value: float) -> str:
    if abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:,.0f} s" if abs(value) >= 1000 else f"{value:.3g} s"


def fmt_value(value: Any) -> str:
    """Any record value as short text: numbers rounded, containers as compact JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
