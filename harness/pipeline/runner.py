"""Run (task, variant, seeds): reuse finished work, build and load the model once, run each seed.

A finished run is reused when its record was made from the same task spec, the same manifest and
the same evaluated ids; otherwise the runner says which of these changed and recomputes. The
executor (one process, or a data-parallel group) and the mode (trained weights, or random weights
for speed figures) are chosen once, by the caller; the steps below never branch on them. Crash
safety (locks, checkpoints, resume) is in `harness.pipeline.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from harness.data.dataset import EvalSet
from harness.metering import METERING_VERSION, Metering
from harness.metering.memory import current_rss_mib
from harness.models.device import resolve_device
from harness.models.sources import BuildError
from harness.pipeline.backends import backend_for
from harness.pipeline.executor import Executor, SingleProcess
from harness.pipeline.modes import TRAINED, Mode
from harness.pipeline.seed import SeedRun, generate_seed, record_seed
from harness.progress import log_line
from harness.records.layout import RECORD_FILE, seed_dir
from harness.records.store import read_record
from harness.spans import span
from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec

Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    task: str
    variant: str
    seed: int
    record: Path
    reused: bool
    note: str = ""


def reuse_problem(
    path: Path,
    task: TaskSpec,
    variant: VariantSpec,
    evalset: EvalSet,
    fixed_new_tokens: int | None = None,
    backend: str = "hf",
) -> str | None:
    """None if the record at `path` can be reused; otherwise why it must be recomputed."""
    problem = spec_reuse_problem(path, task, variant, fixed_new_tokens, backend)
    if problem is not None:
        return problem
    old = read_record(path)
    if old.dataset.ids_sha256 != evalset.ids_sha256 or old.dataset.revision != evalset.revision:
        return "the evaluated data changed"
    return None


def spec_reuse_problem(
    path: Path,
    task: TaskSpec,
    variant: VariantSpec,
    fixed_new_tokens: int | None = None,
    backend: str = "hf",
) -> str | None:
    """`reuse_problem` without the data check: what a plan can tell before loading the data."""
    if not path.exists():
        return "no record yet"
    try:
        old = read_record(path)
    except ValueError as err:
        return f"the existing record is unreadable ({str(err).splitlines()[0]})"
    if old.task_sha256 != spec_hash(task):
        return "the task spec changed"
    if old.model.manifest_sha256 != spec_hash(variant):
        return "the variant manifest changed"
    if old.measurements.metering_version < METERING_VERSION:
        return "the record predates the current metering"
    if old.measurements.fixed_new_tokens != fixed_new_tokens:
        return "the generation length mode changed"
    if old.backend.name != backend:
        return "the generation backend changed"
    return None


def _reuse_or_redo(
    task: TaskSpec,
    variant: VariantSpec,
    evalset: EvalSet,
    folders: dict[int, Path],
    force: bool,
    fixed_new_tokens: int | None,
    log: Log,
    backend: str = "hf",
) -> tuple[list[Outcome], list[tuple[int, Path]]]:
    """(the seeds whose finished record is reused, the (seed, folder) pairs to run)."""
    reused: list[Outcome] = []
    todo: list[tuple[int, Path]] = []
    for seed, out in folders.items():
        problem = (
            "--force was given"
            if force
            else reuse_problem(out / RECORD_FILE, task, variant, evalset, fixed_new_tokens, backend)
        )
        if problem is None:
            log(f"reuse   {task.task} × {variant.id} seed {seed}: finished record is current")
            reused.append(Outcome(task.task, variant.id, seed, out / RECORD_FILE, reused=True))
        else:
            if problem != "no record yet":
                log(f"redo    {task.task} × {variant.id} seed {seed}: {problem}")
            todo.append((seed, out))
    return reused, todo


def quiet_libraries() -> None:
    """Our own progress bar and log lines are the output; silence the libraries' per-step bars."""
    import logging
    import warnings

    import datasets
    import transformers

    # bitsandbytes warns at import, on CPUs with AVX512-BF16, that an optional kernel package
    # is missing; it falls back to its own kernels, which are the ones the records were made with.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # peft's k-bit preparation calls a transformers method deprecated in favour of another name
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _check_options(seeds: Sequence[int] | None, batch_size: int | None, limit: int | None) -> None:
    """The command line checks these too; callers of the API get the same refusals."""
    from harness.specs.limits import MAX_BATCH, MAX_LIMIT, MAX_SEED

    if seeds is not None:
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError("seeds: give a non-empty list of distinct seeds")
        if any(not 0 <= s <= MAX_SEED for s in seeds):
            raise ValueError(f"seeds: each seed must be in 0..{MAX_SEED}")
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size: expected 1..{MAX_BATCH}, got {batch_size}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: expected 1..{MAX_LIMIT}, got {limit}")


