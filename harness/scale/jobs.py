"""The evaluation queue on Hugging Face Jobs: plan, price, launch, follow and retry.

`rocobench dispatch` plans the (variant, seed) runs a results dataset does not hold yet and
launches one Job per variant (or per run) through huggingface_hub's own Jobs API
(`HfApi.run_job`, `inspect_job`, `list_jobs`, `fetch_job_logs`, `list_jobs_hardware`). Each Job
clones this repository at one commit, installs it, and runs `rocobench run-job`
(`harness.scale.job_run`), which runs the seeds and commits each finished run to the dataset.

- **Token**: it reaches a Job only through `secrets=` (the Hub stores it encrypted and shows its
  name only); never through `env=`, the command, a label, a log line or a record.
- **Prices**: `list_jobs_hardware` when the Hub answers, else the dated snapshot
  `jobs_hardware.json` beside `jobs_cost`; the plan says which.
- **Time**: a stated model, not a measurement (`estimate_job`): setup and downloads, training
  steps at 30 % of the GPU's dense bf16 peak, and decoding as memory-bound steps (the weights read
  once per generated token per batch, at half the memory bandwidth, never under 30 ms a step).
- **Memory**: a floor on the GPU memory of each phase of a chain (`jobs_memory`); a flavour whose
  GPU holds less gets a warning naming the cheapest flavour that holds it.
- **Following**: every Job carries the labels `rocobench=run-job` and `rocobench-dispatch=LABEL`;
  its run (task, variant, seeds) is in its environment, so `jobs --retry` relaunches only the
  runs the dataset still lacks.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.paths import REPO_ROOT
from harness.records.layout import RECORD_FILE
from harness.scale.jobs_cost import (
    Estimate,
    Flavor,
    PriceTable,
    UnknownFlavor,
    estimate_job,
    timeout_for,
)
from harness.scale.jobs_memory import PhaseFloor, cheapest_fit, gpu_gb, phase_floors

if TYPE_CHECKING:
    from huggingface_hub import HfApi, JobInfo

    from harness.records.record import RunRecord
    from harness.specs.task import TaskSpec
    from harness.specs.variant import VariantSpec

DEFAULT_IMAGE = "ghcr.io/astral-sh/uv:python3.12-bookworm"  # Debian with git, Python and uv
LABEL_KIND = "rocobench"
LABEL_DISPATCH = "rocobench-dispatch"
LABEL_RETRY_OF = "rocobench-retry-of"
KIND_VALUE = "run-job"
TOKEN_SECRET = "HF_TOKEN"
CHECKPOINT_MOUNT = "/checkpoints"
# Hub labels: letters, digits, dashes and underscores, at most 100 characters.
LABEL_VALUE = re.compile(r"[A-Za-z0-9_-]{1,100}")
FAILED_STAGES = frozenset({"ERROR", "CANCELED"})
DONE_STAGES = frozenset({"COMPLETED", "ERROR", "CANCELED", "DELETED"})


class DispatchError(RuntimeError):
    """Dispatch stopped before launching anything (or the Hub refused a launch)."""


def records_path(task: str, variant: str, seed: int) -> str:
    """Where a run's files live in a results dataset (the layout `publish` writes)."""
    return f"records/{task}/{variant}/seed-{seed}"


# --------------------------------------------------------------------------- what is held


