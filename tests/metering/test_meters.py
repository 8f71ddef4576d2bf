"""Meters: CPU ones for real, NVML's arithmetic against a stand-in at the pynvml boundary, the
figures of a real run end to end, and (marked `gpu`) the real NVML and torch CUDA path."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pynvml
import pytest

from harness.metering.base import METERING_VERSION, HighWater
from harness.metering.clock import BatchTiming, WallClock
from harness.metering.energy import CodecarbonEnergy, carbon_country
from harness.metering.memory import CpuMemory, can_reset_vm_hwm
from harness.metering.nvml import NvmlMeter
from harness.metering.session import Metering
from harness.metering.summary import percentile, summarise
from harness.records.record import PhaseFigures

MIB = 2**20


def allocate(mib: int) -> mmap.mmap:
    """Anonymous memory made resident page by page; `close()` gives it back to the kernel at
    once (freed heap memory may stay resident, depending on the allocator)."""
    block = mmap.mmap(-1, mib * MIB)
    for offset in range(0, mib * MIB, mmap.PAGESIZE):
        block[offset] = 1
    return block


# --------------------------------------------------------------------------- time


def test_phases_nest_and_sum() -> None:
    metering = Metering([WallClock()])
    with metering.phase("outer") as outer:
        with metering.phase("a") as a:
            time.sleep(0.03)
        with metering.phase("b") as b:
            time.sleep(0.02)
    inner = a.result.wall_s + b.result.wall_s
    assert a.result.wall_s >= 0.03 and b.result.wall_s >= 0.02
    # outside the inner phases is ~0 (1e-4: the figures are rounded to 0.1 ms)
    assert inner - 1e-4 <= outer.result.wall_s < inner + 0.02


def test_a_phase_that_raises_still_closes_every_meter() -> None:
    clock = WallClock()
    metering = Metering([clock])
    with pytest.raises(RuntimeError), metering.phase("broken") as phase:
        raise RuntimeError("boom")
    assert phase.result.wall_s >= 0 and clock._starts == []


# --------------------------------------------------------------------------- memory


def test_high_water_keeps_outer_peaks_across_nested_resets() -> None:
    mark = [0.0]
    level = [0.0]

    def read() -> tuple[float]:
        return (mark[0],)

    def reset() -> None:
        mark[0] = level[0]

    def set_level(v: float) -> None:
        level[0] = v
        mark[0] = max(mark[0], v)

    hw = HighWater(read, reset)
    hw.open()  # outer
    set_level(100)
    set_level(10)
    hw.open()  # inner: the mark resets to 10, but the outer phase saw 100
    set_level(50)
    assert hw.close() == (50,)
    set_level(20)
    assert hw.close() == (100,)


@pytest.mark.parametrize("sample", [False, True], ids=["vmhwm", "sampled"])
def test_an_allocation_raises_peak_rss_and_each_phase_resets(sample: bool) -> None:
    if not sample and not can_reset_vm_hwm():
        pytest.skip("/proc/self/clear_refs cannot reset VmHWM here")
    metering = Metering([CpuMemory(sample=sample), WallClock()])
    with metering.phase("quiet") as quiet:
        time.sleep(0.05)
    with metering.phase("outer") as outer:
        block = allocate(256)
        time.sleep(0.05)  # long enough for the sampler to see it
        block.close()
        with metering.phase("after") as after:  # freed before this phase: its peak is low
            time.sleep(0.05)
    assert outer.result.peak_rss_mib >= quiet.result.peak_rss_mib + 200
    assert after.result.peak_rss_mib < outer.result.peak_rss_mib - 200


# --------------------------------------------------------------------------- NVML stand-in


class FakeGpu:
    """A device behind pynvml's functions: an energy counter that advances, fixed readings."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, energy: bool = True) -> None:
        self.energy_mj = {"h0": 1_000_000, "h1": 5_000_000}
        self.busy = {"h0": 80, "h1": 40}
        self.used = {"h0": 3000 * MIB, "h1": 1000 * MIB}
        self.procs = {"h0": [(os.getpid(), 2000 * MIB), (1, 500 * MIB)], "h1": []}

        def total_energy(h: str) -> int:
            if not energy:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return self.energy_mj[h]

        def processes(h: str) -> list[SimpleNamespace]:
            return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.procs[h]]

        monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", total_energy)
        monkeypatch.setattr(
            pynvml, "nvmlDeviceGetUtilizationRates", lambda h: SimpleNamespace(gpu=self.busy[h])
        )
        monkeypatch.setattr(
            pynvml, "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(used=self.used[h])
        )
        monkeypatch.setattr(pynvml, "nvmlDeviceGetComputeRunningProcesses", processes)

    def run(self, joules: dict[str, float]) -> None:
        for h, j in joules.items():
            self.energy_mj[h] += int(j * 1000)


