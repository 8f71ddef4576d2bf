"""One seed of (task, variant): resume → generate → write → score → record.

A variant's seeds are generated first, then scored (`generate_seed`, then `record_seed`).

Each step is a small function over a `SeedRun` (what the seed needs); the executor decides the
few things that differ between one process and a data-parallel group (which images this process
generates, merging on the main process, handing the record on). Every file is written atomically,
record.json last: its presence marks the run finished.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.data.dataset import EvalSet
from harness.metering import Metering, summarise
from harness.metering.base import MIB
from harness.metering.clock import BatchTiming
from harness.metrics import METRICS, MetricScore, References, compute_metrics, parse_options
from harness.models.load import LoadedVariant
from harness.models.weights import weight_facts
from harness.pipeline.backends import Backend, Transformers
from harness.pipeline.checkpoint import (
    append_batch,
    checkpoint_key,
    open_checkpoint,
    prediction_row,
)
from harness.pipeline.executor import Executor, Generated, predictions_in_order
from harness.pipeline.prediction import Prediction, batches
from harness.progress import bars_wanted
from harness.records.layout import PREDICTIONS_FILE, SAMPLES_FILE
from harness.records.provenance import provenance
from harness.records.record import (
    DatasetRef,
    MetricValue,
    ModelRef,
    PhaseFigures,
    RunRecord,
)
from harness.records.rows import SampleRow
from harness.records.store import write_jsonl, write_record
from harness.spans import span
from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec

Log = Callable[[str], None]


@dataclass(frozen=True)
class SeedRun:
    """What one seed's run needs; `setup` holds the variant's build and load phases (shared by
    its seeds), `metering` the meters wrapped around the generate and score phases."""

    task: TaskSpec
    loaded: LoadedVariant
    evalset: EvalSet
    seed: int
    out_dir: Path
    batch_size: int
    setup: Mapping[str, PhaseFigures]
    metering: Metering
    executor: Executor
    scored: bool = True
    fixed_new_tokens: int | None = None
    progress: bool = True
    log: Log = print
    engine: Backend = field(default_factory=Transformers)  # generates the captions

    @property
    def backend(self) -> str:
        return self.engine.name

    # How memory was measured: Measurements fields rss_baseline_mib and memory_method
    memory: Mapping[str, object] | None = None

    @property
    def label(self) -> str:
        return f"{self.task.task} × {self.loaded.spec.id} seed {self.seed}"

    def clean(self, text: str) -> str:
        return self.task.preprocessing.prediction.apply(text)


def generate_seed(run: SeedRun) -> Generated | None:
    """This process's share of the seed's captions, merged: every process's on the main one,
    None on the others. A variant generates all its seeds before scoring any (`record_seed`), so
    that no scorer is in the process's memory while a seed generates."""
    return run.executor.merge(generate(run))


def record_seed(run: SeedRun, generated: Generated | None) -> RunRecord:
    """Write the seed's captions, score them and write its record; the record on every
    process (a data-parallel rank other than the main one waits for it)."""
    if generated is None:
        return run.executor.finish(None, run.out_dir)
    predictions = predictions_in_order(generated, run.evalset.ids)
    texts = [run.clean(p.text) for p in predictions]
    write_jsonl(
        run.out_dir / PREDICTIONS_FILE,
        (prediction_row(p, t).to_json() for p, t in zip(predictions, texts, strict=True)),
    )
    errors = [{"id": p.id, "error": p.error} for p in predictions if p.error is not None]
    if errors:
        run.log(
            f"errors  {run.label}: {len(errors)} of {len(predictions)} images could not be "
            f"loaded (scored as empty predictions; first: {errors[0]['id']}: "
            f"{errors[0]['error']})"
        )
    activation_bytes = count_activations(run, predictions)  # before a scorer holds memory
    scores, score_figures = score(run, texts)
    write_samples(run, predictions, texts, scores)
    record = make_record(
        run, generated, predictions, scores, score_figures, errors, activation_bytes
    )
    write_record(run.out_dir, record)  # written last: its presence marks the run finished
    return run.executor.finish(record, run.out_dir)


