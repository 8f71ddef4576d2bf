"""`rocobench regress`: the regression gate against a baseline (harness.analysis.regress)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.analysis.regress import (
    BaselineError,
    MetricMean,
    Tolerance,
    blind_summary,
    collect,
    compare,
    load_baseline,
    parse_tolerance,
)
from harness.cli import main
from harness.records.layout import run_dir
from harness.records.record import MetricValue
from harness.records.store import write_record
from tests.fixtures.site_records import SCORES, SEEDS, TASK, fixture_records, make_record, write_all

REPO = Path(__file__).resolve().parents[2]
# These records carry no samples: the comparison is tested here, the record checks the gate
# runs first in tests/analysis/test_verify.py.
NO_CHECKS = ("--skip-record-checks",)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    write_all(out, fixture_records())
    return out


@pytest.fixture
def baseline(tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "baseline.json"
    assert (
        main(["regress", *NO_CHECKS, "--baseline", str(path), str(results), "--update-baseline"])
        == 0
    )
    capsys.readouterr()
    return path


def gate(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    rc = main(["regress", *NO_CHECKS, *map(str, args)])
    return rc, capsys.readouterr().out


def plant(results: Path, variant: str, metric: str, delta: float, *, lower_better: bool = False):
    """Shift one metric of every seed of a variant by `delta`."""
    for i, seed in enumerate(SEEDS):
        scores = {m: vals[i] for m, vals in SCORES[variant].items()}
        record = make_record(variant, seed, scores)
        metrics = dict(record.metrics)
        metrics[metric] = MetricValue(
            value=scores[metric] + delta, higher_is_better=not lower_better
        )
        record = record.model_copy(update={"metrics": metrics})
        write_record(run_dir(results, TASK, variant, seed), record)


def test_baseline_holds_means_and_tolerances(baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == 1
    assert data["tolerances"]["default"] == {"abs": 1e-4, "rel": 0.0, "ci": 0.0}
    entry = data["results"][TASK]["qwen-qlora"]["bleu4"]
    assert entry == {
        "mean": pytest.approx(0.0093), "higher_is_better": True, "n_seeds": 3, "ci95_half": None
    }  # fmt: skip


def test_unchanged_results_pass(capsys, baseline, results):
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 0
    assert "regression gate passed" in out
    assert "9 ok, 0 improved, 0 regressed, 0 missing, 0 new" in out


def test_planted_regression_fails(capsys, baseline, results):
    plant(results, "llama-base", "rouge_l", -0.01)
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 1
    row = next(line for line in out.splitlines() if "rouge_l" in line)
    assert "llama-base" in row and "REGRESSED" in row and "-0.010000" in row
    assert "1 regressed" in out


def test_noise_within_tolerance_passes(capsys, baseline, results):
    plant(results, "llama-base", "rouge_l", -3e-6)  # cross-CPU float noise
    assert gate(capsys, "--baseline", baseline, results)[0] == 0


def test_tolerance_override(capsys, baseline, results):
    plant(results, "llama-base", "rouge_l", -0.01)
    args = ("--baseline", baseline, results)
    assert gate(capsys, *args, "--tolerance", "rouge_l=0.02")[0] == 0
    assert gate(capsys, *args, "--tolerance", "rouge_l=0,0.1")[0] == 0  # 10 % of 0.19
    assert gate(capsys, *args, "--tolerance", "rouge_l=0,0.01")[0] == 1
    assert gate(capsys, *args, "--tolerance", "bleu4=1")[0] == 1  # another metric's


def test_direction_respected(capsys, baseline, results):
    plant(results, "qwen-qlora", "bleu4", +0.01)  # higher is better: an improvement
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 0
    assert "improved" in out


def test_lower_is_better_metric(capsys, tmp_path, results):
    plant(results, "qwen-qlora", "bleu4", 0.0, lower_better=True)
    path = tmp_path / "b.json"
    assert gate(capsys, "--baseline", path, results, "--update-baseline")[0] == 0
    plant(results, "qwen-qlora", "bleu4", -0.005, lower_better=True)  # lower: better
    assert gate(capsys, "--baseline", path, results)[0] == 0
    plant(results, "qwen-qlora", "bleu4", +0.005, lower_better=True)  # higher: worse
    assert gate(capsys, "--baseline", path, results)[0] == 1


def test_missing_variant_fails(capsys, baseline, results):
    for seed in SEEDS:
        (run_dir(results, TASK, "llama-base", seed) / "record.json").unlink()
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 1
    assert "3 missing" in out
    assert all("MISSING" in line for line in out.splitlines() if "llama-base" in line)


def test_missing_metric_fails(capsys, baseline, results):
    for i, seed in enumerate(SEEDS):
        scores = {m: v[i] for m, v in SCORES["qwen-qlora"].items() if m != "bertscore_f1"}
        write_record(
            run_dir(results, TASK, "qwen-qlora", seed), make_record("qwen-qlora", seed, scores)
        )
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 1
    assert "1 missing" in out


def test_new_variant_is_reported_not_failed(capsys, baseline, results):
    write_all(results, [make_record("newcomer", 0, {"bleu4": 0.5})])
    rc, out = gate(capsys, "--baseline", baseline, results)
    assert rc == 0
    assert "newcomer" in out and "1 new" in out


def test_update_baseline_rewrites(capsys, baseline, results):
    plant(results, "llama-base", "rouge_l", -0.01)
    args = ("--baseline", baseline, results)
    assert gate(capsys, *args, "--update-baseline", "--tolerance", "cider=0.01,0.05")[0] == 0
    assert gate(capsys, *args)[0] == 0
    tolerances, table = load_baseline(baseline)
    assert tolerances["cider"] == Tolerance(0.01, 0.05)
    assert table[TASK]["llama-base"]["rouge_l"].mean == pytest.approx(0.1928 - 0.01)
    assert not list(baseline.parent.glob(".baseline.json.*"))  # no temp file left behind


def test_bad_inputs(capsys, tmp_path, results):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["regress", *NO_CHECKS, "--baseline", str(bad), str(results)]) == 1
    assert "not JSON" in capsys.readouterr().err
    assert (
        main(["regress", *NO_CHECKS, "--baseline", str(tmp_path / "none.json"), str(results)]) == 1
    )
    assert main(["regress", *NO_CHECKS, "--baseline", str(bad), str(tmp_path / "empty")]) == 1
    with pytest.raises(BaselineError):
        parse_tolerance("bleu4=-1")
    assert parse_tolerance("default=0.001,0.01") == ("default", Tolerance(0.001, 0.01))


def test_committed_embedded_baseline_is_well_formed():
    tolerances, table = load_baseline(REPO / "tests" / "baselines" / "embedded.json")
    default = tolerances["default"]
    variants = table["rocov2_sample"]
    # The gate is coarse on purpose (sampled, trained twins on another CPU may differ), but a
    # pipeline that writes empty captions must still fail it: ROUGE-L and BERTScore fall to 0.
    for metrics in variants.values():
        for name in ("rouge_l", "bertscore_f1"):
            baseline = metrics[name]
            assert baseline.ci95_half is not None, name
            assert baseline.mean > default.allowed(baseline, baseline), (name, baseline)
    embedded = {p.stem for p in (REPO / "variants").glob("tiny-*.yaml")}
    assert set(variants) == embedded
    assert all(m.n_seeds == 3 for metrics in variants.values() for m in metrics.values())


def test_collect_means_over_seeds(results):
    table = collect(results)
    assert table[TASK]["llama-base"]["bleu4"].mean == pytest.approx(0.0049)
    assert table[TASK]["llama-base"]["bleu4"].n_seeds == 3


def with_interval(results: Path, variant: str, metric: str, shift: float, half: float) -> None:
    """Rewrite a variant's records: `metric` shifted by `shift`, with a ±`half` 95 % interval."""
    for i, seed in enumerate(SEEDS):
        scores = {m: vals[i] for m, vals in SCORES[variant].items()}
        record = make_record(variant, seed, scores)
        metrics = dict(record.metrics)
        value = scores[metric] + shift
        metrics[metric] = MetricValue(
            value=value, higher_is_better=True, ci95=(value - half, value + half)
        )
        write_record(
            run_dir(results, TASK, variant, seed), record.model_copy(update={"metrics": metrics})
        )


