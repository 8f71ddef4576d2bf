"""What a dispatched Job runs (`rocobench run-job`): the seeds of one (task, variant), each
finished run committed to the results dataset on its own.

- A run the dataset already holds, current for today's task and manifest, is skipped: a retried
  Job does not redo what finished meanwhile.
- Each run is one commit of `records/<task>/<variant>/seed-<n>/` on top of the head we looked
  at (`parent_commit`): if the dataset moved, we look again. A current record someone else wrote
  meanwhile is never overwritten; a stale one (older spec) is replaced.
- `work_dir` on a mounted bucket keeps the runner's checkpoint: a killed Job, retried, resumes
  there; on the Job's own disk it reruns.
- The record names its Job (`provenance.job`: dispatch label and Job id), found through the
  Hub by the Job's labels; the token (the HF_TOKEN secret) is read by huggingface_hub only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.records.layout import RECORD_FILE, RUN_FILES, seed_dir
from harness.records.record import JobRef
from harness.records.store import read_record, write_record
from harness.scale.jobs import KIND_VALUE, LABEL_DISPATCH, LABEL_KIND, records_path

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from harness.specs.task import TaskSpec
    from harness.specs.variant import VariantSpec

DATASET_README = """---
pretty_name: rocobench results
tags:
- rocobench
- leaderboard
---

# rocobench results

Run records of the rocobench leaderboard: `records/<task>/<variant>/seed-<n>/` holds each run's
`record.json` (metrics, measurements, provenance), `samples.jsonl` and `predictions.jsonl`.
Records whose `provenance.job` names a Hugging Face Job were written by that Job.
"""


class RunExists(RuntimeError):
    """The dataset holds a current record of this run that we did not write."""


@dataclass(frozen=True)
class Pushed:
    seed: int
    commit: str | None  # None: skipped (already held)
    note: str


def find_own_job(api: HfApi, dispatch: str, variant: str, seeds: Sequence[int]) -> JobRef:
    """This Job, looked up on the Hub by its dispatch label and its run (environment)."""
    wanted = ",".join(map(str, seeds))
    try:
        found = [
            job
            for job in api.list_jobs(
                labels={LABEL_KIND: KIND_VALUE, LABEL_DISPATCH: dispatch}, status="RUNNING"
            )
            if (job.environment or {}).get("ROCOBENCH_VARIANT") == variant
            and (job.environment or {}).get("ROCOBENCH_SEEDS") == wanted
        ]
    except Exception:  # the records are still worth writing; the verifier sees job_id None
        found = []
    if len(found) != 1:
        return JobRef(dispatch=dispatch, job_id=None)
    job = found[0]
    return JobRef(
        dispatch=dispatch,
        job_id=job.id,
        namespace=job.owner.name,
        flavor=str(getattr(job.flavor, "value", job.flavor)),
        url=job.url,
    )


def remote_record_current(
    api: HfApi, dataset: str, rel: str, task: TaskSpec, variant: VariantSpec, revision: str
) -> bool | None:
    """None: no record there; True/False: a record, current or stale for today's specs."""
    import tempfile

    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from harness.pipeline.runner import spec_reuse_problem

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = api.hf_hub_download(
                dataset, f"{rel}/{RECORD_FILE}", repo_type="dataset", revision=revision,
                local_dir=tmp,
            )  # fmt: skip
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None
        return spec_reuse_problem(Path(local), task, variant) is None


def push_run(
    api: HfApi,
    dataset: str,
    folder: Path,
    rel: str,
    task: TaskSpec,
    variant: VariantSpec,
    *,
    message: str,
    attempts: int = 5,
) -> str | None:
    """Commit one finished run folder to `dataset/rel`; its commit, or None if a current
    record of someone else's got there first (kept, not overwritten)."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    files = {name: (folder / name).read_bytes() for name in RUN_FILES if (folder / name).exists()}
    mine = files[RECORD_FILE]
    for _ in range(attempts):
        try:
            head = api.repo_info(dataset, repo_type="dataset").sha
        except RepositoryNotFoundError:
            api.create_repo(dataset, repo_type="dataset", exist_ok=True)
            api.upload_file(
                path_or_fileobj=DATASET_README.encode(), path_in_repo="README.md",
                repo_id=dataset, repo_type="dataset", commit_message="rocobench results",
            )  # fmt: skip
            continue
        assert head is not None
        current = remote_record_current(api, dataset, rel, task, variant, head)
        if current:
            theirs = api.hf_hub_download(
                dataset, f"{rel}/{RECORD_FILE}", repo_type="dataset", revision=head
            )
            if Path(theirs).read_bytes() == mine:
                return head  # our own earlier attempt landed
            return None
        operations = [
            CommitOperationAdd(f"{rel}/{name}", io.BytesIO(data)) for name, data in files.items()
        ]
        try:
            info = api.create_commit(
                dataset, operations, repo_type="dataset", commit_message=message,
                parent_commit=head,
            )  # fmt: skip
        except HfHubHTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status in (409, 412):
                continue  # someone else committed meanwhile: look again
            raise
        return info.oid
    raise RuntimeError(f"{dataset} kept moving: gave up committing {rel} after {attempts} tries")


def run_job(
    task: TaskSpec,
    variant: VariantSpec,
    seeds: Sequence[int],
    *,
    dataset: str,
    dispatch: str,
    work_dir: Path,
    api: HfApi,
    device: str = "auto",
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Pushed]:
    from harness.pipeline.runner import run_variant

    job = find_own_job(api, dispatch, variant.id, seeds)
    log(f"job {job.job_id or '(not found by label)'}, dispatch {dispatch}")
    pushed: list[Pushed] = []
    for seed in seeds:
        rel = records_path(task.task, variant.id, seed)
        head = _head(api, dataset)
        if head and remote_record_current(api, dataset, rel, task, variant, head):
            log(f"skip    {variant.id} seed {seed}: {dataset} holds a current record")
            pushed.append(Pushed(seed, None, "already held"))
            continue
        run_variant(
            task, variant, work_dir, seeds=[seed], device=device, limit=limit,
            progress=False, log=log,
        )  # fmt: skip
        folder = seed_dir(work_dir, task.task, variant.id, seed, None)
        record = read_record(folder / RECORD_FILE)
        provenance = record.provenance.model_copy(update={"job": job})
        write_record(folder, record.model_copy(update={"provenance": provenance}))
        message = f"rocobench run-job: {task.task} × {variant.id} seed {seed} ({dispatch})"
        commit = push_run(api, dataset, folder, rel, task, variant, message=message)
        note = "committed" if commit else "a current record got there first: kept"
        log(f"{note:<8} {variant.id} seed {seed} → {dataset}/{rel} {commit or ''}".rstrip())
        pushed.append(Pushed(seed, commit, note))
    return pushed


def _head(api: HfApi, dataset: str) -> str | None:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return api.repo_info(dataset, repo_type="dataset").sha
    except RepositoryNotFoundError:
        return None


def default_work_dir() -> Path:
    return Path(os.environ.get("ROCOBENCH_WORK_DIR", "/tmp/rocobench-results"))
