"""Crash safety: a real kill -9 mid-run then a rerun, the run-directory lock, and bad images."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.dataset import EvalSet
from harness.pipeline.checkpoint import LOCK_FILE, PARTIAL_FILE, read_checkpoint
from harness.records.layout import PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE, run_dir
from harness.records.store import read_record

VARIANT = "tiny-qwen2-vl"
BATCH = 4
N = 24

# The CLI with each batch slowed down, so the kill surely lands between the first checkpointed
# batch and the end of generation; everything else is the real `python -m harness.cli run`.
SLOW_CLI = """
import sys, time
import harness.pipeline.generate as g
real = g.generate_batch
def slow(*args, **kwargs):
    time.sleep(0.4)
    return real(*args, **kwargs)
g.generate_batch = slow
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def crash_task(tmp_path: Path, repo_root: Path) -> Path:
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 16")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]")
    text = text.replace("batch_size: 16", f"batch_size: {BATCH}")
    text += f"limit: {N}\n"
    path = tmp_path / "rocov2_sample.yaml"
    path.write_text(text)
    return path


def run_args(task: Path, results: Path, *extra: str) -> list[str]:
    return ["run", "--task", str(task), "--variant", VARIANT, "--results", str(results),
            "--device", "cpu", "--no-progress", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory, repo_root):
    """An uninterrupted run of the crash task, in-process."""
    tmp = tmp_path_factory.mktemp("crash")
    task = crash_task(tmp, repo_root)
    results = tmp / "reference"
    assert main(run_args(task, results)) == 0
    return task, run_dir(results, "rocov2_sample", VARIANT, 0)


def metric_values(d: Path) -> dict[str, tuple]:
    record = read_record(d / RECORD_FILE)
    return {k: (v.value, v.ci95, v.n, v.details) for k, v in record.metrics.items()}


def test_kill_9_then_rerun_matches_an_uninterrupted_run(reference, tmp_path, capsys) -> None:
    task, ref = reference
    results = tmp_path / "results"
    out = run_dir(results, "rocov2_sample", VARIANT, 0)
    partial = out / PARTIAL_FILE
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *run_args(task, results)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180  # a wait for the first batch, generous on a loaded machine
    try:
        while True:  # header + at least one batch checkpointed
            lines = partial.read_text().splitlines() if partial.exists() else []
            if len(lines) >= 1 + BATCH or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / RECORD_FILE).exists()
    with partial.open("a") as fh:  # as if the kill had landed mid-write: a torn last line
        fh.write('{"id": "torn", "predic')
    done = partial.read_text().splitlines()
    assert BATCH <= len(done) - 2 < N

    assert main(run_args(task, results)) == 0  # the rerun, in-process: one start-up less
    err = capsys.readouterr().err
    assert (
        f"resume  rocov2_sample × {VARIANT} seed 0: {len(done) - 2} of {N} images already done"
        in err
    )
    assert not partial.exists()
    for name in (PREDICTIONS_FILE, SAMPLES_FILE):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert metric_values(out) == metric_values(ref)
    record = read_record(out / RECORD_FILE)
    assert record.dataset == read_record(ref / RECORD_FILE).dataset
    assert record.errors == []
    assert record.measurements.n_images < N  # figures of this process's images only


def test_stale_checkpoint_is_ignored(reference, tmp_path) -> None:
    """A checkpoint from other settings (here: another seed) is not resumed."""
    task, ref = reference
    results = tmp_path / "results"
    out = run_dir(results, "rocov2_sample", VARIANT, 0)
    out.mkdir(parents=True)
    (out / PARTIAL_FILE).write_text(
        json.dumps({"checkpoint": {"seed": 1}}) + "\n" + '{"id": "x", "raw": "", "new_tokens": 0}\n'
    )
    assert read_checkpoint(out / PARTIAL_FILE, {"seed": 0}) == []
    assert main(run_args(task, results)) == 0
    assert (out / PREDICTIONS_FILE).read_bytes() == (ref / PREDICTIONS_FILE).read_bytes()
    assert not (out / PARTIAL_FILE).exists()


def test_a_second_run_on_the_same_dir_fails_fast(reference, tmp_path, capsys) -> None:
    task, _ = reference
    results = tmp_path / "results"
    out = run_dir(results, "rocov2_sample", VARIANT, 0)
    out.mkdir(parents=True)
    with (out / LOCK_FILE).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        assert main(run_args(task, results)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rocobench: {out} is being written by another run (pid 4242)"]
    assert not (out / RECORD_FILE).exists()
    # released: the same run now goes through, and the lock file does not disturb rendering
    assert main(run_args(task, results, "--limit", "4")) == 0
    assert (out / LOCK_FILE).exists()
    assert main(["render", str(results), "-o", str(tmp_path / "site")]) == 0


def test_a_broken_image_is_a_per_sample_error(reference, tmp_path, monkeypatch, capsys) -> None:
    task, ref = reference
    real = EvalSet.image_loader

    def loader(self: EvalSet, index: int):
        if index == 2:

            def broken():
                raise OSError("cannot identify image file 'broken.png'")

            return broken
        return real(self, index)

    monkeypatch.setattr(EvalSet, "image_loader", loader)
    results = tmp_path / "results"
    assert main(run_args(task, results, "--limit", "8")) == 0
    assert "errors  rocov2_sample × tiny-qwen2-vl seed 0: 1 of 8 images" in capsys.readouterr().err
    out = run_dir(results, "rocov2_sample", VARIANT, 0)
    record = read_record(out / RECORD_FILE)
    samples = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]
    bad = samples[2]
    assert record.errors == [{"id": bad["id"], "error": bad["error"]}]
    assert "cannot identify image file" in bad["error"]
    assert bad["prediction"] == "" and bad["new_tokens"] == 0
    assert record.dataset.n_samples == 8 and all(m.n in (8, None) for m in record.metrics.values())
    # the other captions are those of the clean run (per-sample seeding)
    clean = [json.loads(line) for line in (ref / PREDICTIONS_FILE).read_text().splitlines()][:8]
    preds = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert [p for i, p in enumerate(preds) if i != 2] == [p for i, p in enumerate(clean) if i != 2]
    # the count shows on the page, on the variant's row
    from leaderboard.render import render_site

    page = render_site(results, tmp_path / "site").read_text()
    assert "1 image(s) could not be loaded across 1 seed(s)" in page
