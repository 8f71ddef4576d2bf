"""Memory: the process's peak resident set on the CPU; torch's per-device peaks on CUDA."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from harness.metering.base import MIB, Figures, HighWater

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def vm_hwm_mib() -> float:
    """The kernel's peak-RSS mark of this process (VmHWM), MiB."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError("no VmHWM in /proc/self/status")


def reset_vm_hwm() -> None:
    _CLEAR_REFS.write_text("5")  # 5: reset the peak RSS mark to the current RSS (Linux >= 4.0)


def can_reset_vm_hwm() -> bool:
    try:
        vm_hwm_mib()
        reset_vm_hwm()
    except OSError:
        return False
    return True


def current_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


class RssSampler:
    """Peak RSS by polling, where the kernel's mark cannot be reset: misses spikes shorter than
    the interval. A reading taken before a reset is dropped, not written over the reset mark."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._epoch = 0  # advanced by each reset

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                epoch = self._epoch
            value = current_rss_mib()
            with self._lock:
                if epoch == self._epoch:
                    self.peak = max(self.peak, value)

    def start(self) -> None:
        self.reset()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def read(self) -> tuple[float]:
        value = current_rss_mib()
        with self._lock:
            self.peak = max(self.peak, value)
            return (self.peak,)

    def reset(self) -> None:
        value = current_rss_mib()
        with self._lock:
            self._epoch += 1
            self.peak = value


class CpuMemory:
    """Peak RSS per phase: the kernel's mark, reset per phase; sampled where it cannot be."""

    def __init__(self, sample: bool | None = None) -> None:
        self.sampler: RssSampler | None = None
        if sample is None:
            sample = not can_reset_vm_hwm()
        if sample:
            self.sampler = RssSampler()
            self._marks = HighWater(self.sampler.read, self.sampler.reset)
        else:
            self._marks = HighWater(lambda: (vm_hwm_mib(),), reset_vm_hwm)

    @property
    def method(self) -> str:
        return "sampled" if self.sampler is not None else "VmHWM"

    def open(self) -> None:
        if self.sampler is not None and self._marks.depth == 0:
            self.sampler.start()
        self._marks.open()

    def close(self) -> Figures:
        (peak,) = self._marks.close()
        if self.sampler is not None and self._marks.depth == 0:
            self.sampler.stop()
        return {"peak_rss_mib": round(peak, 1)}


class TorchCudaMemory:
    """torch's peak allocated and reserved memory over all visible CUDA devices, per phase."""

    def __init__(self, devices: Sequence[int] | None = None) -> None:
        import torch

        self._cuda = torch.cuda
        self._devices = list(visible_cuda_devices() if devices is None else devices)
        self._marks = HighWater(self._read, self._reset)

    def _read(self) -> tuple[float, float]:
        allocated = sum(self._cuda.max_memory_allocated(d) for d in self._devices)
        reserved = sum(self._cuda.max_memory_reserved(d) for d in self._devices)
        return allocated / MIB, reserved / MIB

    def _reset(self) -> None:
        for d in self._devices:
            self._cuda.reset_peak_memory_stats(d)

    def open(self) -> None:
        self._marks.open()

    def close(self) -> Figures:
        allocated, reserved = self._marks.close()
        return {
            "peak_gpu_allocated_mib": round(allocated, 1),
            "peak_gpu_reserved_mib": round(reserved, 1),
        }


def visible_cuda_devices() -> list[int]:
    """Every CUDA device torch sees: what a single process meters. A data-parallel rank meters
    only its own device (the executor passes it), so that the ranks' figures add up."""
    import torch

    return list(range(torch.cuda.device_count()))