def run_variant(
    task: TaskSpec,
    variant: VariantSpec,
    results: Path,
    *,
    seeds: Sequence[int] | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    log: Log | None = None,
    fixed_new_tokens: int | None = None,
    carbon_country: str | None = None,
    mode: Mode = TRAINED,
    executor: Executor | None = None,
    backend: str = "hf",
    memory_method: str = "shared process",
) -> list[Outcome]:
    """Run every seed of (task, variant); the model is loaded once, and only if needed.

    `fixed_new_tokens` N: every caption exactly N tokens (speed comparisons), recorded in
    `seed-<n>-fixed-<N>/`. `carbon_country`: ISO 3166-1 alpha-3 code for CO2 (default: the
    ROCOBENCH_CARBON_COUNTRY environment variable, else USA). `mode`: `modes.RANDOM_WEIGHTS`
    times the base's published architecture with random weights on synthetic images, not
    scored, recorded in `seed-<n>[-fixed-<N>]-random/`. `executor`: one process (default) or
    `harness.scale.distributed.DataParallel`. `backend` "vllm": generation in a vLLM worker
    (`harness.pipeline.backends.vllm`), recorded in `seed-<n>[…]-vllm/`. `memory_method` says
    how this process was kept clean of other variants (`harness.pipeline.fresh_process`),
    recorded with the memory figures.
    """
    _check_options(seeds, batch_size, limit)  # before anything is loaded or written
    executor = executor or SingleProcess()
    engine = backend_for(backend)
    engine.check(task, variant, mode, executor)  # before the data, a lock or any build
    if log is None:
        log = log_line if executor.is_main else (lambda _: None)  # the other ranks would repeat
    quiet_libraries()
    if mode.random_weights and executor.world_size > 1:
        raise BuildError("--random-weights runs in a single process")
    evalset = mode.evalset(task, limit)
    folders = {
        seed: seed_dir(
            results, task.task, variant.id, seed, fixed_new_tokens, mode.random_weights, backend
        )
        for seed in (task.seeds if seeds is None else seeds)
    }
    # the main process's view of the results folder decides for every process
    outcomes, todo = executor.decide(
        _reuse_or_redo(task, variant, evalset, folders, force, fixed_new_tokens, log, backend)
    )
    if not todo:
        return outcomes

    with ExitStack() as locks:
        for _, out in todo:  # fail fast, before loading the model, if another run writes here
            locks.enter_context(executor.lock(out, force))
        with span("metering setup", variant.id):
            # codecarbon's hardware probe runs here, outside every timed phase
            metering = Metering.standard(
                resolve_device(device), carbon_country, cuda_devices=executor.cuda_devices()
            )
            metering.meters[:0] = engine.meters()
        with metering.phase("build") as build:  # the technique chain; ~0 s when already cached
            executor.build(lambda: mode.build(variant, device=device, progress=progress, log=log))
        # What the process holds before the model: subtracted from its peak, this leaves the
        # variant's own memory (weights and activations).
        memory = {"rss_baseline_mib": round(current_rss_mib(), 1), "memory_method": memory_method}
        with metering.phase("load") as load, span("variant load", variant.id):
            loaded = engine.load(
                task,
                variant,
                mode,
                device=device,
                batch_size=batch_size or task.batch_size,
                fixed_new_tokens=fixed_new_tokens,
                progress=progress,
            )
        locks.callback(loaded.close)  # a vLLM worker stops with the run, whatever happens
        log(
            f"loaded  {variant.id} ({loaded.base}, {loaded.n_parameters / 1e6:.2f} M parameters, "
            f"{loaded.dtype} on {loaded.device_label}) in {load.result.wall_s:.1f} s"
        )
        runs = [
            SeedRun(
                task=task,
                loaded=loaded,
                evalset=evalset,
                seed=seed,
                out_dir=out,
                batch_size=batch_size or task.batch_size,
                setup={"build": build.result, "load": load.result},
                metering=metering,
                executor=executor,
                scored=mode.scored,
                fixed_new_tokens=fixed_new_tokens,
                progress=progress,
                log=log,
                engine=engine,
                memory=memory,
            )
            for seed, out in todo
        ]
        # Every seed's captions before any score: the scorers (BERTScore's backbone, WordNet)
        # would otherwise sit in the process's memory while the next seed generates.
        generated = [generate_seed(run) for run in runs]
        for run, captions in zip(runs, generated, strict=True):
            record = record_seed(run, captions)
            summary = ", ".join(f"{k} {v.value:.4f}" for k, v in record.metrics.items())
            summary = summary or f"not scored ({mode.name})"
            log(
                f"done    {task.task} × {variant.id} seed {run.seed}: {summary} "
                f"({record.measurements.generate_s:.1f} s generation)"
            )
            outcomes.append(
                Outcome(task.task, variant.id, run.seed, run.out_dir / RECORD_FILE, reused=False)
            )
        del loaded
    return outcomes
