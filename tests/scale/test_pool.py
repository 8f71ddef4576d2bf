"""A suite on this machine's cores: the pool writes what one process writes, and a finished
suite starts no worker."""

from __future__ import annotations

import json

import pytest

from harness.pipeline.runner import run_variant
from harness.records.layout import PREDICTIONS_FILE
from harness.scale import pool
from harness.scale.pool import sweep_pool
from harness.scale.sweep import SweepOptions
from harness.specs.variant import load_variant as load_manifest

VARIANTS = ("tiny-qwen2-vl", "tiny-qwen2-vl-pruned")


def predictions(folder) -> list[dict]:
    lines = (folder / PREDICTIONS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_pool_matches_one_process_and_reuses_without_workers(
    tmp_path, repo_root, sample_task, monkeypatch
) -> None:
    variants = [load_manifest(repo_root / "variants" / f"{v}.yaml") for v in VARIANTS]
    options = SweepOptions(seeds=(0,), device="cpu", limit=2, progress=False)

    pooled = sweep_pool(sample_task, variants, str(tmp_path / "pooled"), options, workers=2)
    assert pooled.ok, pooled.failures
    assert [(r.variant, r.seed, r.reused) for r in pooled.runs] == [(v, 0, False) for v in VARIANTS]

    for variant in variants:  # the same runs, one after another in this process
        [serial] = run_variant(sample_task, variant, tmp_path / "serial", seeds=[0], device="cpu",
                               limit=2, progress=False)  # fmt: skip
        [run] = [r for r in pooled.runs if r.variant == variant.id]
        assert predictions(serial.record.parent) == predictions(
            tmp_path / "pooled" / run.where.split("/pooled/", 1)[1]
        )

    def no_pool(*args, **kwargs):
        raise AssertionError("a finished suite must not start workers")

    monkeypatch.setattr(pool, "ProcessPoolExecutor", no_pool)
    again = sweep_pool(sample_task, variants, str(tmp_path / "pooled"), options, workers=2)
    assert again.ok and all(r.reused for r in again.runs) and len(again.runs) == 2


def test_a_failed_build_fails_its_students_not_the_others(tmp_path, sample_task) -> None:
    from harness.specs.variant import load_variant

    bad = tmp_path / "t-bad.yaml"
    bad.write_text(
        "id: t-bad\nbase: {twin: qwen2_vl}\ntechniques:\n"
        "  - kind: source\n    repo: ./does-not-exist\n    type: adapter\n"
    )
    report = sweep_pool(
        sample_task,
        [load_variant(bad)],
        str(tmp_path / "results"),
        SweepOptions(seeds=(0,), device="cpu", limit=1, progress=False),
        workers=2,
    )
    assert not report.ok and not report.runs
    assert "t-bad" in report.failures[0].what


@pytest.mark.parametrize("device, expected", [("cuda", 1)])
def test_one_worker_on_a_gpu(device, expected) -> None:
    assert pool.default_workers(device) == expected