def test_nvml_energy_deltas_utilisation_and_memory(monkeypatch) -> None:
    gpu = FakeGpu(monkeypatch)
    meter = NvmlMeter(pynvml, ["h0", "h1"], interval_s=0.005)
    meter.open()
    gpu.run({"h0": 120.5, "h1": 30.0})
    time.sleep(0.05)
    gpu.used["h0"] = 9000 * MIB  # a spike the sampler sees
    time.sleep(0.05)
    gpu.used["h0"] = 3000 * MIB
    figures = meter.close()
    assert figures["gpu_energy_j"] == pytest.approx(150.5)
    assert figures["gpu_kernel_busy_pct"] == pytest.approx(60.0)  # mean over the two devices
    assert figures["gpu_util_samples"] >= 3
    assert figures["peak_gpu_device_mib"] == pytest.approx(10000)
    assert figures["peak_gpu_process_mib"] == pytest.approx(2000)  # our pid only
    assert meter._thread is None  # the sampler stops with the last open phase


def test_nvml_nested_phases_and_missing_counters(monkeypatch) -> None:
    gpu = FakeGpu(monkeypatch)
    meter = NvmlMeter(pynvml, ["h0"], interval_s=1.0)
    meter.open()
    gpu.run({"h0": 10})
    meter.open()
    gpu.run({"h0": 5})
    assert meter.close()["gpu_energy_j"] == pytest.approx(5)
    gpu.run({"h0": 1})
    assert meter.close()["gpu_energy_j"] == pytest.approx(16)

    gpu = FakeGpu(monkeypatch, energy=False)  # e.g. a pre-Volta GPU: no energy counter
    gpu.procs["h0"] = [(1, 100 * MIB)]  # in a container NVML lists host pids: ours is missing
    meter = NvmlMeter(pynvml, ["h0"], interval_s=1.0)
    meter.open()
    figures = meter.close()
    assert figures["gpu_energy_j"] is None
    assert figures["peak_gpu_process_mib"] is None
    assert figures["gpu_kernel_busy_pct"] == pytest.approx(80)


def test_nvml_meter_matches_torch_devices_by_uuid(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid="1234-abcd")
    )
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)

    def by_uuid(uuid: str) -> str:
        if uuid != "GPU-1234-abcd":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return "h-physical-3"

    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", by_uuid)
    meter = NvmlMeter.create()
    assert meter is not None and meter.handles == ["h-physical-3"]


def test_no_gpu_means_no_gpu_meter_and_none_figures() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert NvmlMeter.create() is None
    metering = Metering.standard("cpu", energy=False)
    with metering.phase("generate") as phase:
        pass
    figures = phase.result
    assert figures.gpu_energy_j is None and figures.peak_gpu_allocated_mib is None
    assert figures.peak_rss_mib is not None and figures.peak_rss_mib > 0


# --------------------------------------------------------------------------- codecarbon


@pytest.fixture(scope="module")
def codecarbon_meter() -> CodecarbonEnergy:
    meter = CodecarbonEnergy.create(carbon_country("USA"))  # warms up: 1-2 s, once per process
    assert meter is not None
    return meter


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_codecarbon_runs_offline_and_nests(codecarbon_meter) -> None:
    metering = Metering([codecarbon_meter, WallClock()], codecarbon_meter.info)
    with metering.phase("outer") as outer:
        busy(0.1)
        with metering.phase("inner") as inner:
            busy(0.2)
    o, i = outer.result, inner.result
    assert i.cpu_energy_j is not None and i.cpu_energy_j > 0
    assert i.ram_energy_j is not None and i.ram_energy_j > 0
    assert o.cpu_energy_j is not None and o.ram_energy_j is not None
    assert o.cpu_energy_j > i.cpu_energy_j and o.ram_energy_j > i.ram_energy_j
    # no power counters here (no RAPL): the figures are labelled as estimates
    info = codecarbon_meter.info
    assert info.country == "USA" and info.carbon_intensity_g_per_kwh
    if info.cpu_estimated:
        assert "estimate" in info.cpu_method


def test_codecarbon_warm_up_stays_out_of_phases(codecarbon_meter) -> None:
    metering = Metering([codecarbon_meter])
    start = time.perf_counter()
    for _ in range(5):
        with metering.phase("empty"):
            pass
    assert (time.perf_counter() - start) / 5 < 0.1  # a phase costs ~5 ms, not the 1-2 s probe