def test_collect_averages_interval_half_widths(results):
    with_interval(results, "llama-base", "bleu4", 0.0, 0.01)
    table = collect(results)
    assert table[TASK]["llama-base"]["bleu4"].ci95_half == pytest.approx(0.01)
    assert table[TASK]["llama-base"]["rouge_l"].ci95_half is None  # no intervals recorded


def test_ci_tolerance_separates_noise_from_significant_drops(capsys, tmp_path, results):
    with_interval(results, "llama-base", "bleu4", 0.0, 0.01)
    path = tmp_path / "noise.json"
    assert main(["regress", *NO_CHECKS, "--baseline", str(path), str(results), "--update-baseline",
                 "--tolerance", "default=0.0001,0,1"]) == 0  # fmt: skip
    assert json.loads(path.read_text())["tolerances"]["default"]["ci"] == 1.0
    # a drop of 0.012 is inside the difference's interval (0.01·√2 ≈ 0.0141): noise
    with_interval(results, "llama-base", "bleu4", -0.012, 0.01)
    assert gate(capsys, "--baseline", path, results)[0] == 0
    # ... and fails once the tolerance ignores the intervals
    rc, out = gate(capsys, "--baseline", path, results, "--tolerance", "default=0.0001")
    assert rc == 1 and "REGRESSED" in out
    # a drop of 0.016 is beyond it: a significant regression
    with_interval(results, "llama-base", "bleu4", -0.016, 0.01)
    rc, out = gate(capsys, "--baseline", path, results)
    assert rc == 1 and "llama-base" in out and "0.014142" in out


def test_fixed_length_runs_stay_out_of_the_means(results):
    before = collect(results)[TASK]["llama-base"]["bleu4"]
    scores = {m: 0.9 for m in SCORES["llama-base"]}
    speed = make_record("llama-base", 0, scores, measurements={"fixed_new_tokens": 128})
    write_record(run_dir(results, TASK, "llama-base", 0).with_name("seed-0-fixed-128"), speed)
    assert collect(results)[TASK]["llama-base"]["bleu4"] == before


def test_rows_the_gate_cannot_fail_are_named() -> None:
    """A tolerance that lets a metric fall to its worst value (its registered bounds) makes a
    row the gate cannot fail on: each such row is flagged, and one line names the metrics."""
    base = {"t": {"v": {"bleu4": MetricMean(0.001, True, 3), "rouge_l": MetricMean(0.2, True, 3)}}}
    same = {"t": {"v": {"bleu4": MetricMean(0.0, True, 3), "rouge_l": MetricMean(0.2, True, 3)}}}
    loose = compare(base, same, {"default": Tolerance(abs=0.002)})
    assert {c.metric: (c.status, c.blind) for c in loose} == {
        "bleu4": ("ok", True),  # fell to 0, and still within its tolerance
        "rouge_l": ("ok", False),
    }
    summary = blind_summary(loose)
    assert summary is not None and "1 of 2 rows" in summary and "(bleu4)" in summary
    tight = compare(base, same, {"default": Tolerance(abs=0.0005)})
    assert {c.metric: (c.status, c.blind) for c in tight}["bleu4"] == ("regressed", False)
    assert blind_summary(tight) is None
