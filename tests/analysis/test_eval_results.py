"""Records as the Hub's Eval Results: `.eval_results/*.yaml` checked against the documented
fields and huggingface_hub's own reader, one file per setting, committed to a model repository
on the fake Hub; the committed `hub/eval.yaml` declares every task id an export can name."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fixtures.fake_hub import ENDPOINT, TOKEN, FakeHub, serving
from fixtures.site_records import make_record, write_all

from harness.analysis.eval_results import (
    EvalResultsError,
    eval_results_files,
    validate_eval_results,
)
from harness.cli import main
from harness.paths import REPO_ROOT
from harness.records.record import MetricValue, RunRecord

BENCHMARK = "rocobench/rocov2-benchmark"
MODEL = "rocobench/qwen-qlora"
SCORES = {0: 0.10, 1: 0.12, 2: 0.14}


def records(task_sha: str = "t" * 64) -> list[RunRecord]:
    out = []
    for seed, value in SCORES.items():
        r = make_record("qwen-qlora", seed, {"bleu4": value, "rouge_l": value * 2})
        metrics = {
            k: MetricValue(value=v.value, ci95=(v.value - 0.01, v.value + 0.01), n=20)
            for k, v in r.metrics.items()
        }
        out.append(r.model_copy(update={"metrics": metrics, "task_sha256": task_sha}))
    return out


def test_one_entry_per_metric_with_the_mean_over_seeds_source_and_date() -> None:
    files = eval_results_files(records(), benchmark=BENCHMARK, source_url="https://lb.test")
    assert list(files) == [".eval_results/rocobench-roco-caption.yaml"]
    entries = yaml.safe_load(files[".eval_results/rocobench-roco-caption.yaml"])
    assert [e["dataset"]["task_id"] for e in entries] == [
        "roco-caption-bleu4",
        "roco-caption-rouge_l",
    ]
    bleu = entries[0]
    assert bleu["dataset"]["id"] == BENCHMARK
    assert "revision" not in bleu["dataset"]  # the records' dataset is not the benchmark's
    assert bleu["value"] == pytest.approx(statistics.fmean(SCORES.values()))
    assert bleu["date"] == "2025-01-03T00:00:00+00:00"  # the latest record
    assert bleu["source"] == {"url": "https://lb.test", "name": "rocobench"}
    assert bleu["evaluation_framework"] == "rocobench"
    assert "mean of 3 seeds (0, 1, 2)" in bleu["notes"] and "sd 0.0200" in bleu["notes"]
    assert "0.0900–0.1100" in bleu["notes"]  # seed 0's interval
    from huggingface_hub import parse_eval_result_entries

    (parsed, _) = parse_eval_result_entries(entries)
    assert parsed.dataset_id == BENCHMARK and parsed.task_id == "roco-caption-bleu4"


def test_the_records_dataset_revision_is_kept_when_it_is_the_benchmark() -> None:
    files = eval_results_files(records(), benchmark="eltorio/ROCOv2-radiology")
    (text,) = files.values()
    assert yaml.safe_load(text)[0]["dataset"]["revision"] == "c0ffee00" * 5


def test_each_setting_gets_its_own_file_and_one_variant_per_repository() -> None:
    files = eval_results_files(records() + records("u" * 64), benchmark=BENCHMARK)
    assert len(files) == 2
    assert all(p.startswith(".eval_results/rocobench-roco-caption-") for p in files)
    other = make_record("llama-base", 0, {"bleu4": 0.1})
    with pytest.raises(EvalResultsError, match="one model repository holds one variant"):
        eval_results_files([*records(), other], benchmark=BENCHMARK)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"dataset": {"id": BENCHMARK, "task_id": "t"}, "value": 1, "metric": "x"}, "'metric'"),
        ({"dataset": {"id": BENCHMARK}, "value": 1}, "task_id are required"),
        ({"dataset": {"id": BENCHMARK, "task_id": "t"}, "value": "high"}, "finite number"),
        ({"dataset": {"id": BENCHMARK, "task_id": "t"}, "value": float("nan")}, "finite number"),
        ({"dataset": {"id": "nope", "task_id": "t"}, "value": 1}, "not a Hub dataset id"),
        (
            {"dataset": {"id": BENCHMARK, "task_id": "t"}, "value": 1, "source": {"name": "x"}},
            "source.url is required",
        ),
        (
            {"dataset": {"id": BENCHMARK, "task_id": "t"}, "value": 1, "date": "yesterday"},
            "not ISO-8601",
        ),
    ],
)
def test_validation_names_the_file_entry_and_field(entry: dict, problem: str) -> None:
    with pytest.raises(EvalResultsError, match=rf"f\.yaml: entry 0: .*{problem}"):
        validate_eval_results([entry], where="f.yaml")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    with serving(FakeHub()) as fake:
        fake.add_repo("model", MODEL, {"README.md": b"# model\n"})
        yield fake


def test_export_commits_the_yaml_to_the_model_repo_or_a_pull_request(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_all(tmp_path / "results", records())
    common = ["export-eval-results", str(tmp_path / "results"), "--model-repo", MODEL,
              "--benchmark", BENCHMARK, "--endpoint", ENDPOINT]  # fmt: skip
    assert main([*common, "--dry-run", "-o", str(tmp_path / "out")]) == 0
    assert not hub.commits()
    written = tmp_path / "out" / ".eval_results" / "rocobench-roco-caption.yaml"
    assert yaml.safe_load(written.read_text(encoding="utf-8"))[0]["value"] == pytest.approx(0.12)
    assert main([*common, "--create-pr"]) == 0
    repo = hub.repo("model", MODEL)
    assert ".eval_results/rocobench-roco-caption.yaml" not in repo.files
    assert ".eval_results/rocobench-roco-caption.yaml" in repo.pull_requests[0]["files"]
    assert main(common) == 0
    assert repo.files[".eval_results/rocobench-roco-caption.yaml"] == written.read_bytes()
    assert main([*common, "--variant", "nobody"]) == 1
    assert "no records" in capsys.readouterr().err


def test_the_committed_eval_yaml_is_current_and_declares_every_exported_task(
    tmp_path: Path,
) -> None:
    assert main(["export-eval-results", "--eval-yaml", str(tmp_path / "eval.yaml")]) == 0
    committed = (REPO_ROOT / "hub" / "eval.yaml").read_text(encoding="utf-8")
    assert committed == (tmp_path / "eval.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(committed)
    assert {"name", "description", "evaluation_framework", "tasks"} <= set(doc)
    declared = {t["id"] for t in doc["tasks"]}
    assert all({"id", "config", "split"} == set(t) for t in doc["tasks"])
    paper = [r.model_copy(update={"task": "rocov2_paper327"}) for r in records()]
    (text,) = eval_results_files(paper, benchmark=BENCHMARK).values()
    assert {e["dataset"]["task_id"] for e in yaml.safe_load(text)} <= declared
    assert "rocov2_paper327-bertscore_f1" in declared and "rocov2_caption-cider" in declared
