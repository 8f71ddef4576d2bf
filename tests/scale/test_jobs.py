"""The evaluation queue on Hugging Face Jobs against the fake Hub (Jobs endpoints included):
dispatch plans with time and cost (snapshot and live prices), launches with the token as a secret
only, status and failed-log tails, retry of failed Jobs without redoing finished runs, the
checkpoint bucket kept across a retry, and a faked Job that runs a tiny twin and commits its
record (naming the Job) to the results dataset, which then renders."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.fake_hub import ENDPOINT, TOKEN, FakeHub, serving
from fixtures.site_records import make_record

from harness.cli import main
from harness.metering.base import METERING_VERSION
from harness.paths import REPO_ROOT
from harness.records.layout import RECORD_FILE
from harness.records.record import RunRecord
from harness.records.store import read_record
from harness.scale import jobs
from harness.scale.jobs_cost import SNAPSHOT, UnknownFlavor, load_prices
from harness.specs.common import spec_hash
from harness.specs.task import load_task
from harness.specs.variant import load_variant

DATASET = "rocobench/results"
SOURCE = ["--source-repo", "https://git.test/rocobench.git", "--revision", "c" * 40]
TASK = load_task(REPO_ROOT / "tasks" / "rocov2_sample.yaml")
QWEN = load_variant(REPO_ROOT / "variants" / "tiny-qwen2-vl.yaml")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with serving(FakeHub()) as fake:
        yield fake


def api():  # type: ignore[no-untyped-def]
    from huggingface_hub import HfApi

    return HfApi(endpoint=ENDPOINT)


def current_record(variant: str = "tiny-qwen2-vl", seed: int = 0) -> RunRecord:
    """A record whose hashes match today's task and manifest: a run the dataset holds."""
    spec = load_variant(REPO_ROOT / "variants" / f"{variant}.yaml")
    record = make_record(variant, seed, {"bleu4": 0.01})
    measurements = record.measurements.model_copy(update={"metering_version": METERING_VERSION})
    return record.model_copy(
        update={
            "task": TASK.task,
            "task_sha256": spec_hash(TASK),
            "model": record.model.model_copy(update={"manifest_sha256": spec_hash(spec)}),
            "measurements": measurements,
        }
    )


def record_bytes(record: RunRecord) -> bytes:
    return (json.dumps(record.model_dump(mode="json"), indent=2) + "\n").encode()


def hold(hub: FakeHub, *records: RunRecord) -> None:
    files = {
        f"{jobs.records_path(r.task, r.variant, r.seed)}/{RECORD_FILE}": record_bytes(r)
        for r in records
    }
    if ("dataset", DATASET) in hub.repos:
        repo = hub.repo("dataset", DATASET)
        repo.commit({**repo.files, **files}, "records")
    else:
        hub.add_repo("dataset", DATASET, files)


def dispatch(*extra: str) -> list[str]:
    return ["dispatch", "--suite", "embedded", "--flavor", "a10g-small",
            "--results-dataset", DATASET, "--endpoint", ENDPOINT, *SOURCE, *extra]  # fmt: skip


# --------------------------------------------------------------------------- planning


