"""Sweeps: every (variant, seed) of a suite, here one after another or as tasks on a Ray cluster.

Both ways run the same two steps: `build_variant` (the technique chain into the build cache) and
`run_seeds` (`harness.pipeline.runner.run_variant` for some seeds), so both write the same records
in the same layout and reuse finished runs the same way. On Ray:

- each variant's build is one task, started once its distillation teachers are built, and each
  (variant, seed) run is one task, started once its variant is built;
- a task asks for one CPU, the GPU when the device is CUDA, and `memory_gib` of host memory, and
  is retried up to `max_retries` times, after an error or a dead worker alike (a rerun resumes
  from the run's checkpoint when it lands on the same machine);
- the build cache is `ROCOBENCH_CACHE` as the driver sees it, handed to every task: on a
  cluster of several machines it must be a folder they all see (a shared file system), or each
  machine builds its own copy. Two builds of one cache key take turns (the build's lock); builds
  of different keys run at once.

Records go to a folder or an fsspec URI (`harness.records.remote`); with several machines, a folder
must be shared by all of them, or a URI they can all write (`s3://…`, `gs://…`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.paths import cache_dir
from harness.records import remote as storage
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec

CACHE_ENV = "ROCOBENCH_CACHE"
CARBON_ENV = "ROCOBENCH_CARBON_COUNTRY"
RAY_MISSING = 'the --ray option needs Ray: pip install "rocobench[ray]"'


class SweepError(RuntimeError):
    """The sweep cannot start (e.g. Ray is missing)."""


@dataclass(frozen=True)
class SweepOptions:
    """What `rocobench run` would be given for each (variant, seed)."""

    seeds: tuple[int, ...]
    device: str = "auto"
    batch_size: int | None = None
    limit: int | None = None
    force: bool = False
    fixed_new_tokens: int | None = None
    carbon_country: str | None = None
    progress: bool = False  # per-image bars inside each run
    max_retries: int = 2
    memory_gib: float = 4.0
    backend: str = "hf"  # or "vllm": generation in a vLLM worker


@dataclass(frozen=True)
class RunResult:
    task: str
    variant: str
    seed: int
    where: str  # the run folder: a path or a URI
    reused: bool


@dataclass(frozen=True)
class Failure:
    what: str  # "build V" or "run V seed N"
    error: str


@dataclass(frozen=True)
class SweepReport:
    runs: list[RunResult]
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- the two steps


def build_variant(variant: VariantSpec, device: str) -> str | None:
    """Build the variant's chain (and an embedded twin base) unless cached; its build key.
    A build of the same key in another process is waited for, then reused."""
    from harness.models.build import ensure_built

    return ensure_built(variant, device=device, progress=False).key


def _scratch(location: str) -> Path:
    """Where runs bound for a URI work first: per user and location, kept between attempts so a
    retried run on the same machine resumes from its checkpoint."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"rocobench-{os.getuid()}" / "sweep" / digest


def run_seeds(
    task: TaskSpec,
    variant: VariantSpec,
    location: str,
    options: SweepOptions,
    memory_method: str = "shared process",
) -> list[RunResult]:
    """`run_variant` for `options.seeds`, into a folder, or locally and then copied to a URI;
    `memory_method` says how the calling process was kept clean of other variants."""
    from harness.pipeline.runner import run_variant
    from harness.records.layout import seed_dir

    remote = storage.is_remote(location)
    results = _scratch(location) if remote else storage.local_path(location)

    def rel(seed: int) -> str:
        return seed_dir(
            Path(), task.task, variant.id, seed, options.fixed_new_tokens, backend=options.backend
        ).as_posix()

    if remote:  # the location's records decide reuse, as a folder's would
        for seed in options.seeds:
            storage.fetch_record(location, rel(seed), results / rel(seed))
    outcomes = run_variant(
        task,
        variant,
        results,
        seeds=list(options.seeds),
        device=options.device,
        batch_size=options.batch_size,
        limit=options.limit,
        force=options.force,
        progress=options.progress,
        fixed_new_tokens=options.fixed_new_tokens,
        carbon_country=options.carbon_country,
        backend=options.backend,
        memory_method=memory_method,
    )
    done = []
    for o in outcomes:
        where = str(o.record.parent)
        if remote:
            where = storage.join(location, rel(o.seed))
            if not o.reused:
                storage.publish_run(o.record.parent, location, rel(o.seed))
            shutil.rmtree(o.record.parent, ignore_errors=True)
        done.append(RunResult(o.task, o.variant, o.seed, where, o.reused))
    return done


def build_and_run_seeds(
    task: TaskSpec, variant: VariantSpec, location: str, options: SweepOptions
) -> list[RunResult]:
    """A Ray run task: `run_seeds`, after building under the lock should this machine's cache
    lack the build (a cache that is not shared)."""
    build_variant(variant, options.device)
    return run_seeds(task, variant, location, options)


# --------------------------------------------------------------------------- planning


