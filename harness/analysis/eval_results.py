"""Records as the Hub's Eval Results: `.eval_results/*.yaml` in a model repository, and the
`eval.yaml` that registers a benchmark dataset (Hub documentation page "eval-results").

Schema (huggingface_hub's `EvalResultEntry`): each entry names a benchmark dataset and one task
of its `eval.yaml` (`dataset.id`, `dataset.task_id`, optional `dataset.revision`) and carries ONE
number (`value`), with optional `date`, `source` (`url` required, `name`, `user`, `org`),
`notes` and `evaluation_framework`. A rocobench run has many metrics, so the benchmark declares
one task per (rocobench task, metric) — `rocov2_paper327-bleu4`, … — and a model gets one entry
per metric: the mean over seeds, the spread and interval in `notes`.

One file per distinct setting: records of the same task spec, manifest and generation length
mode go together (`rocobench-<task>.yaml`); a second setting of the same task gets the first 8
hex digits of its setting hash in the name.
"""

from __future__ import annotations

import hashlib
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.records.record import RunRecord
    from harness.specs.task import TaskSpec

FRAMEWORK = "rocobench"
FOLDER = ".eval_results"
ENTRY_KEYS = frozenset(
    {"dataset", "value", "verifyToken", "date", "source", "notes", "evaluation_framework"}
)
DATASET_KEYS = frozenset({"id", "task_id", "revision", "config", "split"})
SOURCE_KEYS = frozenset({"url", "name", "user", "org"})
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


class EvalResultsError(ValueError):
    """The records cannot be expressed in the schema, or a written file breaks it."""


def task_id(task: str, metric: str) -> str:
    return f"{task}-{metric}"


@dataclass(frozen=True)
class Setting:
    task: str
    task_sha256: str
    manifest_sha256: str
    length_mode: str

    @property
    def digest(self) -> str:
        blob = "|".join((self.task, self.task_sha256, self.manifest_sha256, self.length_mode))
        return hashlib.sha256(blob.encode()).hexdigest()


def setting_of(record: RunRecord) -> Setting:
    m = record.measurements
    mode = "natural" if m.fixed_new_tokens is None else f"fixed-{m.fixed_new_tokens}"
    return Setting(record.task, record.task_sha256, record.model.manifest_sha256, mode)


def entries_for(
    records: Sequence[RunRecord],
    *,
    benchmark: str,
    source_url: str | None = None,
    source_name: str | None = "rocobench",
    source_org: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per metric of one setting's records (one variant, several seeds)."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    if not records:
        raise EvalResultsError("no records")
    first = records[0]
    same_dataset = first.dataset.path == benchmark
    date = max(r.provenance.created_at for r in records)
    entries = []
    for metric in sorted(first.metrics):
        runs = sorted((r for r in records if metric in r.metrics), key=lambda r: r.seed)
        values = [r.metrics[metric].value for r in runs]
        if not values or not all(math.isfinite(v) for v in values):
            continue
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if len(values) > 1 else None
        ci = runs[0].metrics[metric].ci95
        details = runs[0].metrics[metric].details
        notes = [f"mean of {len(values)} seeds ({', '.join(str(r.seed) for r in runs)})"]
        if sd is not None:
            notes.append(f"sd {sd:.4f}")
        if ci is not None:
            notes.append(
                f"95% bootstrap interval over images (seed {runs[0].seed}) {ci[0]:.4f}–{ci[1]:.4f}"
            )
        if "backbone" in details:
            notes.append(f"backbone {details['backbone']}")
        notes.append(f"{first.dataset.n_samples} images; task spec {first.task_sha256[:12]}")
        entry = EvalResultEntry(
            dataset_id=benchmark,
            task_id=task_id(first.task, metric),
            value=round(mean, 6),
            dataset_revision=first.dataset.revision if same_dataset else None,
            date=_iso(date),
            source_url=source_url,
            source_name=source_name if source_url else None,
            source_org=source_org if source_url else None,
            notes="; ".join(notes),
        )
        (data,) = eval_result_entries_to_yaml([entry])
        data["evaluation_framework"] = FRAMEWORK
        entries.append(data)
    return entries


def _iso(stamp: str) -> str:
    return datetime.fromisoformat(stamp).isoformat()


def eval_results_files(
    records: Iterable[RunRecord], *, benchmark: str, **source: Any
) -> dict[str, str]:
    """`.eval_results/<name>.yaml` -> YAML text, one file per setting of the records."""
    import yaml

    by_setting: dict[Setting, list[RunRecord]] = {}
    for r in records:
        if r.model.random_weights:
            continue  # timing-only runs carry no scores
        by_setting.setdefault(setting_of(r), []).append(r)
    if not by_setting:
        raise EvalResultsError("no scored records")
    variants = {r.variant for rs in by_setting.values() for r in rs}
    if len(variants) > 1:
        raise EvalResultsError(
            f"records of {len(variants)} variants ({', '.join(sorted(variants))}): "
            "one model repository holds one variant's results (--variant)"
        )
    per_task: dict[str, int] = {}
    for setting in by_setting:
        per_task[setting.task] = per_task.get(setting.task, 0) + 1
    files: dict[str, str] = {}
    for setting, runs in sorted(by_setting.items(), key=lambda kv: (kv[0].task, kv[0].digest)):
        name = f"rocobench-{setting.task}"
        if per_task[setting.task] > 1:
            name += f"-{setting.digest[:8]}"
        entries = entries_for(runs, benchmark=benchmark, **source)
        text = yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)
        validate_eval_results(yaml.safe_load(text), where=f"{FOLDER}/{name}.yaml")
        files[f"{FOLDER}/{name}.yaml"] = text
    return files


