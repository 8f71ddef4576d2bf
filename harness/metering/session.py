"""The meters of a run, opened together around each phase."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from harness.metering.base import Figures, Meter
from harness.metering.clock import WallClock
from harness.metering.energy import CodecarbonEnergy, EnergyInfo, carbon_country
from harness.metering.memory import CpuMemory, TorchCudaMemory
from harness.metering.nvml import NvmlMeter
from harness.metering.summary import _r, _sig
from harness.records.record import PhaseFigures

# --------------------------------------------------------------------------- composition


class Phase:
    """Handle of one metered block; `figures` is set when the block ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: PhaseFigures | None = None

    @property
    def result(self) -> PhaseFigures:
        if self.figures is None:
            raise RuntimeError(f"phase {self.name!r} has not ended")
        return self.figures


class Metering:
    """The meters of a run, opened together around each phase.

    Meters open in order and close in reverse: put the clock last, so the others' own costs
    fall outside the timed span.
    """

    def __init__(self, meters: Sequence[Meter], energy: EnergyInfo | None = None) -> None:
        self.meters = list(meters)
        self.energy = energy

    @classmethod
    def standard(
        cls,
        device: str,
        country: str | None = None,
        *,
        energy: bool = True,
        cuda_devices: Sequence[int] | None = None,
    ) -> Metering:
        """Every meter that can measure on `device` ("cpu" or "cuda"), over `cuda_devices`
        (default: every visible one); codecarbon is warmed up here, outside any phase."""
        meters: list[Meter] = [CpuMemory()]
        if device == "cuda":
            meters.append(TorchCudaMemory(cuda_devices))
            nvml = NvmlMeter.create(cuda_devices)
            if nvml is not None:
                meters.append(nvml)
        info = None
        if energy:
            cc = CodecarbonEnergy.create(carbon_country(country))
            if cc is not None:
                meters.append(cc)
                info = cc.info
        meters.append(WallClock())
        return cls(meters, info)

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        handle = Phase(name)
        opened: list[Meter] = []
        try:
            for meter in self.meters:
                meter.open()
                opened.append(meter)
            yield handle
        finally:
            figures: Figures = {}
            for meter in reversed(opened):
                figures.update(meter.close())
            if "wall_s" in figures:
                figures["wall_s"] = _r(figures["wall_s"])
                for key in ("gpu_energy_j", "cpu_energy_j", "ram_energy_j"):
                    figures[key] = _sig(figures.get(key))
                handle.figures = PhaseFigures.model_validate(figures)