def held_runs(
    api: HfApi | None,
    dataset: str,
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    seeds: Sequence[int],
    *,
    offline: bool,
) -> tuple[set[tuple[str, int]], str]:
    """(variant, seed) runs whose record in `dataset` is current, and a line saying how we know.

    A record counts only if its task spec and manifest hashes match today's files (the check
    `rocobench run` makes before reusing one): a changed manifest is run again.
    """
    if api is None or offline:
        return (
            set(),
            f"results dataset {dataset}: not read (offline or unreachable): planning every run",
        )
    from huggingface_hub import RepoFile

    try:
        files = {
            item.path
            for item in api.list_repo_tree(dataset, repo_type="dataset", recursive=True)
            if isinstance(item, RepoFile)
        }
    except Exception as err:
        from huggingface_hub.errors import RepositoryNotFoundError

        if isinstance(err, RepositoryNotFoundError):
            return set(), f"results dataset {dataset}: not found (it will be created by the Jobs)"
        why = type(err).__name__
        return set(), f"results dataset {dataset}: unreachable ({why}): planning every run"
    held: set[tuple[str, int]] = set()
    stale = 0
    for variant in variants:
        for seed in seeds:
            path = f"{records_path(task.task, variant.id, seed)}/{RECORD_FILE}"
            if path not in files:
                continue
            if record_is_current(api, dataset, path, task, variant):
                held.add((variant.id, seed))
            else:
                stale += 1
    note = f", {stale} stale (spec changed) to redo" if stale else ""
    return held, f"results dataset {dataset}: holds {len(held)} of the planned runs{note}"


def record_is_current(
    api: HfApi, dataset: str, path: str, task: TaskSpec, variant: VariantSpec
) -> bool:
    import tempfile

    from harness.pipeline.runner import spec_reuse_problem

    with tempfile.TemporaryDirectory() as tmp:
        local = api.hf_hub_download(dataset, path, repo_type="dataset", local_dir=tmp)
        return spec_reuse_problem(Path(local), task, variant) is None


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Source:
    """The rocobench a Job runs: a git repository at one commit."""

    repo: str
    revision: str
    dirty: bool = False


