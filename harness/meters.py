"""Time, memory and energy meters behind one small protocol, composed around the phases of a run.

A `Meter` is opened when a phase starts and closed when it ends, returning that phase's figures
(units in their names). Phases nest: a phase inside another counts towards both. `Metering`
opens every meter of a run around a block (`with metering.phase("generate"): ...`):

- `WallClock`: wall time.
- `CpuMemory`: peak resident memory of the process. Linux keeps a high-water mark (VmHWM)
  that writing 5 to /proc/self/clear_refs resets, so each phase gets its own peak at no cost;
  where that is refused, a background thread samples RSS instead.
- `TorchCudaMemory`: torch's peak allocated and reserved CUDA memory, reset per phase.
- `NvmlMeter`: GPU energy from deltas of NVML's energy counter (measured, whole device) and,
  from a background thread at about 10 Hz, NVML's utilisation (the share of time any kernel
  ran, not SM occupancy), this process's and the devices' memory.
- `CodecarbonEnergy`: CPU and RAM energy from codecarbon's offline tracker for this process
  (model estimates unless the machine has power counters such as RAPL), and the grid's carbon
  intensity for CO2. Its 1-2 s hardware probe is paid once per process, at construction, outside
  any timed phase; a phase costs it about 5 ms, so phases wrap loops, never single images.

A meter that cannot measure here (no GPU, no NVML, codecarbon failing) is left out and its
figures are None: metering never fails a run. Per-batch timing inside generation (time to first
token, decode time per token) comes from `harness.generate.BatchTiming`; `summarise` turns the
phases and timings into the record's `Measurements`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.records import Measurements, PhaseFigures

if TYPE_CHECKING:
    from harness.generate import BatchTiming

METERING_VERSION = 1  # bump when figures change meaning: older records are then recomputed
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


# --------------------------------------------------------------------------- time


class WallClock:
    def __init__(self) -> None:
        self._starts: list[float] = []

    def open(self) -> None:
        self._starts.append(time.perf_counter())

    def close(self) -> Figures:
        return {"wall_s": time.perf_counter() - self._starts.pop()}


# --------------------------------------------------------------------------- memory


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
    the interval."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, current_rss_mib())

    def start(self) -> None:
        self.peak = current_rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def read(self) -> tuple[float]:
        self.peak = max(self.peak, current_rss_mib())
        return (self.peak,)

    def reset(self) -> None:
        self.peak = current_rss_mib()


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

    def __init__(self) -> None:
        import torch

        self._cuda = torch.cuda
        self._devices = metered_cuda_devices()
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


def metered_cuda_devices() -> list[int]:
    """The CUDA devices this process meters: every visible one, or in a data-parallel process
    group (`harness.distributed`) only its own, so that the ranks' figures add up."""
    import torch

    from harness.distributed import current

    group = current()
    if group is not None and group.device == "cuda":
        return [torch.cuda.current_device()]
    return list(range(torch.cuda.device_count()))


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
    def create(cls, interval_s: float = 0.1) -> NvmlMeter | None:
        """A meter over torch's visible CUDA devices, or None when there is no GPU or NVML."""
        try:
            import pynvml
            import torch

            if not torch.cuda.is_available():
                return None
            pynvml.nvmlInit()
            handles = [_nvml_handle(pynvml, torch, i) for i in metered_cuda_devices()]
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
    def standard(cls, device: str, country: str | None = None, *, energy: bool = True) -> Metering:
        """Every meter that can measure on `device` ("cpu" or "cuda"); codecarbon is warmed up
        here, outside any phase."""
        meters: list[Meter] = [CpuMemory()]
        if device == "cuda":
            meters.append(TorchCudaMemory())
            nvml = NvmlMeter.create()
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


# --------------------------------------------------------------------------- the record


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _sig(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def summarise(
    phases: Mapping[str, PhaseFigures],
    timings: Sequence[BatchTiming],
    new_tokens: Sequence[int],
    *,
    fixed_new_tokens: int | None = None,
    energy: EnergyInfo | None = None,
) -> Measurements:
    """The record's Measurements from the run's phases ("generate" required; "build", "load"
    and "score" when measured), the batch timings and each image's new-token count."""
    gen = phases["generate"]
    n = len(new_tokens)
    tokens = sum(new_tokens)
    wall = gen.wall_s

    per_image = [t.wall_s / t.n_images for t in timings for _ in range(t.n_images)]
    ttft = [
        t.first_token_s for t in timings if t.first_token_s is not None for _ in range(t.n_images)
    ]
    decode_steps = sum(t.decode_steps for t in timings)
    decode_s = sum(t.decode_s for t in timings)

    parts = [gen.gpu_energy_j, gen.cpu_energy_j, gen.ram_energy_j]
    known = [p for p in parts if p is not None]
    total = sum(known) if known else None
    intensity = energy.carbon_intensity_g_per_kwh if energy else None
    estimated = None
    if gen.cpu_energy_j is not None or gen.ram_energy_j is not None:
        estimated = bool(energy and (energy.cpu_estimated or energy.ram_estimated))
    elif gen.gpu_energy_j is not None:
        estimated = False

    return Measurements(
        metering_version=METERING_VERSION,
        length_mode="fixed" if fixed_new_tokens else "natural",
        fixed_new_tokens=fixed_new_tokens,
        build_s=phases["build"].wall_s if "build" in phases else None,
        load_s=phases["load"].wall_s if "load" in phases else 0.0,
        generate_s=wall,
        score_s=phases["score"].wall_s if "score" in phases else 0.0,
        preprocess_s=_r(sum(t.preprocess_s for t in timings)) if timings else None,
        prefill_s=_r(sum(t.first_token_s or 0.0 for t in timings)) if timings else None,
        decode_s=_r(decode_s) if timings else None,
        ttft_p50_ms=_r(percentile(ttft, 50) * 1000, 3) if ttft else None,
        decode_ms_per_token=_r(decode_s / decode_steps * 1000, 3) if decode_steps else None,
        per_image_p50_s=_r(percentile(per_image, 50), 5) if per_image else None,
        per_image_p90_s=_r(percentile(per_image, 90), 5) if per_image else None,
        n_images=n,
        new_tokens_total=tokens,
        new_tokens_per_image=tokens / n if n else 0.0,
        images_per_s=n / wall if wall else 0.0,
        tokens_per_s=tokens / wall if wall else 0.0,
        peak_rss_mib=gen.peak_rss_mib or 0.0,
        peak_gpu_allocated_mib=gen.peak_gpu_allocated_mib,
        peak_gpu_reserved_mib=gen.peak_gpu_reserved_mib,
        peak_gpu_process_mib=gen.peak_gpu_process_mib,
        peak_gpu_device_mib=gen.peak_gpu_device_mib,
        gpu_kernel_busy_pct=gen.gpu_kernel_busy_pct,
        energy_j=_sig(total),
        gpu_energy_j=_sig(gen.gpu_energy_j),
        cpu_energy_j=_sig(gen.cpu_energy_j),
        ram_energy_j=_sig(gen.ram_energy_j),
        energy_per_image_j=_sig(total / n) if total is not None and n else None,
        energy_per_token_j=_sig(total / tokens) if total is not None and tokens else None,
        co2eq_g=_sig(total / J_PER_KWH * intensity) if total is not None and intensity else None,
        energy_estimated=estimated,
        cpu_energy_method=energy.cpu_method if energy and gen.cpu_energy_j is not None else None,
        carbon_country=energy.country if energy else None,
        carbon_intensity_g_per_kwh=_sig(intensity),
        phases=dict(phases),
    )