def generate(run: SeedRun) -> Generated:
    """Resume from the checkpoints, then generate this process's share of the rest, appending
    each finished batch to its checkpoint."""
    from tqdm.auto import tqdm

    key = checkpoint_key(
        run.task, run.loaded.spec, run.evalset, run.seed, run.fixed_new_tokens, run.backend
    )
    done, todo = run.executor.split(run.out_dir, key, run.evalset)
    bar = tqdm(
        total=len(done) + len(todo),
        desc=f"{run.loaded.spec.id} seed {run.seed}",
        unit="img",
        disable=not bars_wanted(run.progress) or not run.executor.is_main,
        file=sys.stderr,
        leave=False,
    )
    if done:
        run.log(f"resume  {run.label}: {len(done)} of {len(run.evalset)} images already done")
        bar.update(len(done))

    partial = run.out_dir / run.executor.checkpoint_name
    timings: list[BatchTiming] = []
    with (
        open_checkpoint(partial, key, list(done.values()), run.clean) as checkpoint,
        run.metering.phase("generate") as phase,
        span("generate", run.label),
    ):

        def on_batch(preds: list[Prediction]) -> None:
            append_batch(checkpoint, preds, run.clean)
            bar.update(len(preds))

        fresh = run.engine.generate(
            run.loaded,
            todo,
            run.task,
            run.seed,
            run.batch_size,
            on_batch=on_batch,
            fixed_new_tokens=run.fixed_new_tokens,
            timings=timings,
        )
    bar.close()
    return Generated(done, fresh, timings, phase.result)


def heaviest_batch(predictions: list[Prediction], batch_size: int) -> list[int]:
    """Positions of the batch, in run order, that held the most: the most images, then the
    longest caption (its cache grew longest). Batches of equal images and prompts differ in
    nothing else, so its peak is the generation's."""

    def weight(batch: Sequence[int]) -> tuple[int, int]:
        return len(batch), max(predictions[i].new_tokens for i in batch)

    return list(max(batches(range(len(predictions)), batch_size), key=weight, default=[]))


def count_activations(run: SeedRun, predictions: list[Prediction]) -> int | None:
    """Bytes in torch tensors at the generation's peak beyond the weights, for a model on this
    process's CPU (the record adds the weights: `Measurements.peak_tensor_mib`); None elsewhere
    (on CUDA `peak_gpu_allocated_mib` is that figure, at no cost; a vLLM worker's tensors are
    not in this process).

    The seed's heaviest batch is generated once more, untimed, under
    `harness.metering.tensor_memory` (counting slows small-tensor work too much for the timed
    phase): the same images, seed and batch, so the same captions as the run's.
    """
    from harness.metering.tensor_memory import (
        CountUnavailable,
        counting_cpu_allocations,
        native_stderr_silenced,
    )

    loaded = run.loaded
    if loaded.model is None or loaded.device_type != "cpu":
        return None
    positions = heaviest_batch(predictions, run.batch_size)
    if not positions:
        return None
    batch = [(predictions[i].id, run.evalset.image_loader(i)) for i in positions]
    # The batch already ran in the timed phase with stderr open: what it had to say was said.
    try:
        with (
            span("tensor count", run.label),
            native_stderr_silenced(),
            counting_cpu_allocations() as count,
        ):
            run.engine.generate(
                loaded, batch, run.task, run.seed, len(batch),
                on_batch=lambda _: None, fixed_new_tokens=run.fixed_new_tokens, timings=[],
            )  # fmt: skip
    except CountUnavailable:
        return None
    return count.peak_bytes