def local_source(repo: str | None = None, revision: str | None = None) -> Source:
    """This checkout's commit and remote (overridable); a dirty tree is flagged, since the Job
    runs the commit, not the working files."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return out.stdout.strip()

    repo = repo or git("remote", "get-url", "origin") or ""
    revision = revision or git("rev-parse", "HEAD") or ""
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return Source(repo, revision, dirty)


@dataclass(frozen=True)
class JobPlan:
    task: str
    variant: str
    seeds: tuple[int, ...]
    image: str
    command: tuple[str, ...]
    env: dict[str, str]
    labels: dict[str, str]
    flavor: Flavor
    timeout_s: int
    estimate: Estimate | None
    checkpoint_bucket: str | None = None
    memory: tuple[PhaseFloor, ...] | None = None  # GPU memory floors; None: base size unknown

    def volumes(self) -> list[Any] | None:
        if self.checkpoint_bucket is None:
            return None
        from huggingface_hub import Volume

        return [Volume(type="bucket", source=self.checkpoint_bucket, mount_path=CHECKPOINT_MOUNT)]


@dataclass(frozen=True)
class DispatchPlan:
    label: str
    dataset: str
    flavor: Flavor
    prices: str
    holdings: str
    source: Source
    jobs: tuple[JobPlan, ...]
    held: tuple[tuple[str, int], ...]
    warnings: tuple[str, ...] = ()


def dispatch_label(source: Source) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"d{stamp}-{source.revision[:8] or 'nogit'}"


def job_command(
    source: Source,
    task: str,
    variant: str,
    seeds: Sequence[int],
    dataset: str,
    label: str,
    *,
    checkpoint: bool,
) -> tuple[str, ...]:
    """One shell line: clone the pinned commit, install it, run the seeds, commit the records."""
    run = [
        "rocobench", "run-job", "--task", task, "--variant", variant,
        "--seeds", ",".join(map(str, seeds)), "--results-dataset", dataset, "--dispatch", label,
    ]  # fmt: skip
    if checkpoint:
        run += ["--work-dir", f"{CHECKPOINT_MOUNT}/{label}"]
    steps = [
        "set -euo pipefail",
        "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
        "wordnet-base wordnet-sense-index >/dev/null",
        f"git clone --quiet {shlex.quote(source.repo or '<repository URL>')} /rocobench",
        "cd /rocobench",
        f"git checkout --quiet {shlex.quote(source.revision or '<commit>')}",
        "uv venv --quiet /venv && . /venv/bin/activate && uv pip install --quiet -e .",
        shlex.join(run),
    ]
    return ("bash", "-c", f"{steps[0]}; " + " && ".join(steps[1:]))


def plan_dispatch(
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    seeds: Sequence[int],
    *,
    dataset: str,
    flavor_name: str,
    prices: PriceTable,
    held: set[tuple[str, int]],
    holdings: str,
    source: Source,
    label: str | None = None,
    per_seed: bool = False,
    image: str = DEFAULT_IMAGE,
    checkpoint_bucket: str | None = None,
) -> DispatchPlan:
    try:
        flavor = prices.flavor(flavor_name)
    except UnknownFlavor as err:
        raise DispatchError(str(err)) from None
    label = label or dispatch_label(source)
    if not LABEL_VALUE.fullmatch(label):
        raise DispatchError(f"--label: letters, digits, - and _ only (≤100), got {label!r}")
    warnings = []
    if flavor.gpu is None:
        warnings.append(f"{flavor.name} has no GPU: the real models will not fit or finish")
    if flavor.gpus > 1:
        warnings.append(f"{flavor.name} has {flavor.gpus} GPUs; a run-job uses one")
    if not source.repo:
        warnings.append("no git remote: pass --source-repo URL (the Jobs clone it)")
    if source.dirty:
        warnings.append(f"uncommitted changes: the Jobs run commit {source.revision[:12]}")
    jobs: list[JobPlan] = []
    for variant in variants:
        todo = tuple(s for s in seeds if (variant.id, s) not in held)
        if not todo:
            continue
        floors = phase_floors(variant)
        warnings += memory_warnings(variant.id, floors, flavor, prices)
        groups = [(s,) for s in todo] if per_seed else [todo]
        for group in groups:
            estimate = estimate_job(
                task, variant, len(group), flavor, prices.accelerators, build=True
            )
            env = {
                "ROCOBENCH_DISPATCH": label,
                "ROCOBENCH_TASK": task.task,
                "ROCOBENCH_VARIANT": variant.id,
                "ROCOBENCH_SEEDS": ",".join(map(str, group)),
                "ROCOBENCH_RESULTS_DATASET": dataset,
                "ROCOBENCH_REVISION": source.revision,
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            }
            labels = {LABEL_KIND: KIND_VALUE, LABEL_DISPATCH: label}
            command = job_command(
                source, task.task, variant.id, group, dataset, label,
                checkpoint=checkpoint_bucket is not None,
            )  # fmt: skip
            jobs.append(
                JobPlan(
                    task=task.task,
                    variant=variant.id,
                    seeds=group,
                    image=image,
                    command=command,
                    env=env,
                    labels=labels,
                    flavor=flavor,
                    timeout_s=timeout_for(estimate),
                    estimate=estimate,
                    checkpoint_bucket=checkpoint_bucket,
                    memory=floors,
                )
            )
    held_here = tuple(sorted((v.id, s) for v in variants for s in seeds if (v.id, s) in held))
    return DispatchPlan(
        label, dataset, flavor, prices.source, holdings, source, tuple(jobs), held_here,
        tuple(warnings),
    )  # fmt: skip


def memory_warnings(
    variant: str, floors: tuple[PhaseFloor, ...] | None, flavor: Flavor, prices: PriceTable
) -> list[str]:
    """One warning when a phase's floor exceeds the flavour's GPU, naming what would fit."""
    per_gpu = gpu_gb(flavor)
    if floors is None or per_gpu is None:
        return []
    worst = max(floors, key=lambda f: f.gb)
    if worst.gb <= per_gpu:
        return []
    fit = cheapest_fit(prices, worst.gb)
    hint = (
        f"; the cheapest flavour that holds it: {fit.name} (${fit.usd_per_hour:.2f}/h)"
        if fit
        else "; no flavour's GPU holds it"
    )
    return [
        f"{variant}: {worst.phase} needs at least {worst.gb:.1f} GB of GPU memory "
        f"({worst.describe()}), more than {flavor.name}'s {per_gpu:g} GB GPU{hint}"
    ]


def _memory_line(floors: tuple[PhaseFloor, ...], flavor: Flavor) -> str:
    per_gpu = gpu_gb(flavor)
    held = f"; one {flavor.gpu} holds {per_gpu:g} GB" if per_gpu else ""
    phases = ", ".join(f"{f.phase} ≥ {f.gb:.1f} GB" for f in floors)
    return f"  memory   {phases}{held} (floors: weights and training state only)"


def _hm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d} h"


def format_plan(plan: DispatchPlan) -> str:
    f = plan.flavor
    gpu = f"{f.gpus}× {f.gpu} {f.vram}" if f.gpu else "no GPU"
    lines = [
        f"prices: {plan.prices}",
        plan.holdings,
        f"rocobench: {plan.source.repo or '<no remote>'} @ {plan.source.revision or '<no commit>'}",
        f"dispatch label: {plan.label}",
    ]
    lines += [f"warning: {w}" for w in plan.warnings]
    for i, job in enumerate(plan.jobs, 1):
        seeds = ",".join(map(str, job.seeds))
        lines.append(f"job {i}/{len(plan.jobs)}: {job.task} × {job.variant}, seeds {seeds}")
        lines.append(f"  image    {job.image}")
        lines.append(f"  flavour  {f.name} ({f.pretty_name}, {gpu}, ${f.usd_per_hour:.2f}/h)")
        lines.append(f"  command  {shlex.join(job.command)}")
        lines.append(f"  secrets  {TOKEN_SECRET} (your Hub token, sent as a Job secret)")
        lines.append(f"  labels   {', '.join(f'{k}={v}' for k, v in job.labels.items())}")
        if job.checkpoint_bucket:
            lines.append(f"  volume   bucket {job.checkpoint_bucket} at {CHECKPOINT_MOUNT}")
        lines.append(f"  timeout  {_hm(job.timeout_s)}")
        if job.memory is not None:
            lines.append(_memory_line(job.memory, f))
        e = job.estimate
        if e is None:
            lines.append("  estimate unknown (base, split size or GPU figures not known)")
        else:
            lines.append(
                f"  estimate {_hm(e.total_s)} ≈ ${e.usd:.2f}  (setup {e.setup_s / 60:.0f} min, "
                f"build {e.build_s / 60:.0f} min, {e.seeds} × {e.per_seed_s / 60:.0f} min "
                f"per seed; {e.basis})"
            )
    known = [j.estimate for j in plan.jobs if j.estimate is not None]
    runs = sum(len(j.seeds) for j in plan.jobs)
    total_s = sum(e.total_s for e in known)
    total_usd = sum(e.usd for e in known)
    unknown = len(plan.jobs) - len(known)
    tail = f" ({unknown} without an estimate)" if unknown else ""
    lines.append(
        f"total: {len(plan.jobs)} jobs, {runs} runs ({len(plan.held)} already held), "
        f"≈ {_hm(total_s)} ≈ ${total_usd:.2f} on {f.name}{tail}; estimates from a roofline "
        "model (docs/jobs.md), not measurements"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- launching


@dataclass
class Launched:
    plan: JobPlan
    job_id: str
    url: str


def launch(
    api: HfApi,
    plan: DispatchPlan,
    *,
    namespace: str | None = None,
    token: str | None = None,
    extra_labels: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> list[Launched]:
    """Start every planned Job. The token goes to the Hub as a Job secret, nowhere else."""
    token = token if token is not None else _token()
    launched = []
    for job in plan.jobs:
        info = api.run_job(
            image=job.image,
            command=list(job.command),
            env=dict(job.env),
            secrets={TOKEN_SECRET: token},
            flavor=job.flavor.name,
            timeout=job.timeout_s,
            labels={**job.labels, **(extra_labels or {})},
            name=f"rocobench-{job.variant}"[:100].replace(".", "_"),
            volumes=job.volumes(),
            namespace=namespace,
        )
        launched.append(Launched(job, info.id, info.url))
        log(f"launched {info.id}: {job.task} × {job.variant} seeds {job.seeds} ({info.url})")
    return launched


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise DispatchError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN "
            "(a token that may run Jobs and write the results dataset)"
        )
    return token


# --------------------------------------------------------------------------- following


@dataclass(frozen=True)
class JobRow:
    """A dispatched Job as `rocobench jobs` shows it."""

    job_id: str
    stage: str
    message: str | None
    dispatch: str
    task: str
    variant: str
    seeds: tuple[int, ...]
    flavor: str
    created: str
    url: str
    retry_of: str | None
    info: Any = field(repr=False, compare=False, default=None)

    @classmethod
    def from_info(cls, info: JobInfo) -> JobRow:
        env = info.environment or {}
        labels = info.labels or {}
        seeds = tuple(int(s) for s in str(env.get("ROCOBENCH_SEEDS", "")).split(",") if s)
        return cls(
            job_id=info.id,
            stage=str(getattr(info.status.stage, "value", info.status.stage)),
            message=info.status.message,
            dispatch=labels.get(LABEL_DISPATCH, "?"),
            task=str(env.get("ROCOBENCH_TASK", "?")),
            variant=str(env.get("ROCOBENCH_VARIANT", "?")),
            seeds=seeds,
            flavor=str(info.flavor or "?"),
            created=info.created_at.strftime("%Y-%m-%d %H:%M") if info.created_at else "?",
            url=info.url,
            retry_of=labels.get(LABEL_RETRY_OF),
            info=info,
        )


def list_dispatched(
    api: HfApi, *, dispatch: str | None = None, namespace: str | None = None
) -> list[JobRow]:
    labels = {LABEL_KIND: KIND_VALUE}
    if dispatch is not None:
        labels[LABEL_DISPATCH] = dispatch
    rows = [JobRow.from_info(i) for i in api.list_jobs(labels=labels, namespace=namespace)]
    return sorted(rows, key=lambda r: (r.created, r.job_id))


def log_tail(
    api: HfApi, job_id: str, *, lines: int = 20, namespace: str | None = None
) -> list[str]:
    """The last lines of a Job's logs, scrubbed of the token should a program have printed it."""
    from huggingface_hub import get_token

    token = get_token()
    out = list(api.fetch_job_logs(job_id=job_id, tail=lines, namespace=namespace))[-lines:]
    return [line.replace(token, "hf_***") if token else line for line in out]


