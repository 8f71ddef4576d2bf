"""One name per machine, from a record's hardware block: GPU model and count, or CPU model.

Efficiency figures (time, memory, energy) compare only between runs with the same name;
quality scores compare across machines.
"""

from __future__ import annotations

import re
from collections import Counter

from harness.records.record import Hardware


def _clean(name: str) -> str:
    """Drop what differs between tools for one part: trademarks, a clock, an `NVIDIA ` prefix."""
    text = re.sub(r"\((R|TM)\)", "", name, flags=re.I)
    text = re.sub(r"\s*@\s*[\d.]+\s*GHz", "", text, flags=re.I)
    text = re.sub(r"^NVIDIA\s+", "", text.strip(), flags=re.I)
    return re.sub(r"\s+", " ", text).strip() or name.strip()


def hardware_name(hw: Hardware) -> str:
    """`2 x H100 80GB HBM3`, `A100-SXM4-40GB`, or `CPU: Intel Xeon Platinum 8480+ (16 cores)`."""
    if hw.device == "cuda" and hw.gpus:
        counts = Counter(_clean(g) for g in hw.gpus)
        return " + ".join(f"{n} x {g}" if n > 1 else g for g, n in sorted(counts.items()))
    return f"CPU: {_clean(hw.cpu)} ({hw.cpu_count} cores)"
