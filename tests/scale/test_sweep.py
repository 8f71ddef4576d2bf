"""`rocobench sweep`: the local sweep, a Ray local cluster with a worker killed mid-run, and the
results location (a folder or an fsspec URI)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

from harness.cli import main
from harness.records import remote as storage
from harness.records.layout import PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE
from harness.records.store import read_record
from harness.scale.sweep import SweepOptions, build_order, sweep_local, sweep_ray
from harness.specs.catalog import suite as load_suite

VARIANTS = ["tiny-qwen2-vl", "tiny-llava"]
SEEDS = (0, 1)
LIMIT = 4
TOKENS = 8  # every caption exactly 8 tokens (`--fixed-new-tokens`): seconds, not minutes, per run
OPTIONS = SweepOptions(
    seeds=SEEDS, device="cpu", batch_size=2, limit=LIMIT, fixed_new_tokens=TOKENS, max_retries=2
)


def write_suite(tmp: Path) -> Path:
    path = tmp / "pair.yaml"
    path.write_text(f"suite: pair\ntask: rocov2_sample\nvariants: {VARIANTS}\nseeds: [0, 1]\n")
    return path


def runs_of(location: str) -> dict[str, dict[str, bytes]]:
    """task/variant/seed-N -> file name -> bytes, for every run under a folder or URI."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(location)
    out: dict[str, dict[str, bytes]] = {}
    for path in fs.find(root):
        rel = path[len(root.rstrip("/")) + 1 :]
        folder, _, name = rel.rpartition("/")
        out.setdefault(folder, {})[name] = fs.cat_file(path)
    return out


def metrics(record_bytes: bytes) -> dict:
    return json.loads(record_bytes)["metrics"]


def kill_once(flag: str):
    """A Ray worker set-up hook: the first run to checkpoint a batch after `flag` exists dies
    there (os._exit, as a lost worker), once; it writes its run folder to `flag`.killed."""

    def install() -> None:
        import harness.pipeline.seed as run

        real = run.append_batch

        def append_then_die(fh, preds, clean):
            real(fh, preds, clean)
            try:
                os.unlink(flag)  # atomic: exactly one run, exactly once
            except FileNotFoundError:
                return
            Path(flag + ".killed").write_text(str(Path(fh.name).parent))
            os._exit(1)

        run.append_batch = append_then_die

    return install


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return load_suite(write_suite(tmp_path_factory.mktemp("suite")))


@pytest.fixture(scope="module")
def local_uri(suite) -> str:
    """The local sweep, into an fsspec memory:// location."""
    uri = f"memory://rocobench-test-{uuid.uuid4().hex[:8]}/results"
    report = sweep_local(suite.task, suite.variants, uri, OPTIONS)
    assert report.ok and not any(r.reused for r in report.runs)
    return uri


def test_build_order_waits_for_teachers(repo_root) -> None:
    from harness.specs.variant import load_variant

    student = load_variant(repo_root / "variants/tiny-llava-kd.yaml")
    plan = build_order([student])
    assert plan["tiny-llava-kd"][1] == ["tiny-llava-qlora"]
    assert plan["tiny-llava-qlora"][1] == []


def test_local_sweep_to_a_uri_writes_every_run_and_reuses_them(suite, local_uri) -> None:
    runs = runs_of(local_uri)
    names = [f"rocov2_sample/{v}/seed-{s}-fixed-{TOKENS}" for v in sorted(VARIANTS) for s in SEEDS]
    assert sorted(runs) == names
    for files in runs.values():  # exactly the runner's files: no temp names, locks or checkpoints
        assert sorted(files) == sorted([PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE])
        assert len(json.loads(files[RECORD_FILE])["metrics"]) > 0
    again = sweep_local(suite.task, suite.variants, local_uri, OPTIONS)
    assert again.ok and all(r.reused for r in again.runs) and len(again.runs) == 4
    assert runs_of(local_uri) == runs


def test_ray_sweep_with_a_killed_worker_writes_the_local_sweeps_records(
    suite, local_uri, tmp_path
) -> None:
    """2 variants × 2 seeds as Ray tasks on a 2-CPU local cluster; one run's worker dies after
    its first batch and is retried: the records equal the local sweep's."""
    ray = pytest.importorskip("ray")
    flag = tmp_path / "kill"
    flag.write_text("")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": kill_once(str(flag))},
    )
    try:
        results = tmp_path / "results"
        report = sweep_ray(suite.task, suite.variants, str(results), OPTIONS, progress=False)
    finally:
        ray.shutdown()
    assert report.ok, report.failures
    assert not flag.exists()  # a worker did die mid-run
    killed = Path(f"{flag}.killed").read_text()

    ray_runs = runs_of(str(results))
    local_runs = runs_of(local_uri)
    assert sorted(ray_runs) == sorted(local_runs)
    for rel, files in local_runs.items():
        got = ray_runs[rel]
        assert {n for n in got if not n.startswith(".")} == set(files)  # plus the run's .lock
        assert got[PREDICTIONS_FILE] == files[PREDICTIONS_FILE], rel
        assert got[SAMPLES_FILE] == files[SAMPLES_FILE], rel
        assert metrics(got[RECORD_FILE]) == metrics(files[RECORD_FILE]), rel
    # the retried run resumed from the checkpoint its killed attempt wrote: 2 of 4 were left
    assert read_record(Path(killed) / RECORD_FILE).measurements.n_images == LIMIT - 2
    assert not list(results.rglob("predictions.partial*"))


def test_publish_replaces_a_run_whole(tmp_path) -> None:
    src = tmp_path / "run"
    src.mkdir()
    for name in (PREDICTIONS_FILE, SAMPLES_FILE, RECORD_FILE):
        (src / name).write_text(f"new {name}")
    uri = f"memory://rocobench-test-{uuid.uuid4().hex[:8]}"
    rel = "t/v/seed-0"
    dest = storage.join(uri, rel)
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(dest)
    fs.pipe(f"{root}/{RECORD_FILE}", b"old record")
    fs.pipe(f"{root}/{PREDICTIONS_FILE}", b"old predictions")
    assert storage.publish_run(src, uri, rel) == dest
    assert {p.rsplit("/", 1)[1]: fs.cat_file(p) for p in fs.find(root)} == {
        name: f"new {name}".encode() for name in (PREDICTIONS_FILE, SAMPLES_FILE, RECORD_FILE)
    }
    local = tmp_path / "scratch"
    assert storage.fetch_record(uri, rel, local)
    assert (local / RECORD_FILE).read_text() == f"new {RECORD_FILE}"
    assert not storage.fetch_record(uri, "t/v/seed-1", local)
    assert not (local / RECORD_FILE).exists()  # a stale local record never decides reuse


def test_locations() -> None:
    assert storage.is_remote("s3://bucket/results") and storage.is_remote("memory://x")
    assert not storage.is_remote("results") and not storage.is_remote("file:///srv/results")
    assert storage.local_path("file:///srv/results") == Path("/srv/results")


def test_ray_missing_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    args = ["sweep", "--suite", str(write_suite(tmp_path)), "--ray", "auto",
            "--results", str(tmp_path / "r"), "--no-progress"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == 'rocobench: the --ray option needs Ray: pip install "rocobench[ray]"'
    assert not (tmp_path / "r").exists()
