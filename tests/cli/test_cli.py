"""The `rocobench` command end to end on the embedded twins: run, reuse, render, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.layout import RECORD_FILE, run_dir
from harness.records.store import read_jsonl, read_record

TWINS = ["tiny-qwen2-vl", "tiny-mllama", "tiny-llava"]
REPO = Path(__file__).resolve().parents[2]


def small_task(tmp_path: Path, repo_root: Path, **changes: str) -> Path:
    """The bundled task with fewer images and tokens, so a CLI test takes seconds."""
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 16")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0, 1]")
    text += "limit: 6\n"
    for old, new in changes.items():
        text = text.replace(old, new)
    path = tmp_path / "rocov2_sample.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory, repo_root):
    """Every twin × 2 seeds on the small task, run through the CLI once for the module."""
    tmp = tmp_path_factory.mktemp("cli")
    task = small_task(tmp, repo_root)
    args = ["run", "--task", str(task), "--results", str(tmp / "results"), "--no-progress"]
    for v in TWINS:
        args += ["--variant", v]
    assert main(args) == 0
    return tmp, task


def test_run_writes_records_predictions_and_samples(bench_results) -> None:
    tmp, _ = bench_results
    for variant in TWINS:
        for seed in (0, 1):
            d = run_dir(tmp / "results", "rocov2_sample", variant, seed)
            record = read_record(d / RECORD_FILE)
            assert (record.variant, record.seed, record.dataset.n_samples) == (variant, seed, 6)
            assert set(record.metrics) == {
                "bleu4", "rouge_l", "meteor", "cider", "bertscore_f1", "concept_f1", "modality_acc"
            }  # fmt: skip
            assert record.metrics["bertscore_f1"].details["backbone"]
            assert record.model.base == "twin:" + record.model.family
            assert record.provenance.packages["transformers"]
            assert record.measurements.n_images == 6
            samples = read_jsonl(d / "samples.jsonl")
            assert [s["id"] for s in samples] == [
                p["id"] for p in read_jsonl(d / "predictions.jsonl")
            ]
            assert len(samples) == 6
            assert set(samples[0]["scores"]) == {
                "bleu4",
                "rouge_l",
                "meteor",
                "cider",
                "bertscore_f1",
            }


def test_second_run_reuses_and_a_change_recomputes(bench_results, capsys) -> None:
    tmp, task = bench_results
    results = tmp / "results"
    record = run_dir(results, "rocov2_sample", "tiny-llava", 0) / RECORD_FILE
    before = record.read_bytes()
    assert main(["run", "--task", str(task), "--variant", "tiny-llava", "--results", str(results),
                 "--no-progress"]) == 0  # fmt: skip
    assert "reuse" in capsys.readouterr().err
    assert record.read_bytes() == before
    edited = task.read_text().replace("temperature: 0.7", "temperature: 0.9")
    other = tmp / "edited" / "rocov2_sample.yaml"
    other.parent.mkdir(exist_ok=True)
    other.write_text(edited)
    assert main(["run", "--task", str(other), "--variant", "tiny-llava", "--seeds", "0",
                 "--results", str(results), "--no-progress"]) == 0  # fmt: skip
    assert "the task spec changed" in capsys.readouterr().err
    assert record.read_bytes() != before


def test_render_lists_every_variant(bench_results) -> None:
    tmp, _ = bench_results
    site = tmp / "site"
    assert main(["render", str(tmp / "results"), "-o", str(site)]) == 0
    html = (site / "index.html").read_text()
    for variant in TWINS:
        assert variant in html
    table = json.loads((site / "results.json").read_text())
    assert "rocov2_sample" in json.dumps(table)
    assert "±" in html
    # twins: the banner says so; genuine runs pass the record checks
    assert 'id="twins-banner"' in html and table["twins"] is True
    assert {row["status"] for row in table["tasks"][0]["rows"]} == {"checked"}
    assert main(["verify", "--quick", str(tmp / "results")]) == 0


def test_bad_manifest_exits_2_with_one_line_and_writes_nothing(tmp_path, repo_root, capsys) -> None:
    bad = tmp_path / "bad-variant.yaml"
    bad.write_text("id: bad-variant\nbase:\n  twin: qwen2_vl\n  dtype: float8\n")
    results = tmp_path / "results"
    code = main(["run", "--task", str(small_task(tmp_path, repo_root)), "--variant", str(bad),
                 "--results", str(results)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"{bad}:4: base.dtype: ")
    assert not results.exists()


def test_unknown_variant_suggests(capsys) -> None:
    # an unknown name is a spec problem, as a malformed file is: exit 2
    assert main(["run", "--task", "rocov2_sample", "--variant", "tiny-qwen"]) == 2
    assert "did you mean tiny-qwen2-vl" in capsys.readouterr().err


def test_ls_and_validate(repo_root, capsys) -> None:
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert all(v in out for v in [*TWINS, "qwen2-vl-2b", "rocov2_paper327"])
    manifests = sorted((repo_root / "variants").glob("*.yaml"))
    assert main(["validate", *map(str, manifests)]) == 0


def test_console_script_help() -> None:
    exe = Path(sys.executable).parent / "rocobench"
    out = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, check=True)
    assert "--variant" in out.stdout and "--seeds" in out.stdout


def test_plan_sees_finished_and_missing_runs(bench_results) -> None:
    from harness.pipeline.plan import format_plan, plan
    from harness.specs.task import load_task
    from harness.specs.variant import load_variant

    tmp, task_path = bench_results
    task = load_task(task_path)
    variants = [load_variant(REPO / "variants" / "tiny-llava.yaml")]
    planned = plan(task, variants, [1, 7], tmp / "results")  # seed 0 is rerun by another test
    assert [(s.seed, s.problem) for s in planned[0].seeds] == [(1, None), (7, "no record yet")]
    assert planned[0].base_status.startswith("embedded twin")
    assert "1 of 2 runs to do, 1 finished" in format_plan(task, planned)
    forced = plan(task, variants, [1], tmp / "results", force=True)
    assert forced[0].seeds[0].problem == "--force was given"


def test_verify_compares_ids_and_references_with_the_data(bench_results) -> None:
    from harness.analysis.verify import dataset_problems
    from harness.paths import TASKS_DIR
    from harness.specs.task import load_task

    tmp, _ = bench_results
    folder = run_dir(tmp / "results", "rocov2_sample", "tiny-llava", 1)
    record = read_record(folder / RECORD_FILE)
    rows = read_jsonl(folder / "samples.jsonl")
    task = load_task(TASKS_DIR / "rocov2_sample.yaml")
    notes: list[str] = []
    assert dataset_problems(record, rows, task, notes) == [] and notes == []
    # a reference edited to match its caption would score perfectly: the data says otherwise
    rows[2] = rows[2] | {"reference": rows[2]["prediction"]}
    assert dataset_problems(record, rows, task, notes) == [
        "samples.jsonl:3: the reference is not the dataset's"
    ]
    other = record.model_copy(
        update={"dataset": record.dataset.model_copy(update={"ids_sha256": "0" * 64})}
    )
    assert "dataset.ids_sha256: not the first 6 ids" in dataset_problems(other, rows, task, [])[0]
