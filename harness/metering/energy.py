"""Energy on the CPU and RAM through codecarbon, and its carbon country."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from harness.metering.base import (
    CARBON_COUNTRY_ENV,
    DEFAULT_CARBON_COUNTRY,
    J_PER_KWH,
    MEASURED_CPU_MODES,
    Figures,
    log,
)

# --------------------------------------------------------------------------- codecarbon


@dataclass(frozen=True)
class EnergyInfo:
    """How CPU/RAM energy and CO2 were obtained: travels into the record beside the figures."""

    country: str
    carbon_intensity_g_per_kwh: float | None
    cpu_method: str
    cpu_estimated: bool
    ram_estimated: bool = True  # codecarbon models RAM power from memory size


def known_countries() -> dict[str, str]:
    """ISO 3166-1 alpha-3 code -> country name, for which codecarbon has a grid energy mix."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    return {code: data.get("country_name", code) for code, data in mix.items()}


def carbon_country(value: str | None = None) -> str:
    """The country whose grid intensity turns energy into CO2: the option, the environment
    variable ROCOBENCH_CARBON_COUNTRY, or USA. Raises ValueError for a code codecarbon lacks."""
    code = (value or os.environ.get(CARBON_COUNTRY_ENV) or DEFAULT_CARBON_COUNTRY).upper()
    known = known_countries()
    if code not in known:
        import difflib

        near = difflib.get_close_matches(code, known, n=3, cutoff=0.3)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise ValueError(f"unknown carbon country {code!r} (ISO 3166-1 alpha-3 code){hint}")
    return code


_TRACKERS: dict[str, tuple[Any, EnergyInfo]] = {}
_TRACKERS_LOCK = threading.Lock()


def warmed_tracker(country: str) -> tuple[Any, EnergyInfo]:
    """codecarbon's offline tracker for `country`, its hardware probe done: one per process.

    Offline, no output methods: nothing is written and nothing is sent. `process` tracking
    attributes CPU power by this process's CPU time and RAM power by its memory.
    """
    with _TRACKERS_LOCK:
        if country in _TRACKERS:
            return _TRACKERS[country]
        logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it logs every measurement
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code=country,
            output_methods=[],
            tracking_mode="process",
            allow_multiple_runs=True,  # no lock file: tests and parallel runs share the machine
            log_level="error",
        )
        tracker.start_task("warm-up")  # the 1-2 s hardware probe happens here
        warm = tracker.stop_task()
        intensity = None
        if warm is not None and warm.energy_consumed > 0:
            intensity = warm.emissions / warm.energy_consumed * 1000  # kg/kWh -> g/kWh
        hardware = getattr(tracker, "_hardware", [])
        cpu = next((h for h in hardware if type(h).__name__ == "CPU"), None)
        mode = str(getattr(cpu, "_mode", "unknown"))
        tdp = getattr(cpu, "_tdp", None)
        estimated = mode not in MEASURED_CPU_MODES
        method = f"codecarbon {mode}"
        if estimated and tdp:
            method += f" (estimate: process CPU share x {tdp} W TDP)"
        info = EnergyInfo(country, intensity, method, estimated)
        _TRACKERS[country] = (tracker, info)
        return tracker, info


class CodecarbonEnergy:
    """CPU and RAM energy of each phase from codecarbon's tasks.

    codecarbon measures one task at a time, so nesting is done here: the running task is cut at
    every phase boundary and each piece is credited to every phase open during it.
    """

    def __init__(self, tracker: Any, info: EnergyInfo) -> None:
        self.tracker = tracker
        self.info = info
        self._open: list[list[float | None]] = []  # per open phase: [cpu J, ram J]

    @classmethod
    def create(cls, country: str) -> CodecarbonEnergy | None:
        try:
            return cls(*warmed_tracker(country))
        except Exception as err:  # codecarbon broken here: no CPU/RAM energy, the run goes on
            log.warning("codecarbon unavailable (%s): CPU and RAM energy not measured", err)
            return None

    def _piece(self) -> tuple[float | None, float | None]:
        try:
            data = self.tracker.stop_task()  # None when codecarbon could not measure
        except Exception as err:  # a failing estimate must not fail the run
            log.warning("codecarbon failed (%s): CPU and RAM energy not measured", err)
            data = None
        if data is None:
            return None, None
        return data.cpu_energy * J_PER_KWH, data.ram_energy * J_PER_KWH

    def _start(self) -> None:
        try:
            self.tracker.start_task("phase")
        except Exception as err:
            log.warning("codecarbon failed (%s): CPU and RAM energy not measured", err)

    def _credit(self, piece: tuple[float | None, float | None]) -> None:
        for acc in self._open:
            for i, value in enumerate(piece):
                current = acc[i]
                acc[i] = None if current is None or value is None else current + value

    def open(self) -> None:
        if self._open:
            self._credit(self._piece())
        self._open.append([0.0, 0.0])
        self._start()

    def close(self) -> Figures:
        self._credit(self._piece())
        cpu, ram = self._open.pop()
        if self._open:
            self._start()
        return {"cpu_energy_j": cpu, "ram_energy_j": ram}
