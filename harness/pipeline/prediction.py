"""What generation hands on, and the per-sample seeds: torch-free, so that the modules that
only read, merge or check predictions (checkpoints, executors, plans, verification) import no
model library."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    id: str
    text: str
    new_tokens: int
    sample_seed: int
    error: str | None = None  # the image could not be loaded: no caption was generated


def sample_seed(run_seed: int, sample_id: str) -> int:
    """A 63-bit seed from (run seed, sample id): stable across machines and Python runs."""
    digest = hashlib.sha256(f"{run_seed}\x1f{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
