"""Export a rocobench task as an lm-evaluation-harness task folder (for lm-eval's hf-multimodal).

The folder holds `<task>.yaml` and `utils.py`. The functions in utils.py use rocobench's own
code: images preprocessed as the runner does, references and predictions cleaned as the task
says, and the metrics computed by harness.metrics.base over all documents in lm-eval's aggregation
step (process_results hands each (prediction, reference) pair on), so corpus metrics such as
BLEU and CIDEr are corpus metrics there too, not means of per-document scores.

What lm-eval cannot do as rocobench does (see DESIGN.md): it samples with one seed per run, so
sampled captions differ from rocobench's per-image streams (only greedy decoding, `do_sample:
false`, gives the same captions); it has no `limit` in task files (pass `--limit`); it calls the
processor with its default special tokens (double BOS with Llama-3-style templates).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec

UTILS = '''"""lm-evaluation-harness functions for the rocobench task {task!r}.

Written by `rocobench export-lm-eval` from {source}
(task sha256 {sha}); needs rocobench installed where lm-eval runs.
"""

from __future__ import annotations

import json

from harness.models.inputs import preprocess_image
from harness.metrics import compute_metrics, parse_options
from harness.specs.task import ImagePreprocessing, TextCleaning

SPEC = json.loads({spec!r})
IMAGE = ImagePreprocessing.model_validate(SPEC["image"])
TARGET = TextCleaning.model_validate(SPEC["target"])
PREDICTION = TextCleaning.model_validate(SPEC["prediction"])
METRICS = {{m["metric"]: parse_options(m["metric"], m["kwargs"]) for m in SPEC["metrics"]}}


def doc_to_image(doc):
    return [preprocess_image(doc[SPEC["doc_to_image"]], IMAGE)]


def doc_to_text(doc):
    return "<image>" + SPEC["prompt"]  # lm-eval puts the image first, as rocobench does


def doc_to_target(doc):
    return TARGET.apply(str(doc[SPEC["doc_to_target"]]))


def process_results(doc, results):
    """Hand the cleaned pair on: the metrics are computed over all documents in aggregation."""
    pair = (PREDICTION.apply(results[0]), doc_to_target(doc))
    return {{name: pair for name in METRICS}}


def _aggregate(name):
    def aggregate(items):
        predictions = [p for p, _ in items]
        references = [r for _, r in items]
        scores = compute_metrics([(name, METRICS[name])], predictions, references, resamples=0)
        return scores[name].value

    aggregate.__name__ = "agg_" + name
    return aggregate


{aggregations}
'''


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
    dataset = str(task.local_dataset_dir) if task.local_dataset_dir else task.dataset_path
    lines = [
        f"# lm-evaluation-harness task written by `rocobench export-lm-eval {task.task}`",
        f"# (rocobench task sha256 {spec_hash(task)}).",
        "# Run with lm-eval's hf-multimodal model and --apply_chat_template; the metrics are",
        "# rocobench's (utils.py).",
        f"task: {task.task}",
        f"dataset_path: {_yaml_str(dataset)}",
    ]
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


def utils_py(task: TaskSpec) -> str:
    spec = {
        "prompt": task.doc_to_text,
        "doc_to_image": task.doc_to_image,
        "doc_to_target": task.doc_to_target,
        "image": task.preprocessing.image.model_dump(mode="json"),
        "target": task.preprocessing.target.model_dump(mode="json"),
        "prediction": task.preprocessing.prediction.model_dump(mode="json"),
        "metrics": [{"metric": m.metric, "kwargs": m.kwargs} for m in task.metric_list],
    }
    aggregations = "\n".join(f"agg_{m.metric} = _aggregate({m.metric!r})" for m in task.metric_list)
    return UTILS.format(
        task=task.task,
        source=task.source.name if task.source else "a task spec",
        sha=spec_hash(task),
        spec=json.dumps(spec, ensure_ascii=False, sort_keys=True),
        aggregations=aggregations,
    )


def export(task: TaskSpec, out_dir: Path) -> list[Path]:
    """Write `<task>.yaml` and `utils.py` into out_dir; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    yaml_path, utils_path = out_dir / f"{task.task}.yaml", out_dir / "utils.py"
    yaml_path.write_text(task_yaml(task), encoding="utf-8")
    utils_path.write_text(utils_py(task), encoding="utf-8")
    return [yaml_path, utils_path]