def test_dry_run_offline_prints_every_job_with_time_and_cost_from_the_snapshot(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    args = ["dispatch", "--suite", "paper", "--flavor", "a100-large",
            "--results-dataset", "x/y", "--dry-run", *SOURCE]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert f"prices: offline snapshot of {snapshot['date']}" in out
    assert "not read (offline or unreachable): planning every run" in out
    assert len(re.findall(r"^job \d/9: rocov2_paper327 × ", out, re.M)) == 9
    assert out.count("flavour  a100-large (Nvidia A100 - large, 1× A100 80 GB, $2.50/h)") == 9
    assert out.count("  image    ghcr.io/astral-sh/uv:python3.12-bookworm") == 9
    # Each Job's cost is its estimated hours times the flavour's price.
    estimates = re.findall(r"estimate (\d+):(\d\d) h ≈ \$(\d+\.\d\d)", out)
    assert len(estimates) == 9
    for hours, minutes, usd in estimates:
        assert float(usd) == pytest.approx((int(hours) + int(minutes) / 60) * 2.5, abs=0.03)
    # Training chains cost more than their base alone; the total adds the Jobs up.
    per_job = dict(zip(re.findall(r"^job \d/9: rocov2_paper327 × (\S+),", out, re.M),
                       (float(u) for _, _, u in estimates), strict=True))  # fmt: skip
    assert per_job["llava-1.5-7b-kd-qlora"] > per_job["llava-1.5-7b-kd"] > per_job["qwen2-vl-2b"]
    total = float(
        re.search(r"total: 9 jobs, 27 runs \(0 already held\), ≈ \S+ h ≈ \$(\S+) ", out)[1]
    )
    assert total == pytest.approx(sum(per_job.values()), abs=0.05)
    assert "git clone --quiet https://git.test/rocobench.git /rocobench" in out
    assert f"git checkout --quiet {'c' * 40}" in out
    assert "rocobench run-job --task rocov2_paper327 --variant qwen2-vl-2b --seeds 0,1,2" in out


def test_per_seed_makes_one_job_per_run_and_timeouts_cover_the_estimate() -> None:
    prices = load_prices(None, offline=True)
    source = jobs.Source("https://git.test/r.git", "c" * 40)
    plan = jobs.plan_dispatch(
        TASK, [QWEN], [0, 1, 2], dataset=DATASET, flavor_name="t4-small", prices=prices,
        held={(QWEN.id, 1)}, holdings="", source=source, per_seed=True, label="lbl",
    )  # fmt: skip
    assert [j.seeds for j in plan.jobs] == [(0,), (2,)]
    assert plan.held == ((QWEN.id, 1),)
    for job in plan.jobs:
        assert job.estimate is not None and job.timeout_s >= 2 * job.estimate.total_s
        assert job.env["ROCOBENCH_SEEDS"] == ",".join(map(str, job.seeds))
    with pytest.raises(UnknownFlavor, match=r"unknown Jobs flavour 'a100-lrge'.*a100-large"):
        prices.flavor("a100-lrge")


def test_live_prices_come_from_list_jobs_hardware(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(dispatch("--dry-run", "--variant", "tiny-qwen2-vl")) == 0
    out = capsys.readouterr().out
    assert "prices: live: list_jobs_hardware at " in out
    assert "$2.00/h" in out  # the fake Hub doubles the snapshot's $1.00/h
    assert any(r.path == "/api/jobs/hardware" for r in hub.requests)
    assert not hub.jobs  # a dry run launches nothing


def test_dispatch_plans_only_the_runs_the_dataset_lacks(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = current_record(seed=1).model_copy(update={"task_sha256": "0" * 64})
    hold(hub, current_record(seed=0), stale)
    assert main(dispatch("--dry-run", "--variant", "tiny-qwen2-vl")) == 0
    out = capsys.readouterr().out
    assert f"results dataset {DATASET}: holds 1 of the planned runs, 1 stale" in out
    assert "job 1/1: rocov2_sample × tiny-qwen2-vl, seeds 1,2" in out
    assert "(1 already held)" in out


# --------------------------------------------------------------------------- launching


def test_launch_sends_the_token_as_a_job_secret_only(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert main(dispatch("--variant", "tiny-qwen2-vl", "--label", "maint-1")) == 0
    out, err = capsys.readouterr()
    (job,) = hub.jobs.values()
    assert job.secrets == {"HF_TOKEN": TOKEN}
    assert job.spec["labels"] == {
        "rocobench": "run-job", "rocobench-dispatch": "maint-1", "name": "rocobench-tiny-qwen2-vl",
    }  # fmt: skip
    assert job.spec["flavor"] == "a10g-small" and job.spec["timeoutSeconds"] >= 7200
    assert job.spec["environment"]["ROCOBENCH_VARIANT"] == "tiny-qwen2-vl"
    assert TOKEN not in json.dumps(job.spec)  # not in env, command, labels
    assert f"launched {job.id}" in err
    # The token travelled in the Authorization header and the secrets of the one Job request.
    bodies = [r for r in hub.requests if TOKEN.encode() in r.body]
    assert [(r.method, r.path) for r in bodies] == [("POST", "/api/jobs/tester")]
    assert TOKEN not in out + err + caplog.text


def test_jobs_shows_status_and_the_log_tail_of_a_failed_job(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(dispatch("--variant", "tiny-qwen2-vl", "--variant", "tiny-llava")) == 0
    by_variant = {j.spec["environment"]["ROCOBENCH_VARIANT"]: j.id for j in hub.jobs.values()}
    first, second = by_variant["tiny-qwen2-vl"], by_variant["tiny-llava"]
    hub.set_stage(first, "COMPLETED")
    logs = [f"line {i}" for i in range(29)] + [f"echo {TOKEN}", "CUDA out of memory"]
    hub.set_stage(second, "ERROR", "exit code 1", logs)
    capsys.readouterr()
    assert main(["jobs", "--endpoint", ENDPOINT, "--log-lines", "5"]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"{first}\s+COMPLETED .* rocov2_sample × tiny-qwen2-vl seeds 0,1,2", out)
    assert re.search(rf"{second}\s+ERROR .* tiny-llava seeds 0,1,2 .* exit code 1", out)
    assert f"--- {second} (ERROR): last log lines" in out
    assert "  CUDA out of memory" in out and "  line 26" in out and "line 25" not in out
    assert "  echo hf_***" in out and TOKEN not in out  # a program that printed it: scrubbed


def test_watch_polls_until_every_job_has_ended(hub: FakeHub) -> None:
    assert main(dispatch("--variant", "tiny-qwen2-vl", "--per-seed", "--seeds", "0,1")) == 0
    first, second = hub.jobs
    hub.set_stage(first, "RUNNING")
    moves = iter([(first, "COMPLETED"), (second, "RUNNING"), (second, "ERROR")])
    seen: list[str] = []

    def sleep(_: float) -> None:
        hub.set_stage(*next(moves))

    rows = jobs.watch(
        api(), dispatch=None, namespace=None, interval_s=0, log=seen.append, sleep=sleep
    )
    assert {r.job_id: r.stage for r in rows} == {first: "COMPLETED", second: "ERROR"}
    stages: dict[str, list[str]] = {}
    for line in seen:  # each change of stage logged once, per Job
        stages.setdefault(line.split()[0], []).append(line.split()[1])
    assert stages == {first: ["RUNNING", "COMPLETED"], second: ["SCHEDULING", "RUNNING", "ERROR"]}


def test_retry_relaunches_only_runs_still_missing_and_each_failed_job_once(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(dispatch("--variant", "tiny-qwen2-vl", "--checkpoint-bucket", "org/ckpt")) == 0
    (failed,) = hub.jobs
    spec = hub.jobs[failed].spec
    label = spec["labels"]["rocobench-dispatch"]
    assert f"--work-dir /checkpoints/{label}" in spec["command"][-1]
    hub.set_stage(failed, "ERROR", "killed", ["Killed"])
    hold(hub, current_record(seed=0))  # seed 0 finished before the Job died
    capsys.readouterr()
    assert main(["jobs", "--endpoint", ENDPOINT, "--retry", *SOURCE]) == 0
    out = capsys.readouterr().out
    assert f"{failed}: tiny-qwen2-vl seed 0 finished meanwhile: not redone" in out
    assert "1 Jobs relaunched" in out
    new = next(j for j in hub.jobs.values() if j.id != failed)
    assert new.spec["environment"]["ROCOBENCH_SEEDS"] == "1,2"
    assert new.spec["labels"]["rocobench-retry-of"] == failed
    assert new.spec["labels"]["rocobench-dispatch"] == label  # same work dir: resumes there
    assert new.spec["volumes"] == spec["volumes"]
    assert f"--work-dir /checkpoints/{label}" in new.spec["command"][-1]
    assert new.secrets == {"HF_TOKEN": TOKEN}
    # A second --retry does not relaunch the same failed Job again.
    assert main(["jobs", "--endpoint", ENDPOINT, "--retry", *SOURCE]) == 0
    assert f"{failed}: already retried" in capsys.readouterr().out
    assert len(hub.jobs) == 2


# --------------------------------------------------------------------------- inside the Job


def test_run_job_skips_a_held_run_and_never_overwrites_a_current_record(hub: FakeHub) -> None:
    from harness.scale.job_run import push_run, run_job

    hold(hub, current_record(seed=0))
    pushed = run_job(
        TASK, QWEN, [0], dataset=DATASET, dispatch="d", work_dir=Path("/nonexistent"), api=api()
    )
    assert [(p.seed, p.commit, p.note) for p in pushed] == [(0, None, "already held")]
    # Someone else's current record lands while we commit ours: theirs is kept.
    mine = current_record(seed=1).model_copy(update={"prompt": "mine"})
    theirs = current_record(seed=1)
    rel = jobs.records_path(TASK.task, QWEN.id, 1)
    hub.before_commit = lambda repo: repo.commit(
        {**repo.files, f"{rel}/{RECORD_FILE}": record_bytes(theirs)}, "theirs"
    )
    folder = Path(os.environ["ROCOBENCH_CACHE"]) / "push-test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_FILE).write_bytes(record_bytes(mine))
    assert push_run(api(), DATASET, folder, rel, TASK, QWEN, message="m") is None
    stored = hub.repo("dataset", DATASET).files[f"{rel}/{RECORD_FILE}"]
    assert RunRecord.model_validate_json(stored).prompt == theirs.prompt


def test_a_faked_job_runs_the_twin_and_commits_its_record_naming_the_job(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    args = dispatch("--variant", "tiny-qwen2-vl", "--seeds", "0", "--label", "maint-2")
    assert main(args) == 0
    (job_id,) = hub.jobs
    command = hub.jobs[job_id].spec["command"]
    run_args = shlex.split(command[-1].rsplit(" && ", 1)[1])
    assert run_args[:2] == ["rocobench", "run-job"]

    def container(env: dict[str, str]) -> int:
        # The Job's environment and secrets, as the container would see them.
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            extra = ["--work-dir", str(tmp_path / "work"), "--limit", "4", "--device", "cpu"]
            return main([*run_args[1:], "--endpoint", ENDPOINT, *extra])
        finally:
            os.environ.clear()
            os.environ.update(saved)

    assert hub.run_job(job_id, container) == 0
    files = hub.repo("dataset", DATASET).files
    rel = jobs.records_path(TASK.task, QWEN.id, 0)
    assert {f"{rel}/{n}" for n in ("record.json", "samples.jsonl", "predictions.jsonl")} <= set(
        files
    )
    record = RunRecord.model_validate_json(files[f"{rel}/{RECORD_FILE}"])
    assert record.provenance.job is not None
    assert record.provenance.job.job_id == job_id
    assert record.provenance.job.dispatch == "maint-2"
    assert record.provenance.job.flavor == "a10g-small"
    # One commit for the run, its three files together (the other made the dataset's README).
    commits = [r for r in hub.commits() if b"records/" in r.body]
    assert len(commits) == 1 and commits[0].body.count(f"{rel}/".encode()) == 3
    # The dataset's records render (the page reads records only).
    from leaderboard import render_site

    local = tmp_path / "from-dataset"
    for path, data in files.items():
        if path.startswith("records/"):
            (local / path).parent.mkdir(parents=True, exist_ok=True)
            (local / path).write_bytes(data)
    render_site(local / "records", tmp_path / "site")
    assert "tiny-qwen2-vl" in (tmp_path / "site" / "results.json").read_text(encoding="utf-8")
    assert read_record(local / rel / RECORD_FILE).provenance.job == record.provenance.job
    # A verifier can check the record against the Job it names.
    assert jobs.job_record_problem(api(), record, DATASET, maintainers=["tester"]) is None
    assert "not a maintainer" in jobs.job_record_problem(api(), record, DATASET, maintainers=["x"])
    other = record.model_copy(update={"variant": "tiny-llava"})
    assert "was launched for rocov2_sample × tiny-qwen2-vl" in jobs.job_record_problem(
        api(), other, DATASET
    )
    assert "not written by a dispatched Job" in jobs.job_record_problem(
        api(), current_record(), DATASET
    )
    assert "wrote to" in jobs.job_record_problem(api(), record, "someone/else")
    # ... and `rocobench verify` does: the Job's own record is verified, not only checked
    hf = f"hf://datasets/{DATASET}"
    args = ["verify", "--quick", hf, "--maintainer", "tester", "--endpoint", ENDPOINT]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "0 verified" not in err and "0 rejected" in err and TOKEN not in out + err
    assert main([*args[:-4], "--maintainer", "someone-else", "--endpoint", ENDPOINT]) == 1
    assert "not a maintainer" in capsys.readouterr().out
    # The token is in no file written, no log and no output.
    out, err = capsys.readouterr()
    assert TOKEN not in out + err + caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        assert all(TOKEN.encode() not in data for data in repo.files.values())
    assert all(TOKEN not in line for job in hub.jobs.values() for line in job.logs)
