"""Concept extractor and the clinical metrics (concept_f1, modality_acc): JSON cases, agreement
with ROCOv2's own concepts on the bundled real captions, records, `rocobench score`, the page."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from harness.data.concepts import (
    ABBREVIATIONS,
    MANUAL_CUIS,
    MODALITIES,
    MODALITY_TERMS,
    extract_concepts,
    extract_modality,
    modality_of_concepts,
    read_cui_map,
)
from harness.metrics import METRICS, References, compute_metrics, parse_options

CASES = Path(__file__).resolve().parents[1] / "concept_cases"
SOURCE = Path(__file__).resolve().parents[2] / "tasks/data/rocov2_sample/source"

# Measured on the bundled real captions (see README, Metrics); the floors sit a little below, so a
# change that breaks the extractor fails while a small improvement or regression is tolerated.
FLOORS = {
    "rocov2_modality_agreement": 0.78,  # measured 140 / 174 = 0.805
    "rocov2_modality_precision": 0.97,  # measured 140 / 141 = 0.993
    "rocov2_manual_recall": 0.50,  # measured 140 / 263 = 0.532
    "rocov2_manual_precision": 0.70,  # measured 140 / 192 = 0.729
    "roco_v1_precision": 0.45,  # measured 0.48
    "roco_v1_recall": 0.44,  # measured 0.47
}


def _load(name: str) -> list[dict[str, Any]]:
    return json.loads((CASES / name).read_text(encoding="utf-8"))["cases"]


# --- extractor -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _load("extractor.json"), ids=lambda c: c["text"][:40] or "empty")
def test_extractor_case(case: dict[str, Any]) -> None:
    names = read_cui_map()
    assert sorted(names[c] for c in case["concepts"]) == sorted(case["names"])  # case is right
    assert sorted(extract_concepts(case["text"])) == sorted(case["concepts"]), case["why"]
    assert extract_modality(case["text"]) == case["modality"], case["why"]


def test_tables_name_cuis_of_the_map_under_their_canonical_names() -> None:
    names = read_cui_map()
    assert len(names) == 1935
    assert set(ABBREVIATIONS.values()) <= set(names)
    for cui, name in MANUAL_CUIS.items():
        assert names[cui] == name
    for m in MODALITIES:
        assert names[m.cui] == m.name
        assert MANUAL_CUIS[m.cui] == m.name
        assert m.label in MODALITY_TERMS


def test_matching_is_longest_first_without_overlap() -> None:
    # "magnetic resonance angiography" is one concept; its parts are not reported as well
    assert extract_concepts("magnetic resonance angiography") == {"C0243032"}
    assert extract_modality("CT angiography") == "ct"
    assert extract_modality("MR angiography") == "mri"
    assert extract_modality("PET/CT") == "pet"


# --- agreement with ROCOv2's own concepts ------------------------------------------------------


def _rocov2_rows() -> list[tuple[str, list[str]]]:
    folder = SOURCE / "rocov2_test_sample"
    with (folder / "test_captions_first177.csv").open(encoding="utf-8", newline="") as f:
        captions = {r["ID"]: r["Caption"] for r in csv.DictReader(f)}
    with (folder / "test_concepts_manual_first177.csv").open(encoding="utf-8", newline="") as f:
        manual = {r["ID"]: [c for c in r["CUIs"].split(";") if c] for r in csv.DictReader(f)}
    assert len(captions) == len(manual) == 175
    return [(captions[i], manual[i]) for i in captions]


def agreement() -> dict[str, float]:
    """The extractor on the *reference* captions against the dataset's concepts."""
    rows = _rocov2_rows()
    with_modality = [(text, modality_of_concepts(cuis)) for text, cuis in rows]
    with_modality = [(text, m) for text, m in with_modality if m is not None]
    found = [(extract_modality(text), m) for text, m in with_modality]
    right = sum(f == m for f, m in found)
    named = sum(f is not None for f, _ in found)
    # ROCOv2's manual concepts: recall of them, precision among found manual-vocabulary CUIs
    manual = frozenset(MANUAL_CUIS)
    tp = fn = fp = 0
    for text, cuis in rows:
        gold, got = set(cuis), extract_concepts(text) & manual
        tp, fn, fp = tp + len(gold & got), fn + len(gold - got), fp + len(got - gold)
    # ROCO v1's automatically extracted CUIs (those in ROCOv2's map) on the 400 bundled captions
    names = read_cui_map()
    folder = SOURCE / "roco_v1_test"
    captions = dict(
        line.split("\t", 1)
        for line in (folder / "captions_used.txt").read_text(encoding="utf-8").splitlines()
    )
    v1_tp = v1_fp = v1_fn = 0
    for line in (folder / "cuis_used.txt").read_text(encoding="utf-8").splitlines():
        sample_id, *cuis = line.split("\t")
        gold = {c for c in cuis if c in names}
        got = extract_concepts(captions[sample_id])
        v1_tp += len(gold & got)
        v1_fp += len(got - gold)
        v1_fn += len(gold - got)
    assert len(captions) == 400
    return {
        "rocov2_modality_agreement": right / len(found),
        "rocov2_modality_precision": right / named,
        "rocov2_manual_recall": tp / (tp + fn),
        "rocov2_manual_precision": tp / (tp + fp),
        "roco_v1_precision": v1_tp / (v1_tp + v1_fp),
        "roco_v1_recall": v1_tp / (v1_tp + v1_fn),
    }


def test_agreement_with_rocov2_concepts_stays_above_the_measured_floor() -> None:
    measured = agreement()
    low = {k: round(v, 3) for k, v in measured.items() if v < FLOORS[k]}
    assert not low, f"extractor agreement fell below its floor: {low} (floors {FLOORS})"


# --- metrics ----------------------------------------------------------------------------------