def score(run: SeedRun, texts: list[str]) -> tuple[dict[str, MetricScore], PhaseFigures]:
    """The task's metrics on the cleaned captions, with each image's references as the task
    declares them (captions, and the dataset's reference concepts where it has them)."""
    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in run.task.metric_list]
    concepts = run.evalset.concepts
    references = References(
        tuple(run.evalset.references),
        None if concepts is None else tuple(None if c is None else tuple(c) for c in concepts),
        tuple(run.evalset.image_loader(i) for i in range(len(run.evalset))),  # loaded on demand
    )
    with run.metering.phase("score") as phase, span("score all", run.label):
        scores = compute_metrics(requests, texts, references) if run.scored else {}
    return scores, phase.result


def write_samples(
    run: SeedRun,
    predictions: list[Prediction],
    texts: list[str],
    scores: Mapping[str, MetricScore],
) -> None:
    concepts = run.evalset.concepts

    def row(i: int, p: Prediction, text: str, reference: str) -> SampleRow:
        per_sample = {n: s.per_sample[i] for n, s in scores.items() if s.per_sample is not None}
        fields: dict[str, object] = {
            "id": p.id,
            "reference": reference,
            "prediction": text,
            "new_tokens": p.new_tokens,
            **({} if p.error is None else {"error": p.error}),
            "scores": per_sample,
            # the dataset's reference concepts: `rocobench score` and `compare` reuse them
            **({} if concepts is None else {"concepts": concepts[i]}),
        }
        return SampleRow.model_validate(fields)

    write_jsonl(
        run.out_dir / SAMPLES_FILE,
        (
            row(i, p, text, ref).to_json()
            for i, (p, text, ref) in enumerate(
                zip(predictions, texts, run.evalset.references, strict=True)
            )
        ),
    )


def make_record(
    run: SeedRun,
    generated: Generated,
    predictions: list[Prediction],
    scores: Mapping[str, MetricScore],
    score_figures: PhaseFigures,
    errors: list[dict[str, str]],
    activation_bytes: int | None = None,
) -> RunRecord:
    task, loaded, evalset = run.task, run.loaded, run.evalset
    # Figures of the images generated by this process: resumed and errored ones are left out.
    measurements = summarise(
        {**run.setup, "generate": generated.figures, "score": score_figures},
        generated.timings,
        [p.new_tokens for p in generated.fresh if p.error is None],
        fixed_new_tokens=run.fixed_new_tokens,
        energy=run.metering.energy,
    )
    if run.memory:
        measurements = measurements.model_copy(update=dict(run.memory))
    if generated.ranks:  # a data-parallel group: each rank's own generation figures
        measurements = measurements.model_copy(update={"ranks": list(generated.ranks)})
    # the weights as loaded here; a model served by another process (vLLM) reports its own size
    weights = weight_facts(loaded.model) if loaded.model is not None else None
    if weights is not None and activation_bytes is not None:
        peak = round((weights.total_bytes + activation_bytes) / MIB, 3)
        measurements = measurements.model_copy(update={"peak_tensor_mib": peak})
    generation = task.generation_kwargs.model_dump(mode="json")
    if run.fixed_new_tokens:  # the effective settings: exactly N new tokens, EOS masked until then
        n = run.fixed_new_tokens
        generation |= {"max_new_tokens": n, "min_new_tokens": n}
    return RunRecord(
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
        seed=run.seed,
        batch_size=run.batch_size,
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
            n_samples=len(predictions),
            ids_sha256=evalset.ids_sha256,
        ),
        model=ModelRef(
            base=loaded.base,
            revision=loaded.revision,
            family=loaded.family.name,
            dtype=loaded.dtype,
            manifest_sha256=loaded.manifest_sha256,
            n_parameters=loaded.n_parameters,
            size_bytes=weights.total_bytes if weights else loaded.size_bytes,
            weight_storage=weights.bytes_by_storage if weights else {},
            quantization=weights.quantization if weights else None,
            random_weights=loaded.random_weights,
        ),
        provenance=provenance(loaded.device_type),
        errors=errors,
        backend=run.engine.ref(run.loaded),
    )
