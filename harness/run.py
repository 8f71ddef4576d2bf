"""Run (task, variant, seeds): generate, score, record — reusing finished work.

A finished run is reused when its record was made from the same task spec, the same manifest and
the same evaluated ids; otherwise the runner says which of these changed and recomputes.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.build import LoadedVariant, load_variant
from harness.data import EvalSet, load_split
from harness.generate import Prediction, generate_all
from harness.metrics import compute_metrics, parse_options
from harness.provenance import provenance
from harness.records import (
    PREDICTIONS_FILE,
    RECORD_FILE,
    SAMPLES_FILE,
    DatasetRef,
    Measurements,
    MetricValue,
    ModelRef,
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


def reuse_problem(path: Path, task: TaskSpec, variant: VariantSpec, evalset: EvalSet) -> str | None:
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
    return None


def quiet_libraries() -> None:
    """Our own progress bar and log lines are the output; silence the libraries' per-step bars."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux: the process peak so far, which covers this run's phases
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_gpu_mib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_seed(
    task: TaskSpec,
    loaded: LoadedVariant,
    evalset: EvalSet,
    seed: int,
    out_dir: Path,
    *,
    batch_size: int,
    load_s: float,
    progress: bool = True,
) -> RunRecord:
    import torch
    from tqdm.auto import tqdm

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    bar = tqdm(
        total=len(evalset),
        desc=f"{loaded.spec.id} seed {seed}",
        unit="img",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    start = time.perf_counter()
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
    )
    generate_s = time.perf_counter() - start
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

    start = time.perf_counter()
    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in task.metric_list]
    scores = compute_metrics(requests, texts, evalset.references)
    score_s = time.perf_counter() - start

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
            }
            for i, (p, text, ref) in enumerate(
                zip(predictions, texts, evalset.references, strict=True)
            )
        ),
    )
    tokens = sum(p.new_tokens for p in predictions)
    n = len(predictions)
    from harness.metrics import METRICS

    record = RunRecord(
        task=task.task,
        task_version=str(task.metadata.version),
        task_sha256=spec_hash(task),
        variant=loaded.spec.id,
        variant_description=loaded.spec.description,
        techniques=[t.kind for t in loaded.spec.techniques],
        seed=seed,
        batch_size=batch_size,
        generation=task.generation_kwargs.model_dump(mode="json"),
        prompt=task.doc_to_text,
        metrics={
            name: MetricValue(
                value=s.value,
                higher_is_better=METRICS.get(name).higher_is_better,
                details=dict(s.details),
            )
            for name, s in scores.items()
        },
        measurements=Measurements(
            load_s=round(load_s, 4),
            generate_s=round(generate_s, 4),
            score_s=round(score_s, 4),
            n_images=n,
            new_tokens_total=tokens,
            new_tokens_per_image=tokens / n if n else 0.0,
            images_per_s=n / generate_s if generate_s else 0.0,
            tokens_per_s=tokens / generate_s if generate_s else 0.0,
            peak_rss_mib=round(_peak_rss_mib(), 1),
            peak_gpu_allocated_mib=_peak_gpu_mib(),
        ),
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
) -> list[Outcome]:
    """Run every seed of (task, variant); the model is loaded once, and only if needed."""
    quiet_libraries()
    evalset = load_split(task, limit=limit)
    seeds = list(task.seeds if seeds is None else seeds)
    outcomes: list[Outcome] = []
    todo: list[tuple[int, Path]] = []
    for seed in seeds:
        out = run_dir(results, task.task, variant.id, seed)
        problem = (
            "--force was given"
            if force
            else reuse_problem(out / RECORD_FILE, task, variant, evalset)
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

    start = time.perf_counter()
    loaded = load_variant(variant, device=device)
    load_s = time.perf_counter() - start
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
            load_s=load_s,
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