def format_rows(rows: Iterable[JobRow]) -> list[str]:
    out = []
    for r in rows:
        seeds = ",".join(map(str, r.seeds))
        retry = f" (retry of {r.retry_of})" if r.retry_of else ""
        msg = f" — {r.message}" if r.message else ""
        out.append(
            f"{r.job_id}  {r.stage:<10} {r.created}  {r.dispatch}  {r.task} × {r.variant} "
            f"seeds {seeds}  {r.flavor}{retry}{msg}"
        )
    return out


def watch(
    api: HfApi,
    *,
    dispatch: str | None,
    namespace: str | None,
    interval_s: float,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[JobRow]:
    """Poll until every listed Job reached a final stage; log each change of stage."""
    seen: dict[str, str] = {}
    while True:
        rows = list_dispatched(api, dispatch=dispatch, namespace=namespace)
        for row in rows:
            if seen.get(row.job_id) != row.stage:
                seen[row.job_id] = row.stage
                log(format_rows([row])[0])
        if all(r.stage in DONE_STAGES for r in rows):
            return rows
        sleep(interval_s)


@dataclass
class RetryOutcome:
    relaunched: list[Launched]
    finished_meanwhile: list[tuple[str, str, int]]  # (job id, variant, seed) not redone
    skipped: list[str]  # failed Jobs already retried


def retry_failed(
    api: HfApi,
    rows: Sequence[JobRow],
    *,
    load_task: Callable[[str], TaskSpec],
    load_variant: Callable[[str], VariantSpec],
    prices: PriceTable,
    source: Source,
    namespace: str | None = None,
    offline: bool = False,
    log: Callable[[str], None] = print,
) -> RetryOutcome:
    """Relaunch failed Jobs for the runs their dataset still lacks; each failed Job once.

    The new Job keeps the dispatch label (so the records keep their provenance) and names the
    Job it replaces; with a checkpoint bucket it resumes from the runs' checkpoints there.
    """
    retried = {r.retry_of for r in rows if r.retry_of}
    outcome = RetryOutcome([], [], [])
    for row in rows:
        if row.stage not in FAILED_STAGES:
            continue
        if row.job_id in retried:
            outcome.skipped.append(row.job_id)
            continue
        env = (row.info.environment or {}) if row.info is not None else {}
        dataset = str(env.get("ROCOBENCH_RESULTS_DATASET", ""))
        task, variant = load_task(row.task), load_variant(row.variant)
        held, _ = held_runs(api, dataset, task, [variant], row.seeds, offline=offline)
        for seed in row.seeds:
            if (variant.id, seed) in held:
                outcome.finished_meanwhile.append((row.job_id, variant.id, seed))
        bucket = _bucket_of(row.info)
        plan = plan_dispatch(
            task, [variant], row.seeds, dataset=dataset, flavor_name=row.flavor, prices=prices,
            held=held, holdings="", source=source, label=row.dispatch, per_seed=False,
            image=(row.info.docker_image if row.info is not None else None) or DEFAULT_IMAGE,
            checkpoint_bucket=bucket,
        )  # fmt: skip
        if not plan.jobs:
            log(f"{row.job_id}: every run of it is in {dataset} now; nothing to relaunch")
            continue
        outcome.relaunched += launch(
            api, plan, namespace=namespace, extra_labels={LABEL_RETRY_OF: row.job_id}, log=log
        )
    return outcome


def _bucket_of(info: Any) -> str | None:
    for volume in (getattr(info, "volumes", None) or []) if info is not None else []:
        if volume.type == "bucket" and volume.mount_path == CHECKPOINT_MOUNT:
            return volume.source
    return None


# --------------------------------------------------------------------------- verification


def job_record_problem(
    api: HfApi, record: RunRecord, dataset: str, *, maintainers: Iterable[str] | None = None
) -> str | None:
    """None if `record` was written by the dispatched Job it names; otherwise why not.

    The Job must exist on the Hub, carry the record's dispatch label, have been launched for this
    record's task, variant and seed into `dataset`, and (when `maintainers` is given) be owned or
    started by one of them. What a verifier builds the `verified` status on.
    """
    job = record.provenance.job
    if job is None:
        return "not written by a dispatched Job"
    if job.job_id is None:
        return "the Job could not be identified when the record was written"
    try:
        info = api.inspect_job(job_id=job.job_id, namespace=job.namespace)
    except Exception as err:
        return f"Job {job.job_id} cannot be inspected ({type(err).__name__})"
    row = JobRow.from_info(info)
    env = info.environment or {}
    if (info.labels or {}).get(LABEL_DISPATCH) != job.dispatch:
        return f"Job {job.job_id} does not carry the dispatch label {job.dispatch!r}"
    if (row.task, row.variant) != (record.task, record.variant) or record.seed not in row.seeds:
        return f"Job {job.job_id} was launched for {row.task} × {row.variant} seeds {row.seeds}"
    if env.get("ROCOBENCH_RESULTS_DATASET") != dataset:
        return f"Job {job.job_id} wrote to {env.get('ROCOBENCH_RESULTS_DATASET')}, not {dataset}"
    if maintainers is not None:
        who = {info.owner.name, getattr(info.initiator, "name", None)}
        if not who & set(maintainers):
            return f"Job {job.job_id} was started by {info.owner.name}, not a maintainer"
    return None
