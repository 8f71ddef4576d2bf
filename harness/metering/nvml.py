"""NVML: GPU energy (the energy counter's delta), utilisation and process memory."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from harness.metering.base import MIB, Figures, log
from harness.metering.memory import visible_cuda_devices

# --------------------------------------------------------------------------- NVML


@dataclass(frozen=True)
class NvmlSample:
    busy_pct: float | None  # mean over devices
    process_mib: float | None  # this process, summed over devices; None if NVML cannot tell
    device_mib: float | None  # used memory, summed over devices


class NvmlMeter:
    """GPU energy (counter deltas), utilisation and memory (sampled) through NVML.

    `nvml` is the `pynvml` module (a stand-in in tests). The energy counter
    (`nvmlDeviceGetTotalEnergyConsumption`, mJ since the driver loaded) covers the whole device,
    so anything else running on it is counted too. NVML's utilisation is the share of the last
    sample period in which any kernel ran, not how busy the SMs were.
    """

    def __init__(
        self, nvml: Any, handles: Sequence[Any], interval_s: float = 0.1, pid: int | None = None
    ) -> None:
        self.nvml = nvml
        self.handles = list(handles)
        self.interval_s = interval_s
        self.pid = os.getpid() if pid is None else pid
        self.samples: list[NvmlSample] = []
        self._open: list[tuple[float | None, int]] = []  # (energy mJ at open, first sample)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def create(
        cls, devices: Sequence[int] | None = None, interval_s: float = 0.1
    ) -> NvmlMeter | None:
        """A meter over `devices` (default: torch's visible CUDA devices), or None when there is
        no GPU or NVML."""
        try:
            import pynvml
            import torch

            if not torch.cuda.is_available():
                return None
            pynvml.nvmlInit()
            handles = [_nvml_handle(pynvml, torch, i) for i in devices or visible_cuda_devices()]
        except Exception as err:  # no driver, no library, an unknown device: no GPU figures
            log.info("NVML unavailable (%s): GPU energy and utilisation not measured", err)
            return None
        return cls(pynvml, handles, interval_s)

    def energy_mj(self) -> float | None:
        try:
            read = self.nvml.nvmlDeviceGetTotalEnergyConsumption
            return float(sum(read(h) for h in self.handles))
        except self.nvml.NVMLError:  # e.g. not supported before Volta, or on a MIG slice
            return None

    def sample(self) -> NvmlSample:
        nvml = self.nvml
        busy: list[float] = []
        device = 0.0
        process: float | None = None
        for h in self.handles:
            with suppress(nvml.NVMLError):
                busy.append(float(nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            with suppress(nvml.NVMLError):
                device += nvml.nvmlDeviceGetMemoryInfo(h).used / MIB
            with suppress(nvml.NVMLError):
                for p in nvml.nvmlDeviceGetComputeRunningProcesses(h):
                    # usedGpuMemory is None without the rights to see it; in a container NVML
                    # lists host pids, so ours is not found and the figure stays None
                    if p.pid == self.pid and p.usedGpuMemory is not None:
                        process = (process or 0.0) + p.usedGpuMemory / MIB
        return NvmlSample(sum(busy) / len(busy) if busy else None, process, device)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.sample())

    def open(self) -> None:
        if not self._open:
            self.samples = []
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        self._open.append((self.energy_mj(), len(self.samples)))

    def close(self) -> Figures:
        energy_at_open, first = self._open.pop()
        energy_now = self.energy_mj()
        self.samples.append(self.sample())  # at least one sample, however short the phase
        window = self.samples[first:]
        if not self._open:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
        energy = None
        if energy_at_open is not None and energy_now is not None and energy_now >= energy_at_open:
            energy = (energy_now - energy_at_open) / 1000
        busy = [s.busy_pct for s in window if s.busy_pct is not None]
        process = [s.process_mib for s in window if s.process_mib is not None]
        device = [s.device_mib for s in window if s.device_mib is not None]
        return {
            "gpu_energy_j": energy,
            "gpu_kernel_busy_pct": round(sum(busy) / len(busy), 1) if busy else None,
            "gpu_util_samples": len(busy),
            "peak_gpu_process_mib": round(max(process), 1) if process else None,
            "peak_gpu_device_mib": round(max(device), 1) if device else None,
        }


def _nvml_handle(nvml: Any, torch: Any, index: int) -> Any:
    """NVML's handle for torch's device `index`, matched by UUID: NVML numbers devices
    physically, torch after CUDA_VISIBLE_DEVICES."""
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
    for candidate in (uuid, f"GPU-{uuid}", f"MIG-{uuid}"):
        if not uuid:
            break
        try:
            return nvml.nvmlDeviceGetHandleByUUID(candidate)
        except nvml.NVMLError:
            continue
    return nvml.nvmlDeviceGetHandleByIndex(index)
