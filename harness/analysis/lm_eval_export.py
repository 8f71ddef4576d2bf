"""Export a rocobench task as an lm-evaluation-harness task folder (for lm-eval's hf-multimodal).

The folder holds `<task>.yaml`, `utils.py` (harness/analysis/lm_eval_standalone.py, copied as
it is),
`rocobench_task.json` (what the task says: prompt, columns, image preprocessing, text
cleaning, metrics and options, dataset reference) and, for the concept metrics, `concepts.json`
(rocobench's concept dictionary, compiled). utils.py imports only the reference libraries, so
the folder runs where rocobench is not installed. The dataset is referenced so that it resolves
on another machine: a Hub dataset by id and revision; a local one by a path relative to the
exported folder (lm-eval's `custom_dataset`), with the data copied beside it on request.

What lm-eval cannot do as rocobench does (see DESIGN.md): it samples with one seed per run, so
sampled captions differ from rocobench's per-image streams (only greedy decoding, `do_sample:
false`, gives the same captions); it has no `limit` in task files (pass `--limit`); it calls the
processor with its default special tokens (double BOS with Llama-3-style templates).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec

STANDALONE = Path(__file__).with_name("lm_eval_standalone.py")
# Metrics utils.py defines without rocobench (the ImageCLEF ones need heavy backbones).
EXPORTABLE = frozenset(
    {"bleu1", "bleu4", "rouge_1", "rouge_l", "meteor", "cider", "bertscore_f1", "concept_f1",
     "modality_acc"}
)  # fmt: skip
CONCEPT_METRICS = frozenset({"concept_f1", "modality_acc"})


class ExportError(ValueError):
    """The task cannot be exported as asked; str() is one line."""


def _yaml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML scalar


def generation_kwargs(task: TaskSpec) -> dict[str, object]:
    """The task's generation settings in lm-eval's terms; stop only at EOS."""
    gen = task.generation_kwargs
    out: dict[str, object] = {"until": [], "max_gen_toks": gen.max_new_tokens}
    if gen.do_sample:
        out |= {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p}
        out["top_k"] = gen.top_k
    else:
        out |= {"do_sample": False, "temperature": 0.0}  # lm-eval's greedy spelling
    out |= {
        "num_beams": gen.num_beams,
        "repetition_penalty": gen.repetition_penalty,
        "no_repeat_ngram_size": gen.no_repeat_ngram_size,
        "min_new_tokens": gen.min_new_tokens,
    }
    return out


def task_yaml(task: TaskSpec) -> str:
    lines = [
        f"# lm-evaluation-harness task written by `rocobench export-lm-eval {task.task}`",
        f"# (rocobench task sha256 {spec_hash(task)}).",
        "# Run with lm-eval's hf-multimodal model and --apply_chat_template; the metrics are",
        "# rocobench's (utils.py).",
        f"task: {task.task}",
    ]
    if task.is_local:  # read by utils.load_dataset, relative to the exported folder
        lines += ["dataset_path: null", "custom_dataset: !function utils.load_dataset"]
    else:
        lines.append(f"dataset_path: {_yaml_str(task.dataset_path)}")
        if task.dataset_name:
            lines.append(f"dataset_name: {_yaml_str(task.dataset_name)}")
        if task.dataset_kwargs.revision:
            lines.append(f"dataset_kwargs: {{revision: {task.dataset_kwargs.revision}}}")
    lines += [
        f"test_split: {task.test_split}",
        "output_type: generate_until",
        "doc_to_image: !function utils.doc_to_image",
        "doc_to_text: !function utils.doc_to_text",
        "doc_to_target: !function utils.doc_to_target",
        "process_results: !function utils.process_results",
        f"generation_kwargs: {json.dumps(generation_kwargs(task))}",
        "metric_list:",
    ]
    for m in task.metric_list:
        from harness.metrics import METRICS

        better = METRICS.get(m.metric).higher_is_better
        lines += [
            f"  - metric: {m.metric}",
            f"    aggregation: !function utils.agg_{m.metric}",
            f"    higher_is_better: {str(better).lower()}",
        ]
    lines += ["metadata:", f"  version: {_yaml_str(str(task.metadata.version))}"]
    return "\n".join(lines) + "\n"


def task_json(task: TaskSpec, dataset: str | None) -> str:
    """rocobench_task.json: what utils.py needs to know about the task."""
    spec = {
        "task": task.task,
        "task_sha256": spec_hash(task),
        "prompt": task.doc_to_text,
        "doc_to_image": task.doc_to_image,
        "doc_to_target": task.doc_to_target,
        "doc_to_concepts": task.doc_to_concepts,
        "image": task.preprocessing.image.model_dump(mode="json"),
        "target": task.preprocessing.target.model_dump(mode="json"),
        "prediction": task.preprocessing.prediction.model_dump(mode="json"),
        "metrics": [{"metric": m.metric, "kwargs": m.kwargs} for m in task.metric_list],
        "dataset": (
            {"relative_path": dataset}
            if dataset is not None
            else {
                "hub_id": task.dataset_path,
                "name": task.dataset_name,
                "revision": task.dataset_kwargs.revision,
            }
        ),
    }
    return json.dumps(spec, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def concepts_json() -> str:
    """rocobench's concept and modality dictionaries, compiled (harness.data.concepts)."""
    from harness.data import concepts

    def terms(matcher: concepts.Matcher) -> list[list[list[str]]]:
        return sorted([list(t), sorted(v)] for t, v in matcher.terms.items())

    data = {
        "extractor": concepts.EXTRACTOR,
        "max_term_words": concepts.MAX_TERM_WORDS,
        "concept_terms": terms(concepts.concept_matcher()),
        "modality_terms": terms(concepts.modality_matcher()),
        "modality_by_cui": concepts.MODALITY_BY_CUI,
        "manual_cuis": sorted(concepts.MANUAL_CUIS),
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def export(task: TaskSpec, out_dir: Path, *, copy_data: bool = False) -> list[Path]:
    """Write the lm-eval task folder into out_dir; returns the paths written.

    A local dataset is referenced by a path relative to out_dir; `copy_data` copies it into
    out_dir/data/<folder name> first, so the folder is complete on its own.
    """
    unknown = [m.metric for m in task.metric_list if m.metric not in EXPORTABLE]
    if unknown:
        raise ExportError(
            f"{task.task}: metric(s) {', '.join(unknown)} cannot run without rocobench "
            f"(exportable: {', '.join(sorted(EXPORTABLE))})"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    dataset: str | None = None
    local = task.local_dataset_dir
    if local is not None:
        if copy_data:
            target = out_dir / "data" / local.name
            staging = target.with_name(f".{local.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(local, staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
            written.append(target)
            local = target
        dataset = Path(os.path.relpath(local.resolve(), out_dir.resolve())).as_posix()
    files = {
        f"{task.task}.yaml": task_yaml(task),
        "utils.py": STANDALONE.read_text(encoding="utf-8"),
        "rocobench_task.json": task_json(task, dataset),
    }
    if any(m.metric in CONCEPT_METRICS for m in task.metric_list):
        files["concepts.json"] = concepts_json()
    for name, text in files.items():
        path = out_dir / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic: an interrupted export never leaves half a file
        written.append(path)
    return written
