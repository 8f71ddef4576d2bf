"""`rocobench score` and `rocobench compare`: reference-exact values, bad input, the same code
as the run pipeline.

The pairs in tests/fixtures/roco_v1_unseen are real ROCO v1 captions (CC BY) that the bundled sample
does not contain, each paired with another caption by keyword overlap.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fixtures.reference_metrics import REFERENCE, official_imageclef

from harness.cli import main
from harness.metrics import MetricOptions, parse_options
from harness.metrics.bertscore import BERTScoreOptions
from harness.metrics.profiles import PROFILES
from harness.records.layout import RECORD_FILE, run_dir
from harness.records.store import read_jsonl, read_record

PAIRS = Path(__file__).resolve().parents[1] / "fixtures" / "roco_v1_unseen" / "pairs.jsonl"
LEXICAL = ["bleu1", "bleu4", "rouge_1", "rouge_l", "meteor", "cider"]
TOL = 1e-6  # the bar; the lexical metrics agree to ~1e-15


def _pairs(path: Path = PAIRS) -> tuple[list[str], list[str]]:
    rows = read_jsonl(path)
    return [r["prediction"] for r in rows], [r["reference"] for r in rows]


def _score_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, float]:
    assert main(["score", *args, "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object
    return json.loads(out)


def _direct(name: str, preds: list[str], refs: list[str], options: MetricOptions) -> float:
    return REFERENCE[name](preds, refs, options).value


def test_score_json_equals_the_reference_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    got = _score_json(capsys, "--pairs", str(PAIRS), "--metrics", ",".join(LEXICAL))
    assert list(got) == LEXICAL
    preds, refs = _pairs()
    assert len(preds) == 200
    for name in LEXICAL:
        assert got[name] == pytest.approx(_direct(name, preds, refs, MetricOptions()), abs=TOL)


def test_score_json_bertscore_offline_equals_bert_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subset = tmp_path / "pairs.jsonl"
    subset.write_text("".join(PAIRS.read_text(encoding="utf-8").splitlines(True)[:12]))
    got = _score_json(capsys, "--pairs", str(subset), "--metrics", "bertscore_f1")
    preds, refs = _pairs(subset)
    expected = _direct("bertscore_f1", preds, refs, PROFILES["offline"].bertscore)
    assert got["bertscore_f1"] == pytest.approx(expected, abs=TOL)


@pytest.mark.slow
def test_score_json_all_metrics_all_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.metrics import compute_metrics

    got = _score_json(capsys, "--pairs", str(PAIRS))
    preds, refs = _pairs()
    # The concept metrics have no reference library (tests/data/test_concepts.py hand-checks
    # them): they must equal the run pipeline's own call. Every other one equals its library.
    own = {"concept_f1", "modality_acc"}
    assert set(got) - set(REFERENCE) == own
    for name, value in got.items():
        options = PROFILES["offline"].bertscore if name == "bertscore_f1" else MetricOptions()
        if name in own:
            request = (name, parse_options(name, {}))  # each with its defaults, as `score` does
            expected = compute_metrics([request], preds, refs, resamples=0)[name].value
        else:
            expected = _direct(name, preds, refs, options)
        assert value == pytest.approx(expected, abs=TOL)


def test_imageclef_profile_normalises_both_sides(capsys: pytest.CaptureFixture[str]) -> None:
    got = _score_json(
        capsys, "--pairs", str(PAIRS), "--profile", "imageclef", "--metrics", ",".join(LEXICAL)
    )
    plain = _score_json(capsys, "--pairs", str(PAIRS), "--metrics", ",".join(LEXICAL))
    preds, refs = _pairs()
    preds = [official_imageclef(p) for p in preds]
    refs = [official_imageclef(r) for r in refs]
    for name in LEXICAL:
        assert got[name] == pytest.approx(_direct(name, preds, refs, MetricOptions()), abs=TOL)
    assert got["bleu4"] != plain["bleu4"]


def test_score_table_shows_intervals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", "--pairs", str(PAIRS), "--metrics", "bleu4,cider,rouge_l"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{PAIRS}: 200 pairs, profile offline")
    rows = {line.split()[0]: line for line in out[2:]}
    assert list(rows) == ["bleu4", "cider", "rouge_l"]
    assert "nrefs:1|case:mixed|eff:no|tok:13a" in rows["bleu4"]
    for line in rows.values():
        value, lo, hi = (
            float(line.split()[1]),
            *map(float, line.split("[")[1].split("]")[0].split(", ")),
        )
        assert lo <= value <= hi


def test_score_reads_samples_files_and_skips_blank_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "samples.jsonl"
    rows = [
        {"id": 1, "reference": "Chest CT.", "prediction": "Chest CT.", "scores": {"x": 1}},
        {"id": "b", "reference": "Axial MRI of the brain.", "prediction": "", "new_tokens": 0},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n   \n")
    got = _score_json(capsys, "--pairs", str(path), "--metrics", "rouge_l,bleu1")
    assert got == {"rouge_l": 0.5, "bleu1": pytest.approx(_bleu1(rows), abs=1e-15)}


def _bleu1(rows: list[dict[str, Any]]) -> float:
    preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    return _direct("bleu1", preds, refs, MetricOptions())


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        (b'{"id": 1, "prediction": "a", "reference": "b"}\n{"id": 2, "prediction": "a"', ":2:",
         "not valid JSON"),
        (b'["a", "b"]\n', ":1:", "expected a JSON object"),
        (b'{"id": 1, "prediction": "a"}\n', ":1:", "missing reference"),
        (b'{"prediction": "a", "reference": "b"}\n', ":1:", "missing id"),
        (b'{"id": 1, "prediction": null, "reference": "b"}\n', ":1:",
         "prediction: expected a string, got null"),
        (b'{"id": 1, "prediction": "a", "reference": ["b"]}\n', ":1:",
         "reference: expected a string, got array"),
        (b'{"id": 1.5, "prediction": "a", "reference": "b"}\n', ":1:", "id: expected a string"),
        (b'{"id": true, "prediction": "a", "reference": "b"}\n', ":1:", "id: expected a string"),
        (b'{"id": "x", "prediction": "a", "reference": "b"}\n\n'
         b'{"id": "x", "prediction": "c", "reference": "d"}\n', ":3:",
         "duplicate id 'x' (first on line 1)"),
        (b'{"id": 1, "prediction": "\xff", "reference": "b"}\n', ":1:", "not UTF-8"),
        (b"\n\n", ": ", "no pairs"),
    ],
)  # fmt: skip
def test_bad_pairs_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, where: str, message: str
) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(content)
    assert main(["score", "--pairs", str(path), "--metrics", "rouge_l"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and captured.out == ""
    assert err.startswith(f"rocobench: {path}{where}") and message in err


def test_missing_file_and_unknown_metric_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--pairs", str(tmp_path / "absent.jsonl")]) == 2
    assert f"{tmp_path / 'absent.jsonl'}: cannot read" in capsys.readouterr().err
    assert main(["score", "--pairs", str(PAIRS), "--metrics", "bleu4,blue1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown metric 'blue1'" in err and "did you mean 'bleu1'" in err


def test_missing_backbone_is_one_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = BERTScoreOptions(model_type="rocobench-test/absent-encoder", num_layers=1)
    monkeypatch.setitem(PROFILES, "paper", dataclasses.replace(PROFILES["paper"], bertscore=absent))
    args = ["score", "--pairs", str(PAIRS), "--profile", "paper", "--metrics", "bertscore_f1"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "rocobench-test/absent-encoder" in err


# --- the run pipeline, score and compare on the same records -----------------------------------


@pytest.fixture(scope="module")
def twin_results(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """Two twins × 2 seeds on 6 bundled images, through `rocobench run`."""
    tmp = tmp_path_factory.mktemp("score")
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    text = text.replace("max_new_tokens: 128", "max_new_tokens: 12")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0, 1]") + "limit: 6\n"
    task = tmp / "rocov2_sample.yaml"
    task.write_text(text)
    results = tmp / "results"
    args = ["run", "--task", str(task), "--results", str(results), "--no-progress"]
    assert main([*args, "--variant", "tiny-llava", "--variant", "tiny-qwen2-vl"]) == 0
    return results


def test_records_carry_intervals_and_rescoring_samples_gives_the_record(
    twin_results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    for variant in ("tiny-llava", "tiny-qwen2-vl"):
        folder = run_dir(twin_results, "rocov2_sample", variant, 0)
        record = read_record(folder / RECORD_FILE)
        for name, m in record.metrics.items():
            assert m.n == 6 and m.ci95 is not None, name
            assert m.ci95[0] - 1e-12 <= m.value <= m.ci95[1] + 1e-12, name
        backbone = record.metrics["bertscore_f1"].details["backbone"]
        assert parse_options("bertscore_f1", {"model_type": backbone}) == (
            PROFILES["offline"].bertscore
        )
        got = _score_json(
            capsys, "--pairs", str(folder / "samples.jsonl"), "--metrics", ",".join(record.metrics)
        )
        assert got == pytest.approx({k: v.value for k, v in record.metrics.items()}, abs=1e-12)


def test_compare_twins(twin_results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    args = ["compare", str(twin_results), "--task", "rocov2_sample", "tiny-qwen2-vl", "tiny-llava"]
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    records = {
        (v, s): read_record(run_dir(twin_results, "rocov2_sample", v, s) / RECORD_FILE)
        for v in ("tiny-qwen2-vl", "tiny-llava")
        for s in (0, 1)
    }
    names = list(records["tiny-qwen2-vl", 0].metrics)
    assert [(r["metric"], r["seed"]) for r in rows] == [
        (m, s) for m in names for s in (0, 1, "all")
    ]
    for r in rows:
        seeds = (0, 1) if r["seed"] == "all" else (r["seed"],)
        a = sum(records["tiny-qwen2-vl", s].metrics[r["metric"]].value for s in seeds) / len(seeds)
        b = sum(records["tiny-llava", s].metrics[r["metric"]].value for s in seeds) / len(seeds)
        assert (r["a"], r["b"]) == pytest.approx((a, b), abs=1e-9)
        assert r["difference"] == pytest.approx(b - a, abs=1e-9)
        assert r["ci95"][0] <= r["ci95"][1] and 0 < r["p_value"] <= 1
        assert (r["n"], r["resamples"]) == (6, 1000)

    assert main([*args, "--metrics", "bleu4", "--seeds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "B = tiny-llava against A = tiny-qwen2-vl, 6 images, seeds 1" in out[0]
    assert len(out) == 3 and out[2].split()[:2] == ["bleu4", "1"]

    same = ["compare", str(twin_results), "--task", "rocov2_sample", "tiny-llava", "tiny-llava"]
    assert main([*same, "--json", "--resamples", "200"]) == 0
    for r in json.loads(capsys.readouterr().out):
        assert (r["difference"], r["p_value"], r["resamples"]) == (0.0, 1.0, 200)


def test_compare_refuses_runs_on_other_images(
    twin_results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    shutil.copytree(twin_results, results)
    capsys.readouterr()
    base = ["compare", str(results), "--task", "rocov2_sample"]
    assert main([*base, "tiny-llava", "tiny-absent"]) == 1
    assert "no finished runs of rocov2_sample × tiny-absent" in capsys.readouterr().err
    assert main([*base, "tiny-llava", "tiny-qwen2-vl", "--metrics", "spice"]) == 1
    assert "metric 'spice' is not in every run" in capsys.readouterr().err
    samples = run_dir(results, "rocov2_sample", "tiny-llava", 1) / "samples.jsonl"
    rows = read_jsonl(samples)
    rows[0]["id"] = "another-image"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*base, "tiny-qwen2-vl", "tiny-llava"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "seed 1: B was evaluated on other images" in err
