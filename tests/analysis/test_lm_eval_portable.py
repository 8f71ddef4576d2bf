"""`rocobench export-lm-eval` runs anywhere: the exported folder, moved elsewhere, runs in
lm-eval in a process where rocobench's packages cannot be imported, and gives the same metric
values as `rocobench score` on the same pairs.

lm-eval (the optional `lmeval` extra) drives the whole task: custom_dataset, doc_to_*,
process_results and the aggregations. A replay model answers each document with a fixed
caption, so the pairs are known without a vision-language model.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.analysis.score import Pairs
from harness.cli import main
from harness.data.dataset import load_split
from harness.metrics import References, compute_metrics, parse_options
from harness.metrics.wordnet import ensure_wordnet

LIMIT = 16

# Runs in the child: rocobench's packages are blocked before anything else is imported.
CHILD = r"""
import importlib.abc, json, sys


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("harness", "leaderboard"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
        return None


sys.meta_path.insert(0, Block())
try:
    import harness  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("rocobench is importable")

import lm_eval
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager

folder, answers_file, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
answers = json.load(open(answers_file))


class Replay(LM):
    MULTIMODAL = True

    def generate_until(self, requests, disable_tqdm=False):
        return [answers[str(r.doc["image_id"])] for r in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


out = lm_eval.simple_evaluate(
    model=Replay(),
    tasks=["rocov2_sample"],
    task_manager=TaskManager(include_path=folder),
    limit=limit,
    bootstrap_iters=0,
)
values = out["results"]["rocov2_sample"]
values = {k.split(",")[0]: v for k, v in values.items() if k.endswith(",none")}
print("RESULT " + json.dumps({k: v for k, v in values.items() if not k.endswith("_stderr")}))
"""


def _pairs(sample_task) -> Pairs:  # type: ignore[no-untyped-def]
    evalset = load_split(sample_task, limit=LIMIT)
    refs = evalset.references
    # other images' captions, one shortened, one empty: every metric sees a real spread
    preds = [refs[(i + 1) % len(refs)] for i in range(len(refs))]
    preds[2] = " ".join(preds[2].split()[:4])
    preds[5] = ""
    preds[7] = refs[7]
    return Pairs(list(evalset.ids), preds, refs, evalset.concepts)


def test_export_runs_in_lm_eval_without_rocobench(
    tmp_path: Path, sample_task, repo_root: Path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("lm_eval")
    exported = tmp_path / "export"
    assert main(["export-lm-eval", "rocov2_sample", "-o", str(exported), "--copy-data"]) == 0
    moved = tmp_path / "elsewhere" / "rocov2_sample"  # another place: nothing points back
    shutil.copytree(exported, moved)
    shutil.rmtree(exported)
    tree = ast.parse((moved / "utils.py").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "sacrebleu" in imported and not imported & {"harness", "leaderboard"}
    assert not imported & {"harness", "leaderboard"}
    assert str(repo_root) not in (moved / "rocov2_sample.yaml").read_text(encoding="utf-8")
    settings = json.loads((moved / "rocobench_task.json").read_text(encoding="utf-8"))
    assert settings["dataset"] == {"relative_path": "data/rocov2_sample"}
    assert settings["doc_to_concepts"] == "cui"

    pairs = _pairs(sample_task)
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(dict(zip(pairs.ids, pairs.predictions, strict=True))))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROCOBENCH_CACHE")}
    env |= {
        "NLTK_DATA": str(ensure_wordnet()),  # WordNet 3.0, where nltk.download would put it
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(moved), str(answers), str(LIMIT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    line = next(x for x in child.stdout.splitlines() if x.startswith("RESULT "))
    theirs = json.loads(line.removeprefix("RESULT "))

    names = [m.metric for m in sample_task.metric_list]
    assert len(names) == 7 and sorted(theirs) == sorted(names)
    # the task's own metric options (what a rocobench run of it records), e.g. BERTScore's
    # batch size, which moves the float32 sums in the ninth decimal
    requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in sample_task.metric_list]
    concepts = tuple(None if c is None else tuple(c) for c in pairs.concepts or ())
    references = References(tuple(pairs.references), concepts or None)
    ours = compute_metrics(requests, pairs.predictions, references, resamples=0)
    # BERTScore runs a float32 model over batches that bert-score forms from a set of the
    # sentences: their make-up follows the process's string hashing, and padding to another
    # length rounds differently, at about 1e-9 (the two processes hash differently)
    tolerance = {"bertscore_f1": 1e-6}
    for name in names:
        assert theirs[name] == pytest.approx(ours[name].value, abs=tolerance.get(name, 1e-9)), name
    assert ours["concept_f1"].details["reference_concepts"] == "dataset"
    assert 0 < ours["concept_f1"].value < 1 and 0 < ours["modality_acc"].value < 1


def test_hub_task_is_referenced_by_id_and_revision(tmp_path: Path, repo_root: Path) -> None:
    from harness.analysis.lm_eval_export import export
    from harness.specs.task import load_task

    task = load_task(repo_root / "tasks/rocov2_caption.yaml")
    export(task, tmp_path)
    cfg = yaml.safe_load(
        (tmp_path / "rocov2_caption.yaml").read_text(encoding="utf-8").replace("!function ", "")
    )
    assert cfg["dataset_path"] == "eltorio/ROCOv2-radiology"
    assert cfg["dataset_kwargs"] == {"revision": task.dataset_kwargs.revision}
    assert "custom_dataset" not in cfg
    settings = json.loads((tmp_path / "rocobench_task.json").read_text(encoding="utf-8"))
    assert settings["dataset"]["revision"] == task.dataset_kwargs.revision


def test_export_refuses_metrics_that_need_rocobench(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text(encoding="utf-8")
    text = text.replace("  - metric: modality_acc", "  - metric: imageclef_rouge_1")
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    task_file = tmp_path / "t.yaml"
    task_file.write_text(text, encoding="utf-8")
    assert main(["export-lm-eval", str(task_file), "-o", str(tmp_path / "out")]) != 0
    assert "imageclef_rouge_1 cannot run without rocobench" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
