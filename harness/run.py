"""Run (task, variant, seeds): generate, score, record — reusing finished work.

A finished run is reused when its record was made from the same task spec, the same manifest and
the same evaluated ids; otherwise the runner says which of these changed and recomputes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def _stderr(msg: str) -> None:
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
    if old.dataset.ids_sha256 != evalset.ids_sha256 or old.dataset.revision != evalset.revision:
        return "the evaluated data changed"
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


def seed_dir(results: Path, task: str, variant: str, seed: int, fixed: int | None) -> Path:
    """Where a run's files go; fixed-length runs beside, never over, the natural-length ones."""
    out = run_dir(results, task, variant, seed)
    return out if fixed is None else out.with_name(f"{out.name}-fixed-{fixed}")


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
) -> RunRecord:
    """Generate, score and record one seed; `setup` holds the variant's build and load phases
    (shared by its seeds), `metering` the meters wrapped around the generate and score phases."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(evalset),
        desc=f"{loaded.spec.id} seed {seed}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    timings: list[BatchTiming] = []
    with metering.phase("generate") as generate_phase:
        predictions: list[Prediction] = generate_all(
            loaded.model,
            loaded.processor,
            loaded.family,
            evalset.items(),
            task.doc_to_text,
            task.generation_kwargs,
            seed,
            batch_size,
            task.preprocessing.image,
            on_batch=lambda preds: bar.update(len(preds)),
            fixed_new_tokens=fixed_new_tokens,
            timings=timings,
        )
    bar.close()
    clean = task.preprocessing.prediction.apply
    texts = [clean(p.text) for p in predictions]
    write_jsonl(
        out_dir / PREDICTIONS_FILE,
        (
            {"id": p.id, "prediction": t, "raw": p.text, "new_tokens": p.new_tokens,
             "sample_seed": p.sample_seed}
            for p, t in zip(predictions, texts, strict=True)
        ),
    )  # fmt: skip

    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in task.metric_list]
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
    measurements = summarise(
        {**setup, "generate": generate_phase.result, "score": score_phase.result},
        timings,
        [p.new_tokens for p in predictions],
        fixed_new_tokens=fixed_new_tokens,
        energy=metering.energy,
    )
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
        ),
        provenance=provenance(str(loaded.model.device.type)),
    )
    write_record(out_dir, record)  # written last: its presence marks the run finished
    return record


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
) -> list[Outcome]:
    """Run every seed of (task, variant); the model is loaded once, and only if needed.

    `fixed_new_tokens` N: every caption exactly N tokens (speed comparisons), recorded in
    `seed-<n>-fixed-<N>/`. `carbon_country`: ISO 3166-1 alpha-3 code for CO2 (default: the
    ROCOBENCH_CARBON_COUNTRY environment variable, else USA).
    """
    quiet_libraries()
    evalset = load_split(task, limit=limit)
    seeds = list(task.seeds if seeds is None else seeds)
    outcomes: list[Outcome] = []
    todo: list[tuple[int, Path]] = []
    for seed in seeds:
        out = seed_dir(results, task.task, variant.id, seed, fixed_new_tokens)
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
    if not todo:
        return outcomes

    # codecarbon's hardware probe runs here, before and outside every timed phase
    metering = Metering.standard(resolve_device(device), carbon_country)
    with metering.phase("build") as build:  # the technique chain; ~0 s when already cached
        ensure_built(variant, device=device, progress=progress, log=log)
    with metering.phase("load") as load:
        loaded = load_variant(variant, device=device, progress=progress, log=lambda _: None)
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
        )
        summary = ", ".join(f"{k} {v.value:.4f}" for k, v in record.metrics.items())
        log(
            f"done    {task.task} × {variant.id} seed {seed}: {summary} "
            f"({record.measurements.generate_s:.1f} s generation)"
        )
        outcomes.append(Outcome(task.task, variant.id, seed, out / RECORD_FILE, reused=False))
    del loaded
    return outcomes
