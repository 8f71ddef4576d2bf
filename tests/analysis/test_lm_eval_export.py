"""`rocobench export-lm-eval`: the folder's content, and (slow) the same captions and metric
values through lm-eval's own hf-multimodal model as through rocobench's runner."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from harness.analysis.lm_eval_export import export
from harness.cli import main
from harness.metrics import References, compute_metrics, parse_options
from harness.models.inputs import preprocess_image
from harness.records.layout import RECORD_FILE, run_dir
from harness.records.store import read_jsonl, read_record
from harness.specs.task import load_task


class _FunctionTagLoader(yaml.SafeLoader):
    """Reads lm-eval's `!function module.name` tags as plain strings."""


_FunctionTagLoader.add_constructor(
    "!function", lambda loader, node: f"!function {loader.construct_scalar(node)}"
)


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"exported_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    out = tmp_path_factory.mktemp("lm_eval_task")
    assert main(["export-lm-eval", "rocov2_sample", "-o", str(out)]) == 0
    return out


def test_export_writes_an_lm_eval_task(exported: Path, repo_root: Path) -> None:
    task = load_task(repo_root / "tasks/rocov2_sample.yaml")
    assert sorted(p.name for p in exported.iterdir()) == [
        "concepts.json",
        "rocobench_task.json",
        "rocov2_sample.yaml",
        "utils.py",
    ]
    cfg = yaml.load((exported / "rocov2_sample.yaml").read_text(), Loader=_FunctionTagLoader)
    assert cfg["task"] == "rocov2_sample" and cfg["output_type"] == "generate_until"
    # a local dataset: read by utils.load_dataset at a path relative to the exported folder
    assert cfg["dataset_path"] is None
    assert cfg["custom_dataset"] == "!function utils.load_dataset"
    relative = json.loads((exported / "rocobench_task.json").read_text())["dataset"]
    data = (exported / relative["relative_path"]).resolve()
    assert data == repo_root / "tasks/data/rocov2_sample"
    assert cfg["test_split"] == "test"
    assert cfg["doc_to_image"] == "!function utils.doc_to_image"
    assert cfg["process_results"] == "!function utils.process_results"
    assert cfg["generation_kwargs"] == {
        "until": [],
        "max_gen_toks": 128,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 0,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_new_tokens": 0,
    }
    assert [m["metric"] for m in cfg["metric_list"]] == [m.metric for m in task.metric_list]
    utils = _import(exported / "utils.py")
    for m in cfg["metric_list"]:
        assert m["aggregation"] == f"!function utils.agg_{m['metric']}"
        assert callable(getattr(utils, f"agg_{m['metric']}"))


def test_exported_functions_match_rocobench(exported: Path, repo_root: Path) -> None:
    import datasets

    task = load_task(repo_root / "tasks/rocov2_sample.yaml")
    utils = _import(exported / "utils.py")
    doc = datasets.load_dataset(str(repo_root / "tasks/data/rocov2_sample"), split="test")[0]
    (image,) = utils.doc_to_image(doc)
    expected = preprocess_image(doc["image"], task.preprocessing.image)
    assert image.size == (224, 224) and image.tobytes() == expected.tobytes()
    assert utils.doc_to_text(doc) == "<image>" + task.doc_to_text
    assert utils.doc_to_target(doc) == task.preprocessing.target.apply(doc["caption"])
    results = utils.process_results(doc, ["  Chest   CT showing\n a mass. "])
    item = ("Chest CT showing a mass.", utils.doc_to_target(doc), list(doc["cui"]))
    assert results == {m.metric: item for m in task.metric_list}
    items = [
        item,
        ("Axial MRI of the brain.", "Axial T2 MRI of the brain.", None),
        ("", "CT.", None),
    ]
    refs = References(
        tuple(r for _, r, _ in items), tuple(None if c is None else tuple(c) for _, _, c in items)
    )
    for m in task.metric_list:
        if m.metric == "bertscore_f1":  # tests/analysis/test_lm_eval_portable.py: end to end
            continue
        ours = compute_metrics(
            [(m.metric, parse_options(m.metric, m.kwargs))],
            [p for p, _, _ in items],
            refs,
            resamples=0,
        )[m.metric].value
        assert getattr(utils, f"agg_{m.metric}")(items) == pytest.approx(ours, abs=1e-12)


def test_lm_eval_reads_the_exported_task(exported: Path) -> None:
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml  # lm-eval 0.4.13's own task-file reader

    task = ConfigurableTask(config=load_yaml(exported / "rocov2_sample.yaml"))
    docs = list(task.test_docs())
    assert len(docs) == 64
    assert task.doc_to_text(docs[0]).startswith("<image>You are an expert radiographer.")
    assert task.config.generation_kwargs["until"] == []


@pytest.mark.slow
def test_lm_eval_hf_multimodal_gives_rocobench_captions_and_metrics(
    tmp_path: Path, repo_root: Path
) -> None:
    """Greedy tiny LLaVA twin on 4 images: rocobench's runner, then lm-eval's hf-multimodal."""
    pytest.importorskip("lm_eval")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.models.twins import build_twin

    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 16")
    text = text.replace("do_sample: true", "do_sample: false")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]") + "limit: 4\n"
    task_file = tmp_path / "rocov2_sample.yaml"
    task_file.write_text(text)
    results = tmp_path / "results"
    run = ["run", "--task", str(task_file), "--variant", "tiny-llava", "--results", str(results)]
    assert main([*run, "--no-progress", "--device", "cpu"]) == 0
    folder = run_dir(results, "rocov2_sample", "tiny-llava", 0)
    record = read_record(folder / RECORD_FILE)
    ours = {r["id"]: r for r in read_jsonl(folder / "predictions.jsonl")}

    export(load_task(task_file), tmp_path / "export")
    out: dict[str, Any] = lm_eval.simple_evaluate(
        model="hf-multimodal",
        model_args={"pretrained": str(build_twin("llava")), "dtype": "float32", "device": "cpu"},
        tasks=["rocov2_sample"],
        task_manager=TaskManager(include_path=str(tmp_path / "export")),
        apply_chat_template=True,
        limit=4,
        log_samples=True,
        batch_size=2,
    )
    samples = out["samples"]["rocov2_sample"]
    assert len(samples) == 4
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        assert s["filtered_resps"][0] == ours[s["doc"]["image_id"]]["raw"]
    values = out["results"]["rocov2_sample"]
    for name, metric in record.metrics.items():
        assert values[f"{name},none"] == pytest.approx(metric.value, abs=1e-9), name
    print(json.dumps({k: v for k, v in values.items() if ",none" in k}), file=sys.stderr)