def test_a_failing_codecarbon_gives_none_not_an_error() -> None:
    from harness.metering.energy import EnergyInfo

    class Broken:
        def start_task(self, name: str) -> None:
            raise RuntimeError("probe failed")

        def stop_task(self) -> None:
            return None  # what codecarbon returns for a task it did not start

    meter = CodecarbonEnergy(Broken(), EnergyInfo("USA", 400.0, "codecarbon cpu_load", True))
    with Metering([meter, WallClock()]).phase("generate") as phase:
        pass
    assert phase.result.cpu_energy_j is None and phase.result.ram_energy_j is None


def test_carbon_country_option_env_and_default(monkeypatch) -> None:
    monkeypatch.delenv("ROCOBENCH_CARBON_COUNTRY", raising=False)
    assert carbon_country(None) == "USA"
    monkeypatch.setenv("ROCOBENCH_CARBON_COUNTRY", "fra")
    assert carbon_country(None) == "FRA"
    assert carbon_country("BRA") == "BRA"
    with pytest.raises(ValueError, match="unknown carbon country"):
        carbon_country("XYZ")


# --------------------------------------------------------------------------- the record


def test_percentile_matches_numpy() -> None:
    values = [0.5, 3.0, 1.0, 2.0, 9.0, 4.5]
    for q in (0, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summarise_arithmetic() -> None:
    timings = [  # batch of 2 then batch of 1
        BatchTiming(2, 0.1, 1.0, 0.2, 0.8, 8, 18, 1.2),
        BatchTiming(1, 0.05, 0.5, 0.1, 0.4, 4, 5, 0.6),
    ]
    phases = {
        "load": PhaseFigures(wall_s=3.0, peak_rss_mib=900.0),
        "generate": PhaseFigures(
            wall_s=2.0, peak_rss_mib=500.0, gpu_energy_j=100.0, cpu_energy_j=20.0, ram_energy_j=3.0
        ),
        "score": PhaseFigures(wall_s=0.5, peak_rss_mib=400.0),
    }
    from harness.metering.energy import EnergyInfo

    info = EnergyInfo("FRA", 50.0, "codecarbon cpu_load", cpu_estimated=True)
    m = summarise(phases, timings, [9, 9, 5], energy=info)
    assert m.metering_version == METERING_VERSION and m.length_mode == "natural"
    assert (m.load_s, m.generate_s, m.score_s) == (3.0, 2.0, 0.5)
    assert m.per_image_p50_s == pytest.approx(0.6)  # [0.6, 0.6, 0.6]: batch wall / batch size
    assert m.ttft_p50_ms == pytest.approx(200)  # [200, 200, 100] ms
    assert m.decode_ms_per_token == pytest.approx(1.2 / 12 * 1000)
    assert m.prefill_s == pytest.approx(0.3) and m.decode_s == pytest.approx(1.2)
    assert m.new_tokens_total == 23 and m.tokens_per_s == pytest.approx(11.5)
    assert m.images_per_s == pytest.approx(1.5)
    assert m.peak_rss_mib == 500.0  # the generation phase's; load's stays in phases
    assert m.energy_j == pytest.approx(123.0)
    assert m.energy_per_image_j == pytest.approx(41.0)
    assert m.energy_per_token_j == pytest.approx(123 / 23, rel=1e-3)
    assert m.co2eq_g == pytest.approx(123 / 3.6e6 * 50, rel=1e-3)
    assert m.energy_estimated is True
    assert set(m.phases) == {"load", "generate", "score"}

    gpu_only = {"generate": PhaseFigures(wall_s=1.0, peak_rss_mib=1.0, gpu_energy_j=7.0)}
    m = summarise(gpu_only, [], [4], fixed_new_tokens=4)
    assert (m.length_mode, m.fixed_new_tokens) == ("fixed", 4)
    assert m.energy_j == 7.0 and m.energy_estimated is False and m.co2eq_g is None
    assert m.ttft_p50_ms is None and m.per_image_p50_s is None


# --------------------------------------------------------------------------- generation


def test_metered_generation_gives_the_same_captions_and_timings(loaded_twins, sample_task) -> None:
    from harness.data.dataset import load_split
    from harness.pipeline.generate import generate_all
    from harness.specs.task import GenerationKwargs

    loaded = loaded_twins["qwen2_vl"]
    items = load_split(sample_task, limit=3).items()
    gen = GenerationKwargs(max_new_tokens=10)

    def run(**kw):
        return generate_all(
            loaded.model, loaded.processor, loaded.family, items, sample_task.doc_to_text,
            gen, 0, 2, sample_task.preprocessing.image, **kw,
        )  # fmt: skip

    timings: list[BatchTiming] = []
    metering = Metering([CpuMemory(), WallClock()])
    with metering.phase("generate") as phase:
        metered = run(timings=timings)
    assert [p.text for p in metered] == [p.text for p in run()]  # observing changes nothing
    assert [t.n_images for t in timings] == [2, 1]
    for t, batch in zip(timings, (metered[:2], metered[2:]), strict=True):
        assert t.first_token_s is not None and 0 < t.first_token_s <= t.generate_s
        assert t.decode_steps + 1 == max(p.new_tokens for p in batch)  # one step per token
        assert t.new_tokens == sum(p.new_tokens for p in batch)
        assert t.preprocess_s + t.generate_s <= t.wall_s
    assert sum(t.wall_s for t in timings) <= phase.result.wall_s

    fixed_timings: list[BatchTiming] = []
    fixed = run(fixed_new_tokens=7, timings=fixed_timings)
    assert [p.new_tokens for p in fixed] == [7, 7, 7]  # EOS ignored: exactly N each
    assert [t.decode_steps for t in fixed_timings] == [6, 6]


def test_run_records_carry_every_figure_and_fixed_runs_live_apart(
    tmp_path: Path, repo_root: Path
) -> None:
    from harness.cli import main
    from harness.records.layout import RECORD_FILE, run_dir
    from harness.records.store import read_record, write_record

    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 8")
    metrics = text[text.index("metric_list:") : text.index("seeds:")]
    text = text.replace(metrics, "metric_list:\n  - metric: rouge_l\n")  # cheap: no backbone
    task = tmp_path / "rocov2_sample.yaml"
    task.write_text(text + "limit: 3\n")
    results = tmp_path / "results"
    base = ["run", "--task", str(task), "--variant", "tiny-qwen2-vl", "--seeds", "0"]
    base += ["--results", str(results), "--no-progress", "--carbon-country", "FRA"]
    assert main(base) == 0
    assert main([*base, "--fixed-new-tokens", "5"]) == 0

    natural_dir = run_dir(results, "rocov2_sample", "tiny-qwen2-vl", 0)
    m = read_record(natural_dir / RECORD_FILE).measurements
    assert m.metering_version == METERING_VERSION and m.length_mode == "natural"
    for name in (
        "preprocess_s", "prefill_s", "decode_s", "ttft_p50_ms", "decode_ms_per_token",
        "per_image_p50_s", "per_image_p90_s", "energy_j", "cpu_energy_j", "ram_energy_j",
        "energy_per_image_j", "energy_per_token_j", "co2eq_g", "carbon_intensity_g_per_kwh",
    ):  # fmt: skip
        assert getattr(m, name) is not None and getattr(m, name) > 0, name
    assert m.peak_rss_mib > 0 and m.carbon_country == "FRA" and m.energy_estimated is not None
    assert set(m.phases) == {"build", "load", "generate", "score"}
    assert m.phases["generate"].wall_s == m.generate_s and m.build_s is not None

    fixed = read_record(natural_dir.with_name("seed-0-fixed-5") / RECORD_FILE)
    assert (fixed.measurements.length_mode, fixed.measurements.new_tokens_per_image) == (
        "fixed",
        5.0,
    )
    assert fixed.generation["max_new_tokens"] == 5

    # a record from before full metering, or of the other length mode, is recomputed
    from harness.data.dataset import load_split
    from harness.pipeline.runner import reuse_problem
    from harness.specs.task import load_task
    from harness.specs.variant import load_variant

    spec = load_task(task)
    variant = load_variant(repo_root / "variants/tiny-qwen2-vl.yaml")
    evalset = load_split(spec)
    path = natural_dir / RECORD_FILE
    assert reuse_problem(path, spec, variant, evalset) is None
    assert reuse_problem(path, spec, variant, evalset, 5) == "the generation length mode changed"
    record = read_record(path)
    old = record.model_copy(update={"measurements": m.model_copy(update={"metering_version": 0})})
    write_record(natural_dir, old)
    assert reuse_problem(path, spec, variant, evalset) == "the record predates the current metering"


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_real_nvml_and_torch_cuda_meters() -> None:
    import torch

    metering = Metering.standard("cuda", energy=False)
    assert any(isinstance(m, NvmlMeter) for m in metering.meters)
    with metering.phase("work") as phase:
        a = torch.randn(8192, 8192, device="cuda")  # 256 MiB
        end = time.perf_counter() + 2.0
        while time.perf_counter() < end:
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    f = phase.result
    assert f.gpu_energy_j is not None and f.gpu_energy_j > 0
    assert f.peak_gpu_allocated_mib is not None and f.peak_gpu_allocated_mib >= 256
    assert f.peak_gpu_reserved_mib is not None
    assert f.peak_gpu_reserved_mib >= f.peak_gpu_allocated_mib
    assert f.gpu_kernel_busy_pct is not None and f.gpu_kernel_busy_pct > 10
    assert f.peak_gpu_device_mib is not None and f.peak_gpu_device_mib >= 256