def teachers(variant: VariantSpec) -> list[VariantSpec]:
    """The variants whose builds this variant's chain learns from (`Dependencies.teachers`)."""
    from harness.specs import catalog

    return catalog.teachers(variant)


def build_order(variants: Sequence[VariantSpec]) -> dict[str, tuple[VariantSpec, list[str]]]:
    """Every variant to build — the suite's and their teachers' — with the ids it waits for."""
    plan: dict[str, tuple[VariantSpec, list[str]]] = {}
    pending = list(variants)
    while pending:
        v = pending.pop()
        if v.id in plan:
            continue
        deps = teachers(v)
        plan[v.id] = (v, [d.id for d in deps])
        pending += deps
    return plan


# --------------------------------------------------------------------------- running


def sweep_local(
    task: TaskSpec, variants: Sequence[VariantSpec], location: str, options: SweepOptions
) -> SweepReport:
    """One variant after another, in this process: `rocobench run --suite`, plus URIs."""
    runs: list[RunResult] = []
    for variant in variants:
        runs += run_seeds(task, variant, location, options)
    return SweepReport(runs, [])


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_MISSING) from None
    return ray


def _absolute(location: str) -> str:
    """Tasks may start in another working directory: pass folders as absolute paths."""
    if storage.is_remote(location):
        return location
    return str(storage.local_path(location).resolve())


def sweep_ray(
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    location: str,
    options: SweepOptions,
    *,
    address: str = "auto",
    progress: bool = True,
) -> SweepReport:
    """Builds and (variant, seed) runs as Ray tasks on the cluster at `address` (`local`: start
    one on this machine; `auto`: the running one). Uses an already initialised Ray as it is."""
    ray = _import_ray()
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=True)
    gpus = ray.cluster_resources().get("GPU", 0)
    device = options.device
    if device == "auto":  # the workers' hardware decides, not the driver's
        device = "cuda" if gpus > 0 else "cpu"
    if device == "cuda" and gpus == 0:  # its tasks could never be scheduled
        raise SweepError("--device cuda, but the Ray cluster has no GPU")
    options = replace(options, device=device, progress=False)
    location = _absolute(location)
    env = {CACHE_ENV: str(cache_dir().resolve())}
    for name in ("HF_HOME", "HF_HUB_OFFLINE", CARBON_ENV):
        if name in os.environ:
            env[name] = os.environ[name]
    resources = {
        "num_cpus": 1,
        "num_gpus": 1 if device == "cuda" else 0,
        "memory": int(options.memory_gib * 2**30),
        "max_retries": options.max_retries,
        "retry_exceptions": True,
        "runtime_env": {"env_vars": env},
    }
    build_task = ray.remote(build_variant).options(**resources)
    run_task = ray.remote(build_and_run_seeds).options(**resources)

    plan = build_order(variants)
    wanted = {v.id for v in variants}
    built: set[str] = set()
    failed: set[str] = set()
    submitted: set[str] = set()
    pending: dict[Any, tuple[str, str, int | None]] = {}  # ref -> (kind, variant id, seed)
    runs: list[RunResult] = []
    failures: list[Failure] = []
    bar = tqdm(
        total=len(plan) + len(variants) * len(options.seeds),
        desc="sweep",
        unit="task",
        disable=not progress,
        file=sys.stderr,
    )

    def submit_ready() -> None:
        for vid, (spec, deps) in plan.items():
            if vid not in submitted and all(d in built for d in deps):
                submitted.add(vid)
                pending[build_task.remote(spec, device)] = ("build", vid, None)

    def fail_build(vid: str, error: str) -> None:
        """The build's failure, its runs' and (recursively) its students'."""
        failed.add(vid)
        failures.append(Failure(f"build {vid}", error))
        if vid in wanted:
            failures.extend(Failure(f"run {vid} seed {s}", "not built") for s in options.seeds)
            bar.update(len(options.seeds))
        for other, (_, deps) in plan.items():
            if vid in deps and other not in failed:
                bar.update(1)
                fail_build(other, f"its teacher {vid} was not built")

    submit_ready()
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        kind, vid, seed = pending.pop(ref)
        bar.update(1)
        try:
            value = ray.get(ref)
        except Exception as err:  # the task's error after its retries, or a lost worker
            if kind == "build":
                fail_build(vid, _one_line(err))
            else:
                failures.append(Failure(f"run {vid} seed {seed}", _one_line(err)))
            continue
        if kind == "run":
            runs.extend(value)
            continue
        built.add(vid)
        if vid in wanted:
            for s in options.seeds:
                one = replace(options, seeds=(s,))
                pending[run_task.remote(task, plan[vid][0], location, one)] = ("run", vid, s)
        submit_ready()
    bar.close()
    order = {v.id: i for i, v in enumerate(variants)}
    runs.sort(key=lambda r: (order[r.variant], r.seed))
    return SweepReport(runs, failures)


def _one_line(err: BaseException) -> str:
    """The innermost message of a Ray task error, on one line."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        err = cause
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"
