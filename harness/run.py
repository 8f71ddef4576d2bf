"""Run (task, variant, seeds): generate, score, record — reusing finished work.

A finished run is reused when its record was made from the same task spec, the same manifest and
the same evaluated ids; otherwise the runner says which of these changed and recomputes.

Crash safety: a seed's run holds `<run dir>/.lock` (fcntl.flock) while it works, so a second
process on the same run fails fast. Generation appends each finished batch to
`predictions.partial.jsonl` (a header line with the run's key, then one line per sample, fsynced
per batch); a rerun whose key matches skips the samples already there. Per-sample seeding makes
the resumed captions identical to an uninterrupted run's. Every other file is written atomically
and record.json last.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness import distributed
from harness.build import LoadedVariant, ensure_built, load_variant, resolve_device
from harness.concepts import reference_concepts
from harness.data import EvalSet, load_split
from harness.generate import BatchTiming, Prediction, generate_all
from harness.meters import METERING_VERSION, Metering, summarise
from harness.metrics import compute_metrics, parse_options
from harness.provenance import provenance
from harness.records import (
    PREDICTIONS_FILE,
    RECORD_FILE,
    SAMPLES_FILE,
    DatasetRef,
    MetricValue,
    ModelRef,
    PhaseFigures,
    RunRecord,
    read_record,
    run_dir,
    write_jsonl,
    write_record,
)
from harness.specs import TaskSpec, VariantSpec, spec_hash

Log = Callable[[str], None]

PARTIAL_FILE = "predictions.partial.jsonl"
LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir/.lock` (exclusive, non-blocking flock); RunLocked if another process has it.

    The lock dies with its process, kill -9 included. The file stays behind once the run has
    written something; a run that wrote nothing (e.g. its model failed to load) removes the lock
    file and the folders it created, so a failed run leaves no trace.
    """
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunLocked(f"{out_dir} is being written by another run (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if created and [p.name for p in out_dir.iterdir()] == [LOCK_FILE]:
                path.unlink(missing_ok=True)  # still held: no other run can have it now
                for d in created:  # innermost first
                    try:
                        d.rmdir()
                    except OSError:
                        break
    finally:
        os.close(fd)  # closing releases the lock


def checkpoint_key(
    task: TaskSpec,
    variant: VariantSpec,
    evalset: EvalSet,
    seed: int,
    fixed_new_tokens: int | None,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: anything that changes a caption."""
    return {
        "task_sha256": spec_hash(task),
        "manifest_sha256": spec_hash(variant),
        "seed": seed,
        "ids_sha256": evalset.ids_sha256,
        "dataset_revision": evalset.revision,
        "generation": task.generation_kwargs.model_dump(mode="json"),
        "fixed_new_tokens": fixed_new_tokens,
    }


def _prediction_row(p: Prediction, text: str) -> dict[str, Any]:
    row = {"id": p.id, "prediction": text, "raw": p.text, "new_tokens": p.new_tokens,
           "sample_seed": p.sample_seed}  # fmt: skip
    return row if p.error is None else row | {"error": p.error}


def read_checkpoint(path: Path, key: Mapping[str, Any]) -> list[Prediction]:
    """The predictions of a matching checkpoint; [] if none, another run's, or unreadable.

    Lines after the header that do not parse (a torn last line from a kill mid-write) end the
    read: everything before them was fsynced whole.
    """
    if not path.exists():
        return []
    done: list[Prediction] = []
    with path.open(encoding="utf-8") as fh:
        try:
            header = json.loads(fh.readline())
        except ValueError:
            return []
        if not isinstance(header, dict) or header.get("checkpoint") != dict(key):
            return []
        for line in fh:
            try:
                row = json.loads(line)
                done.append(
                    Prediction(
                        id=row["id"],
                        text=row["raw"],
                        new_tokens=row["new_tokens"],
                        sample_seed=row["sample_seed"],
                        error=row.get("error"),
                    )
                )
            except (ValueError, KeyError, TypeError):
                break
    return done


def open_checkpoint(
    path: Path, key: Mapping[str, Any], done: Sequence[Prediction], clean: Callable[[str], str]
) -> IO[str]:
    """Rewrite the checkpoint (header + `done`, torn tail dropped) atomically; open it to append."""
    write_jsonl(
        path,
        [{"checkpoint": dict(key)}, *(_prediction_row(p, clean(p.text)) for p in done)],
    )
    return path.open("a", encoding="utf-8")


def append_batch(fh: IO[str], preds: Sequence[Prediction], clean: Callable[[str], str]) -> None:
    for p in preds:
        fh.write(json.dumps(_prediction_row(p, clean(p.text)), ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _stderr(msg: str) -> None:
    if distributed.is_main():  # the other ranks of a data-parallel run would repeat it
        print(msg, file=sys.stderr, flush=True)


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
) -> str | None:
    """None if the record at `path` can be reused; otherwise why it must be recomputed."""
    problem = spec_reuse_problem(path, task, variant, fixed_new_tokens)
    if problem is not None:
        return problem
    old = read_record(path)
    if old.dataset.ids_sha256 != evalset.ids_sha256 or old.dataset.revision != evalset.revision:
        return "the evaluated data changed"
    return None


def spec_reuse_problem(
    path: Path, task: TaskSpec, variant: VariantSpec, fixed_new_tokens: int | None = None
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
    return None


def quiet_libraries() -> None:
    """Our own progress bar and log lines are the output; silence the libraries' per-step bars."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def seed_dir(
    results: Path, task: str, variant: str, seed: int, fixed: int | None, random: bool = False
) -> Path:
    """Where a run's files go; fixed-length and random-weight runs beside, never over, the
    natural-length ones with real weights."""
    out = run_dir(results, task, variant, seed)
    name = out.name + ("" if fixed is None else f"-fixed-{fixed}") + ("-random" if random else "")
    return out.with_name(name)


def run_seed(
    task: TaskSpec,
    loaded: LoadedVariant,
    evalset: EvalSet,
    seed: int,
    out_dir: Path,
    *,
    batch_size: int,
    setup: Mapping[str, PhaseFigures],
    metering: Metering,
    fixed_new_tokens: int | None = None,
    progress: bool = True,
    log: Log = _stderr,
) -> RunRecord:
    """Generate, score and record one seed; `setup` holds the variant's build and load phases
    (shared by its seeds), `metering` the meters wrapped around the generate and score phases."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(evalset),
        desc=f"{loaded.spec.id} seed {seed}",
        unit="img",
        disable=not progress or not distributed.is_main(),
        file=sys.stderr,
        leave=False,
    )
    clean = task.preprocessing.prediction.apply
    group = distributed.current()
    partial = out_dir / (PARTIAL_FILE if group is None else group.checkpoint_name)
    key = checkpoint_key(task, loaded.spec, evalset, seed, fixed_new_tokens)
    wanted = set(evalset.ids)
    done = {p.id: p for p in read_checkpoint(partial, key) if p.id in wanted}
    todo = [(i, load) for i, load in evalset.items() if i not in done]
    if group is not None:  # resume from every rank's checkpoint; generate this rank's share
        done, todo = group.split_work(out_dir, key, evalset)
        bar.reset(total=len(done) + len(todo))
    if done:
        log(
            f"resume  {task.task} × {loaded.spec.id} seed {seed}: "
            f"{len(done)} of {len(evalset)} images already done"
        )
        bar.update(len(done))

    def on_batch(preds: list[Prediction]) -> None:
        append_batch(checkpoint, preds, clean)
        bar.update(len(preds))

    timings: list[BatchTiming] = []
    with (
        open_checkpoint(partial, key, list(done.values()), clean) as checkpoint,
        metering.phase("generate") as generate_phase,
    ):
        fresh: list[Prediction] = generate_all(
            loaded.model,
            loaded.processor,
            loaded.family,
            todo,
            task.doc_to_text,
            task.generation_kwargs,
            seed,
            batch_size,
            task.preprocessing.image,
            on_batch=on_batch,
            fixed_new_tokens=fixed_new_tokens,
            timings=timings,
        )
    bar.close()
    generated = generate_phase.result
    if group is not None:  # rank 0 goes on with every rank's predictions; the others wait
        merged = group.merge(done, fresh, timings, generated)
        if merged is None:
            return group.share_record(None, out_dir)
        done, fresh, timings, generated = merged
    by_id = done | {p.id: p for p in fresh}
    predictions = [by_id[i] for i in evalset.ids]
    texts = [clean(p.text) for p in predictions]
    write_jsonl(
        out_dir / PREDICTIONS_FILE,
        (_prediction_row(p, t) for p, t in zip(predictions, texts, strict=True)),
    )
    errors = [{"id": p.id, "error": p.error} for p in predictions if p.error is not None]
    if errors:
        log(
            f"errors  {task.task} × {loaded.spec.id} seed {seed}: {len(errors)} of "
            f"{len(predictions)} images could not be loaded (scored as empty predictions; "
            f"first: {errors[0]['id']}: {errors[0]['error']})"
        )

    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in task.metric_list]
    if loaded.random_weights:  # noise captions of synthetic images: nothing to score
        requests = []
    with metering.phase("score") as score_phase, reference_concepts(evalset.concepts):
        scores = compute_metrics(requests, texts, evalset.references)

    write_jsonl(
        out_dir / SAMPLES_FILE,
        (
            {
                "id": p.id,
                "reference": ref,
                "prediction": text,
                "new_tokens": p.new_tokens,
                **({} if p.error is None else {"error": p.error}),
                "scores": {
                    name: s.per_sample[i] for name, s in scores.items() if s.per_sample is not None
                },
                # the dataset's reference concepts: `rocobench score` and `compare` reuse them
                **({} if evalset.concepts is None else {"concepts": evalset.concepts[i]}),
            }
            for i, (p, text, ref) in enumerate(
                zip(predictions, texts, evalset.references, strict=True)
            )
        ),
    )
    n = len(predictions)
    # Figures of the images generated by this process: resumed and errored ones are left out.
    measurements = summarise(
        {**setup, "generate": generated, "score": score_phase.result},
        timings,
        [p.new_tokens for p in fresh if p.error is None],
        fixed_new_tokens=fixed_new_tokens,
        energy=metering.energy,
    )
    if group is not None:
        measurements = group.annotate(measurements)
    generation = task.generation_kwargs.model_dump(mode="json")
    if fixed_new_tokens:  # the effective settings: exactly N new tokens, EOS masked until then
        generation |= {"max_new_tokens": fixed_new_tokens, "min_new_tokens": fixed_new_tokens}
    from harness.metrics import METRICS

    record = RunRecord(
        task=task.task,
        task_version=str(task.metadata.version),
        task_sha256=spec_hash(task),
        variant=loaded.spec.id,
        variant_description=loaded.spec.description,
        techniques=[t.kind for t in loaded.spec.techniques],
        manifest=loaded.spec.model_dump(mode="json"),
        build=(
            {"key": loaded.built.key, "steps": loaded.built.notes}
            if loaded.built is not None and loaded.built.key is not None
            else None
        ),
        seed=seed,
        batch_size=batch_size,
        generation=generation,
        prompt=task.doc_to_text,
        metrics={
            name: MetricValue(
                value=s.value,
                higher_is_better=METRICS.get(name).higher_is_better,
                details=dict(s.details),
                ci95=s.ci95,
                n=s.n,
            )
            for name, s in scores.items()
        },
        measurements=measurements,
        dataset=DatasetRef(
            path=evalset.path,
            name=evalset.name,
            revision=evalset.revision,
            split=evalset.split,
            n_samples=n,
            ids_sha256=evalset.ids_sha256,
        ),
        model=ModelRef(
            base=loaded.base,
            revision=loaded.revision,
            family=loaded.family.name,
            dtype=loaded.dtype,
            manifest_sha256=loaded.manifest_sha256,
            n_parameters=loaded.n_parameters,
            size_bytes=loaded.size_bytes,
            random_weights=loaded.random_weights,
        ),
        provenance=provenance(str(loaded.model.device.type)),
        errors=errors,
    )
    write_record(out_dir, record)  # written last: its presence marks the run finished
    partial.unlink(missing_ok=True)
    return record if group is None else group.share_record(record, out_dir)


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
    log: Log = _stderr,
    fixed_new_tokens: int | None = None,
    carbon_country: str | None = None,
    random_weights: bool = False,
) -> list[Outcome]:
    """Run every seed of (task, variant); the model is loaded once, and only if needed.

    `fixed_new_tokens` N: every caption exactly N tokens (speed comparisons), recorded in
    `seed-<n>-fixed-<N>/`. `carbon_country`: ISO 3166-1 alpha-3 code for CO2 (default: the
    ROCOBENCH_CARBON_COUNTRY environment variable, else USA). `random_weights`: the base's
    published architecture with random weights on synthetic images, not scored, recorded in
    `seed-<n>[-fixed-<N>]-random/` (`harness.random_weights`).
    """
    quiet_libraries()
    if random_weights:
        from harness.random_weights import RandomWeightsError, synthetic_evalset

        if distributed.current() is not None:
            raise RandomWeightsError("--random-weights runs in a single process")
        evalset = synthetic_evalset(task, limit)
    else:
        evalset = load_split(task, limit=limit)
    seeds = list(task.seeds if seeds is None else seeds)
    outcomes: list[Outcome] = []
    todo: list[tuple[int, Path]] = []
    for seed in seeds:
        out = seed_dir(results, task.task, variant.id, seed, fixed_new_tokens, random_weights)
        problem = (
            "--force was given"
            if force
            else reuse_problem(out / RECORD_FILE, task, variant, evalset, fixed_new_tokens)
        )
        if problem is None:
            log(f"reuse   {task.task} × {variant.id} seed {seed}: finished record is current")
            outcomes.append(Outcome(task.task, variant.id, seed, out / RECORD_FILE, reused=True))
        else:
            if problem != "no record yet":
                log(f"redo    {task.task} × {variant.id} seed {seed}: {problem}")
            todo.append((seed, out))
    group = distributed.current()
    if group is not None:  # rank 0's view of the results folder decides for every rank
        outcomes, todo = group.broadcast((outcomes, todo))
    if not todo:
        return outcomes

    with ExitStack() as locks:
        for _, out in todo:  # fail fast, before loading the model, if another run writes here
            locks.enter_context(run_lock(out) if group is None else group.run_lock(out, force))
            if force:
                (out / PARTIAL_FILE).unlink(missing_ok=True)
        outcomes += _run_todo(
            task, variant, todo, evalset, device=device, batch_size=batch_size,
            progress=progress, log=log, fixed_new_tokens=fixed_new_tokens,
            carbon_country=carbon_country, random_weights=random_weights,
        )  # fmt: skip
    return outcomes


def _run_todo(
    task: TaskSpec,
    variant: VariantSpec,
    todo: Sequence[tuple[int, Path]],
    evalset: EvalSet,
    *,
    device: str,
    batch_size: int | None,
    progress: bool,
    log: Log,
    fixed_new_tokens: int | None,
    carbon_country: str | None,
    random_weights: bool = False,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    build_variant, load_fn = ensure_built, load_variant
    if random_weights:  # the published architecture, random weights, chain without training
        from harness.random_weights import ensure_built_random, load_variant_random

        build_variant, load_fn = ensure_built_random, load_variant_random

    # codecarbon's hardware probe runs here, before and outside every timed phase
    metering = Metering.standard(resolve_device(device), carbon_country)
    with metering.phase("build") as build:  # the technique chain; ~0 s when already cached
        group = distributed.current()  # data-parallel: rank 0 builds, then the others load
        (build_variant if group is None else group.ensure_built)(
            variant, device=device, progress=progress, log=log
        )
    with metering.phase("load") as load:
        loaded = load_fn(variant, device=device, progress=progress, log=lambda _: None)
    load_s = load.result.wall_s
    log(
        f"loaded  {variant.id} ({loaded.base}, {loaded.n_parameters / 1e6:.2f} M parameters, "
        f"{loaded.dtype} on {loaded.model.device}) in {load_s:.1f} s"
    )
    for seed, out in todo:
        record = run_seed(
            task,
            loaded,
            evalset,
            seed,
            out,
            batch_size=batch_size or task.batch_size,
            setup={"build": build.result, "load": load.result},
            metering=metering,
            fixed_new_tokens=fixed_new_tokens,
            progress=progress,
            log=log,
        )
        summary = ", ".join(f"{k} {v.value:.4f}" for k, v in record.metrics.items())
        summary = summary or "not scored (random weights)"
        log(
            f"done    {task.task} × {variant.id} seed {seed}: {summary} "
            f"({record.measurements.generate_s:.1f} s generation)"
        )
        outcomes.append(Outcome(task.task, variant.id, seed, out / RECORD_FILE, reused=False))
    del loaded
    return outcomes
