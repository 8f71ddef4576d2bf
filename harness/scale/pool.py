"""A suite on this machine's cores: builds and variant runs in a pool of worker processes.

The same two steps as the Ray sweep (`harness.scale.sweep.build_variant`, `run_seeds`),
scheduled on a local process pool:

- a build starts once its distillation teachers are built; among ready builds, teachers and
  the longest training chains go first (they lie on the critical path);
- a variant's run (all its seeds, one model load) starts once its build is done; builds are
  preferred over runs when a worker frees up;
- each worker gets `cores // workers` threads so workers do not fight over cores (builds train
  with their own fixed thread count: `harness.models.determinism`);
- variants whose runs are all finished, and whose builds are cached, are checked here in this
  process, so a fully cached suite starts no worker at all.

Workers are started with `spawn` (a fresh interpreter: no forked torch thread pools). A
variant's run has a worker process of its own, shared with no other build or run, so its memory
figures are its own (`harness.pipeline.fresh_process`); builds reuse theirs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.progress import log_line
from harness.scale.sweep import (
    Failure,
    RunResult,
    SweepOptions,
    SweepReport,
    build_order,
    build_variant,
    run_seeds,
)
from harness.spans import span
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec

Log = Callable[[str], None]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """One worker per usable core on the CPU (at most 4: tiny models, memory); one on a GPU."""
    if device == "cuda":
        return 1
    return max(1, min(4, usable_cores()))


def _init_worker(threads: int) -> None:
    """Before torch is imported in the worker: its thread pools take these sizes. Libraries
    are quieted here, before a build imports them, as `run_variant` does for runs."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    from harness.pipeline.runner import quiet_libraries

    torch.set_num_threads(threads)
    quiet_libraries()


def _training_steps(variant: VariantSpec) -> int:
    return sum(
        getattr(t, "train", None) is not None or getattr(t, "recovery", None) is not None
        for t in variant.techniques
    )


@dataclass
class _Job:
    kind: str  # "build" or "run"
    variant: VariantSpec


def _fresh_run(
    task: TaskSpec, variant: VariantSpec, location: str, options: SweepOptions
) -> list[RunResult]:
    """A variant's runs in this fresh worker, after the runtime every variant starts from."""
    from harness.pipeline.fresh_process import FRESH, warm_runtime

    warm_runtime()
    return run_seeds(task, variant, location, options, memory_method=FRESH)


def _in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a new interpreter of its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(fn, *args).result()


def _needs_work(task: TaskSpec, variant: VariantSpec, location: str, options: SweepOptions) -> bool:
    """True unless every seed has a finished, current record (spec check) and nothing is to
    be built; the data check of reuse runs later, in `run_seeds`."""
    from harness.pipeline.plan import build_status, plan

    [planned] = plan(
        task,
        [variant],
        options.seeds,
        Path(location),
        fixed_new_tokens=options.fixed_new_tokens,
        force=options.force,
    )
    return any(s.problem is not None for s in planned.seeds) or build_status(variant).endswith(
        "to build"
    )


def sweep_pool(
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    location: str,
    options: SweepOptions,
    *,
    workers: int | None = None,
    log: Log = log_line,
    on_variant: Callable[[str, list[RunResult]], None] | None = None,
) -> SweepReport:
    """Build and run every variant of the suite on `workers` processes (default: one per core).
    Runs are reported in suite order; a failed build fails its runs and its students'.
    `on_variant(variant id, its runs)` is called as each variant's runs finish."""
    from harness.models.device import resolve_device

    device = resolve_device(options.device)
    options = replace(options, device=device)
    workers = workers or default_workers(device)
    runs: list[RunResult] = []
    failures: list[Failure] = []
    with span("plan", "builds and finished runs"):
        busy = [v for v in variants if _needs_work(task, v, location, options)]
    for v in variants:  # finished: the reuse check in this process, no worker needed
        if v not in busy:
            with span("reuse check", v.id):
                done = run_seeds(task, v, location, options)
            runs += done
            if on_variant is not None:
                on_variant(v.id, done)
    if busy and (workers == 1 or len(busy) == 1):
        for v in busy:  # nothing to spread: no pool to start
            try:
                build_variant(v, device)
                done = _in_fresh_process(_fresh_run, task, v, location, options)
                runs += done
                if on_variant is not None:
                    on_variant(v.id, done)
            except Exception as err:  # the others still run; the caller reports failures
                failures.append(Failure(f"variant {v.id}", _one_line(err)))
    elif busy:
        runs += _pooled(task, busy, location, options, workers, failures, log, on_variant)
    order = {v.id: i for i, v in enumerate(variants)}
    runs.sort(key=lambda r: (order[r.variant], r.seed))
    return SweepReport(runs, failures)


def _pooled(
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    location: str,
    options: SweepOptions,
    workers: int,
    failures: list[Failure],
    log: Log,
    on_variant: Callable[[str, list[RunResult]], None] | None = None,
) -> list[RunResult]:
    options = replace(options, progress=False)  # bars of parallel workers would interleave
    plan = build_order(variants)  # the suite's variants and their teachers
    to_build = {vid for vid, (spec, _) in plan.items() if spec.techniques}
    dependents = {vid: sum(vid in deps for _, deps in plan.values()) for vid in plan}
    wanted = {v.id for v in variants}
    built: set[str] = {vid for vid in plan if vid not in to_build}
    failed: set[str] = set()
    started: set[tuple[str, str]] = set()
    threads = max(1, usable_cores() // workers)
    log(f"pool    {workers} workers × {threads} threads: {len(to_build)} builds, "
        f"{len(variants)} variant runs")  # fmt: skip
    runs: list[RunResult] = []

    def ready() -> list[_Job]:
        builds = [
            _Job("build", spec)
            for vid, (spec, deps) in plan.items()
            if vid in to_build
            and vid not in failed
            and ("build", vid) not in started
            and all(d in built for d in deps)
            and not any(d in failed for d in deps)
        ]
        builds.sort(key=lambda j: (-dependents[j.variant.id], -_training_steps(j.variant)))
        todo = [
            _Job("run", plan[vid][0])
            for vid in wanted
            if vid in built and ("run", vid) not in started
        ]
        return builds + todo

    def fail(vid: str, error: str) -> None:
        failed.add(vid)
        failures.append(Failure(f"build {vid}", error))
        for other, (_, deps) in plan.items():
            if vid in deps and other not in failed:
                fail(other, f"its teacher {vid} was not built")

    context = multiprocessing.get_context("spawn")
    pending: dict[Future[Any], _Job] = {}
    # A run gets a worker process of its own (it never inherits another job's memory); builds
    # share theirs, which saves a start-up per build. At most `workers` jobs run at once.
    with (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                            initargs=(threads,)) as builders,
        ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                            initargs=(threads,), max_tasks_per_child=1) as runners,
    ):  # fmt: skip
        while True:
            for job in ready()[: workers - len(pending)]:
                started.add((job.kind, job.variant.id))
                if job.kind == "build":
                    future = builders.submit(build_variant, job.variant, options.device)
                else:
                    future = runners.submit(_fresh_run, task, job.variant, location, options)
                pending[future] = job
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                vid = job.variant.id
                try:
                    value = future.result()
                except Exception as err:  # the worker's error, or a worker that died
                    if job.kind == "build":
                        fail(vid, _one_line(err))
                    else:
                        failures.append(Failure(f"run {vid}", _one_line(err)))
                    continue
                if job.kind == "build":
                    built.add(vid)
                else:
                    runs += value
                    if on_variant is not None:
                        on_variant(vid, value)
    return runs


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"