def validate_eval_results(data: Any, *, where: str) -> None:
    """The documented fields and types of an `.eval_results/*.yaml` file; raises on the first
    problem, naming the file, the entry and the field."""
    from huggingface_hub import parse_eval_result_entries

    if not isinstance(data, list) or not data:
        raise EvalResultsError(f"{where}: expected a non-empty list of entries")
    for i, entry in enumerate(data):
        at = f"{where}: entry {i}"
        if not isinstance(entry, dict):
            raise EvalResultsError(f"{at}: expected a mapping")
        extra = set(entry) - ENTRY_KEYS
        if extra:
            raise EvalResultsError(f"{at}: unknown field {sorted(extra)[0]!r}")
        dataset = entry.get("dataset")
        if not isinstance(dataset, dict) or not {"id", "task_id"} <= set(dataset):
            raise EvalResultsError(f"{at}: dataset.id and dataset.task_id are required")
        if set(dataset) - DATASET_KEYS:
            raise EvalResultsError(
                f"{at}: unknown field dataset.{sorted(set(dataset) - DATASET_KEYS)[0]}"
            )
        if not REPO_ID.fullmatch(str(dataset["id"])):
            raise EvalResultsError(f"{at}: dataset.id {dataset['id']!r} is not a Hub dataset id")
        value = entry.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise EvalResultsError(f"{at}: value must be a finite number, got {value!r}")
        if "date" in entry:
            try:
                datetime.fromisoformat(str(entry["date"]))
            except ValueError:
                raise EvalResultsError(f"{at}: date {entry['date']!r} is not ISO-8601") from None
        source = entry.get("source")
        if source is not None:
            if not isinstance(source, dict) or "url" not in source:
                raise EvalResultsError(f"{at}: source.url is required when source is given")
            if set(source) - SOURCE_KEYS:
                raise EvalResultsError(
                    f"{at}: unknown field source.{sorted(set(source) - SOURCE_KEYS)[0]}"
                )
    parse_eval_result_entries(data)  # huggingface_hub's own reader accepts it


# --------------------------------------------------------------------------- the benchmark


def benchmark_eval_yaml(tasks: Sequence[TaskSpec], metrics: Mapping[str, Sequence[str]]) -> str:
    """The `eval.yaml` registering a benchmark dataset: one task per (rocobench task, metric),
    so that every entry above names a declared task. The benchmark dataset holds each rocobench
    task's evaluation set as a config named after the task (the 327-image subset and the full
    test split differ)."""
    import yaml

    doc = {
        "name": "rocobench: ROCOv2 radiology image captioning",
        "description": (
            "Compressed vision-language models caption ROCOv2 radiology images (one prompt for "
            "every model, sampled generation at the study's settings, three seeds). Each task is "
            "one caption metric on one evaluation set, scored by its reference library; values "
            "are means over seeds. Harness, task specs and records: rocobench."
        ),
        "evaluation_framework": FRAMEWORK,
        "tasks": [
            {"id": task_id(t.task, m), "config": t.task, "split": t.test_split}
            for t in tasks
            for m in metrics[t.task]
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
