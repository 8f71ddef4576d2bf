"""Data-parallel runs: a real 2-process `torchrun` (gloo) against a single process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.layout import PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE, run_dir
from harness.records.record import PhaseFigures
from harness.records.store import read_jsonl, read_record, write_jsonl
from harness.scale.distributed import Launch, combine_phases, join, shard

VARIANT = "tiny-qwen2-vl"
N = 8
RESUMED = 3  # images a 1-process checkpoint already holds before the 2-process run


def small_task(tmp: Path, repo_root: Path) -> Path:
    """The bundled task on 8 images, 16 tokens, and the metrics that load nothing (BERTScore's
    model and METEOR's WordNet cost seconds per process and say nothing about sharding)."""
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    start, end = text.index("metric_list:"), text.index("seeds:")
    metrics = "".join(f"  - metric: {m}\n" for m in ("bleu4", "rouge_l", "cider", "modality_acc"))
    text = text[:start] + "metric_list:\n" + metrics + text[end:]
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 16")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]")
    text = text.replace("batch_size: 16", "batch_size: 2")
    path = tmp / "rocov2_sample.yaml"
    path.write_text(text + f"limit: {N}\n")
    return path


def run_args(task: Path, results: Path) -> list[str]:
    return ["run", "--task", str(task), "--variant", VARIANT, "--results", str(results),
            "--device", "cpu", "--no-progress"]  # fmt: skip


def metric_values(d: Path) -> dict[str, tuple]:
    record = read_record(d / RECORD_FILE)
    return {k: (v.value, v.ci95, v.n, v.details) for k, v in record.metrics.items()}


# --------------------------------------------------------------------------- pieces


def test_launch_from_env() -> None:
    assert Launch.from_env({}) is None
    assert Launch.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert Launch.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Launch(4, 3, 1)
    with pytest.raises(RuntimeError, match="WORLD_SIZE"):
        Launch.from_env({"WORLD_SIZE": "two"})


def test_join_without_a_launcher_is_a_plain_run(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join("cpu") is None


def test_shards_cover_every_item_once() -> None:
    items = [f"id{i}" for i in range(11)]
    shares = [shard(items, r, 3) for r in range(3)]
    assert shares[0] == ["id0", "id3", "id6", "id9"]
    assert sorted(x for s in shares for x in s) == sorted(items)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_combine_phases() -> None:
    a = PhaseFigures(wall_s=2.0, peak_rss_mib=900.0, cpu_energy_j=1.5, ram_energy_j=2.0,
                     gpu_kernel_busy_pct=40.0, gpu_util_samples=3)  # fmt: skip
    b = PhaseFigures(wall_s=3.5, peak_rss_mib=800.0, cpu_energy_j=2.25, ram_energy_j=None,
                     gpu_kernel_busy_pct=60.0, gpu_util_samples=5)  # fmt: skip
    both = combine_phases([a, b])
    assert both.wall_s == 3.5  # the slowest rank
    assert both.peak_rss_mib == 900.0
    assert both.cpu_energy_j == 3.75  # summed
    assert both.ram_energy_j is None  # one rank could not measure it: no partial sum
    assert both.gpu_energy_j is None and both.peak_gpu_allocated_mib is None
    assert both.gpu_kernel_busy_pct == 50.0 and both.gpu_util_samples == 8


# --------------------------------------------------------------------------- torchrun


@pytest.fixture(scope="module")
def reference(tmp_path_factory, repo_root):
    """A plain single-process run, in-process."""
    tmp = tmp_path_factory.mktemp("dist")
    task = small_task(tmp, repo_root)
    assert main(run_args(task, tmp / "one")) == 0
    return task, run_dir(tmp / "one", "rocov2_sample", VARIANT, 0)


def test_two_processes_give_the_single_process_run(reference, tmp_path, repo_root) -> None:
    """torchrun, 2 ranks on gloo, resuming a 1-process checkpoint: the same predictions,
    samples and metrics as one process, the rest of the images shared out, the figures
    combined, one log, no checkpoint left."""
    from harness.data.dataset import load_split
    from harness.pipeline.checkpoint import PARTIAL_FILE, checkpoint_key
    from harness.specs.task import load_task
    from harness.specs.variant import load_variant

    task_path, ref = reference
    results = tmp_path / "two"
    out = run_dir(results, "rocov2_sample", VARIANT, 0)
    task = load_task(task_path)
    variant = load_variant(repo_root / "variants" / f"{VARIANT}.yaml")
    key = checkpoint_key(task, variant, load_split(task), 0, None)
    rows = read_jsonl(ref / PREDICTIONS_FILE)[:RESUMED]
    write_jsonl(out / PARTIAL_FILE, [{"checkpoint": key}, *rows])

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "harness.cli", *run_args(task_path, results)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-4000:]

    resumed = f"resume  rocov2_sample × {VARIANT} seed 0: {RESUMED} of {N} images already done"
    assert proc.stderr.count(resumed) == 1  # rank 0 speaks for the run
    assert proc.stderr.count(f"done    rocov2_sample × {VARIANT} seed 0") == 1
    for name in (PREDICTIONS_FILE, SAMPLES_FILE):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert metric_values(out) == metric_values(ref)
    assert not list(out.glob("predictions.partial*"))

    record = read_record(out / RECORD_FILE)
    assert record.dataset == read_record(ref / RECORD_FILE).dataset
    m = record.measurements
    assert [(r.rank, r.device, r.n_images) for r in m.ranks] == [(0, "cpu", 3), (1, "cpu", 2)]
    assert m.n_images == N - RESUMED  # images generated by this run, all ranks
    assert m.phases["generate"] == combine_phases([r.generate for r in m.ranks])
    assert m.generate_s == max(r.generate.wall_s for r in m.ranks)
    if m.cpu_energy_j is not None:
        assert m.cpu_energy_j == pytest.approx(sum(r.generate.cpu_energy_j for r in m.ranks), 1e-3)
