"""Time: the wall clock of a phase, and the per-batch clock generation runs under."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness.metering.base import Figures

# --------------------------------------------------------------------------- time


class WallClock:
    def __init__(self) -> None:
        self._starts: list[float] = []

    def open(self) -> None:
        self._starts.append(time.perf_counter())

    def close(self) -> Figures:
        return {"wall_s": time.perf_counter() - self._starts.pop()}


@dataclass(frozen=True)
class BatchTiming:
    """Wall times of one batch, in seconds. Every image of the batch shares them."""

    n_images: int
    preprocess_s: float  # image loading and resizing, processor, copy to the device
    generate_s: float  # the `generate` call
    first_token_s: float | None  # from the `generate` call to the first new token's arrival
    decode_s: float  # from the first new token to the last
    decode_steps: int  # steps after the first (each gives one token to every row)
    new_tokens: int  # new tokens of the batch's images (up to and including EOS)
    wall_s: float  # the whole batch, decoding the text included


class BatchClock:
    """Notes the phases of one batch; as `generate`'s streamer it notes each step's arrival.

    `generate` puts the prompt first, then each step's new tokens as a host tensor (the copy is
    already a synchronisation point of the decoding loop), so arrival times are true step ends.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.generate_start = self.generate_end = self.start
        self.steps: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.steps.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass

    def timing(self, n_images: int, new_tokens: int) -> BatchTiming:
        first = self.steps[0] if self.steps else None
        return BatchTiming(
            n_images=n_images,
            preprocess_s=self.generate_start - self.start,
            generate_s=self.generate_end - self.generate_start,
            first_token_s=None if first is None else first - self.generate_start,
            decode_s=self.steps[-1] - self.steps[0] if self.steps else 0.0,
            decode_steps=max(len(self.steps) - 1, 0),
            new_tokens=new_tokens,
            wall_s=time.perf_counter() - self.start,
        )