def _score(case: dict[str, Any], resamples: int = 0) -> dict[str, Any]:
    requests = [
        ("concept_f1", parse_options("concept_f1", case["options"])),
        ("modality_acc", parse_options("modality_acc", {})),
    ]
    given = case.get("concepts")
    concepts = None if given is None else tuple(None if c is None else tuple(c) for c in given)
    references = References(tuple(case["references"]), concepts)
    return compute_metrics(requests, case["predictions"], references, resamples=resamples)


@pytest.mark.parametrize("case", _load("metrics.json"), ids=lambda c: c["name"])
def test_metric_values_on_hand_checked_cases(case: dict[str, Any]) -> None:
    scores = _score(case)
    f1, acc = scores["concept_f1"], scores["modality_acc"]
    assert f1.value == pytest.approx(case["concept_f1"]), case["why"]
    assert f1.details["n_scored"] == case["concept_f1_scored"]
    assert f1.details["reference_concepts"] == case["reference_concepts"]
    assert f1.details["vocabulary"] == case["options"].get("vocabulary", "map")
    assert acc.value == pytest.approx(case["modality_acc"]), case["why"]
    assert acc.details["n_scored"] == case["modality_acc_scored"]
    assert acc.details["reference_modality"] == case["reference_modality"]
    assert json.loads(str(acc.details["confusion"])) == case["confusion"]


def test_bootstrap_interval_covers_the_value_and_skips_images() -> None:
    case = _load("metrics.json")[0]
    scores = _score(case, resamples=200)
    for s in scores.values():
        assert s.ci95 is not None and s.n == 4
        assert 0.0 <= s.ci95[0] <= s.value <= s.ci95[1] <= 1.0
    # the resampled statistic on the observed counts is the value (skipped images weigh 0)
    import numpy as np

    metric = METRICS.get("concept_f1")
    statistic = metric.statistic(
        case["predictions"], case["references"], parse_options("concept_f1", {})
    )
    assert statistic(np.ones((1, 4)))[0] == pytest.approx(case["concept_f1"])


def test_reference_concepts_must_pair_with_the_references() -> None:
    case = _load("metrics.json")[1]
    with pytest.raises(ValueError, match="3 reference concept lists for 4 references"):
        _score({**case, "concepts": case["concepts"][:3]})


def test_unknown_vocabulary_is_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        parse_options("concept_f1", {"vocabulary": "umls"})


def test_bundled_task_carries_the_manual_concepts(repo_root: Path) -> None:
    from harness.data.dataset import load_split
    from harness.specs.task import load_task

    task = load_task(repo_root / "tasks" / "rocov2_sample.yaml")
    assert task.doc_to_concepts == "cui"
    assert {m.metric for m in task.metric_list} >= {"concept_f1", "modality_acc"}
    evalset = load_split(task)
    assert evalset.concepts is not None and len(evalset.concepts) == len(evalset) == 64
    assert evalset.concepts[0] == ["C0040405"]  # ROCOv2_2023_test_000001, a CT
    for name in ("rocov2_caption", "rocov2_paper327"):
        paper = load_task(repo_root / "tasks" / f"{name}.yaml")
        assert {m.metric for m in paper.metric_list} >= {"concept_f1", "modality_acc"}


# --- rocobench score and the page ------------------------------------------------------------


def test_score_cli_reads_optional_concepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from harness.cli import main

    case = _load("metrics.json")[1]
    pairs = tmp_path / "pairs.jsonl"
    lines = []
    for i, (p, r, c) in enumerate(
        zip(case["predictions"], case["references"], case["concepts"], strict=True)
    ):
        row: dict[str, Any] = {"id": i, "prediction": p, "reference": r}
        if c is not None:
            row["concepts"] = c
        lines.append(json.dumps(row))
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["score", "--pairs", str(pairs), "--metrics", "concept_f1,modality_acc", "--json"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    # `rocobench score` uses each metric's default options: vocabulary "map"
    expected = _score({**case, "options": {}})
    assert got == {k: pytest.approx(v.value) for k, v in expected.items()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "prediction": "", "reference": "", "concepts": "C0040405"}\n')
    assert main(["score", "--pairs", str(bad), "--metrics", "concept_f1"]) == 2
    assert "concepts: expected a list of strings" in capsys.readouterr().err


def test_variant_page_shows_the_confusion_matrix_escaped(tmp_path: Path) -> None:
    from fixtures.site_records import fixture_records, write_all

    from harness.records.record import MetricValue
    from leaderboard import render_site

    records = []
    for r in fixture_records():
        # a different confusion per seed: the same column all the same, counts summed per row
        confusion = {"ct": {"ct": 2 + r.seed, "mri": 1}, "<b>x</b>": {"none": 1}}
        details = {"extractor": "x", "n_scored": 4, "confusion": json.dumps(confusion)}
        metrics = {**r.metrics, "modality_acc": MetricValue(value=0.5, details=details)}
        records.append(r.model_copy(update={"metrics": metrics}))
    write_all(tmp_path / "results", records, samples=True)
    index = render_site(tmp_path / "results", tmp_path / "site")
    html = index.read_text(encoding="utf-8")
    # a cell in every row that has ROUGE-L: one column, not one per confusion matrix
    assert html.count('data-column="modality_acc"') == html.count('data-column="rouge_l"') > 0
    assert "modality_acc~" not in html
    seeds = [r.seed for r in records if r.variant == records[0].variant]
    page = next(
        p.read_text(encoding="utf-8")
        for p in (tmp_path / "site" / "v").glob("*.html")
        if 'data-confusion="modality_acc"' in p.read_text(encoding="utf-8")
    )
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert f'<td class="num">{sum(2 + s for s in seeds)}</td>' in page
    assert "Modality acc." in page
