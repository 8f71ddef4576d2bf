"""What every meter is: one kind of figure over nested phases; shared constants."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

METERING_VERSION = 3  # bump when figures change meaning: older records are then recomputed
# 2: memory per variant (baseline before the load, the process it ran in)
# 3: peak_tensor_mib, the tensors counted over a batch generated again after the timed phase
MIB = 2**20
J_PER_KWH = 3.6e6
CARBON_COUNTRY_ENV = "ROCOBENCH_CARBON_COUNTRY"
DEFAULT_CARBON_COUNTRY = "USA"
# codecarbon CPU modes that read a power counter; every other mode is a model estimate
MEASURED_CPU_MODES = frozenset({"intel_rapl", "intel_power_gadget", "apple_powermetrics"})

Figures = dict[str, float | int | None]
log = logging.getLogger(__name__)


class Meter(Protocol):
    """One kind of figure over phases: `open` when a phase starts, `close` when it ends.

    Phases nest, so `open` may be called again before `close`; each `close` ends the innermost
    open phase and returns its figures, keys being `PhaseFigures` field names.
    """

    def open(self) -> None: ...

    def close(self) -> Figures: ...


class HighWater:
    """Per-phase peaks of nested phases from one resettable high-water mark.

    Opening a phase resets the mark; what the enclosing phases had reached so far is kept on a
    stack first, so a nested phase never hides an outer phase's earlier peak.
    """

    def __init__(self, read: Callable[[], tuple[float, ...]], reset: Callable[[], None]) -> None:
        self._read = read
        self._reset = reset
        self._stack: list[tuple[float, ...]] = []

    @property
    def depth(self) -> int:
        return len(self._stack)

    def open(self) -> None:
        if self._stack:
            now = self._read()
            self._stack = [_vmax(seen, now) for seen in self._stack]
        self._reset()
        self._stack.append(())

    def close(self) -> tuple[float, ...]:
        peak = _vmax(self._stack.pop(), self._read())
        if self._stack:
            self._stack[-1] = _vmax(self._stack[-1], peak)
        return peak


def _vmax(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...]:
    if not a:
        return b
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))
