"""Metric wrappers against direct calls of their reference libraries, and offline WordNet.

The cases are data (tests/metric_cases/<metric>.json): each names predictions, references and
options; every case is scored through our registry and through the library call written out
below, and the two must agree to 1e-9. Optional `expected` entries pin known values (identical
pairs score 1, empty predictions 0).
"""

from __future__ import annotations

import builtins
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness import wordnet as wn
from harness.metrics import (
    METRICS,
    BERTScoreOptions,
    MetricOptions,
    MetricScore,
    bundled_model_path,
    compute_metrics,
    parse_options,
)
from harness.registry import RegistryError

CASES_DIR = Path(__file__).parent / "metric_cases"
TOL = 1e-9
REPO = Path(__file__).resolve().parents[1]


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            params.append(pytest.param(doc["metric"], case, id=f"{path.stem}-{case['name']}"))
    return params


# --- the reference library calls, written out ------------------------------------------------


def reference_bleu4(preds: list[str], refs: list[str], _: MetricOptions) -> MetricScore:
    import sacrebleu

    corpus = sacrebleu.corpus_bleu(preds, [refs]).score / 100
    per = [sacrebleu.sentence_bleu(p, [r]).score / 100 for p, r in zip(preds, refs, strict=True)]
    return MetricScore(corpus, per, {})


def reference_rouge_l(preds: list[str], refs: list[str], _: MetricOptions) -> MetricScore:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)]
    return MetricScore(statistics.fmean(per), per, {})


def reference_meteor(preds: list[str], refs: list[str], _: MetricOptions) -> MetricScore:
    from nltk.tokenize import wordpunct_tokenize
    from nltk.translate.meteor_score import meteor_score

    wn.ensure_wordnet()  # puts WordNet 3.0 first on NLTK's path; the call below uses defaults
    per = [
        meteor_score([wordpunct_tokenize(r)], wordpunct_tokenize(p))
        for p, r in zip(preds, refs, strict=True)
    ]
    return MetricScore(statistics.fmean(per), per, {})


def reference_bertscore_f1(preds: list[str], refs: list[str], opts: MetricOptions) -> MetricScore:
    import bert_score
    from bert_score.utils import get_idf_dict, get_tokenizer

    assert isinstance(opts, BERTScoreOptions)
    path = bundled_model_path(opts.model_type.removeprefix("bundled:"))
    layers = 6 if opts.num_layers is None else opts.num_layers
    # bert-score gives F1 0 to a pair with an empty side but, under transformers 5, crashes on
    # one: score the other pairs, with idf weights from all references as score(idf=True) does.
    keep = [i for i, (p, r) in enumerate(zip(preds, refs, strict=True)) if p.strip() and r.strip()]
    idf: bool | dict[int, float] = opts.idf
    if opts.idf and len(keep) < len(preds):
        idf = get_idf_dict(refs, get_tokenizer(path), nthreads=0)
    per = [0.0] * len(preds)
    if keep:
        _, _, f1 = bert_score.score(
            [preds[i] for i in keep],
            [refs[i] for i in keep],
            model_type=path,
            num_layers=layers,
            idf=idf,
            lang=opts.lang,
            batch_size=opts.batch_size,
            rescale_with_baseline=opts.rescale_with_baseline,
        )
        for i, value in zip(keep, f1.tolist(), strict=True):
            per[i] = value
    return MetricScore(statistics.fmean(per), per, {})


REFERENCE = {
    "bleu4": reference_bleu4,
    "rouge_l": reference_rouge_l,
    "meteor": reference_meteor,
    "bertscore_f1": reference_bertscore_f1,
}


# --- data-driven cases -----------------------------------------------------------------------


def test_every_metric_has_cases_and_a_reference_call() -> None:
    with_cases = {p.values[0] for p in _load_cases()}
    assert set(METRICS.names()) == with_cases == set(REFERENCE)


@pytest.mark.parametrize(("metric", "case"), _load_cases())
def test_case_matches_reference_library(metric: str, case: dict[str, Any]) -> None:
    options = parse_options(metric, case["options"])
    preds, refs = case["predictions"], case["references"]
    if "raises" in case:
        with pytest.raises(getattr(builtins, case["raises"])):
            compute_metrics([(metric, options)], preds, refs)
        return

    ours = compute_metrics([(metric, options)], preds, refs)[metric]
    ref = REFERENCE[metric](preds, refs, options)

    assert isinstance(ours.value, float)
    assert ours.value == pytest.approx(ref.value, abs=TOL)
    assert ref.per_sample is not None and ours.per_sample is not None
    assert len(ours.per_sample) == len(preds)
    assert ours.per_sample == pytest.approx(ref.per_sample, abs=TOL)
    assert all(isinstance(v, float) for v in ours.per_sample)

    expected = case.get("expected", {})
    if "value" in expected:  # float32 models reach 1 only to ~1e-7
        assert ours.value == pytest.approx(expected["value"], abs=1e-6)
    if "per_sample" in expected:
        assert ours.per_sample == pytest.approx(expected["per_sample"], abs=1e-6)
    for i in expected.get("per_sample_zero", []):
        assert ours.per_sample[i] == 0.0


# --- registry and options --------------------------------------------------------------------


def test_registered_metrics_describe_themselves() -> None:
    assert METRICS.names() == ["bertscore_f1", "bleu4", "meteor", "rouge_l"]
    for name in METRICS:
        m = METRICS.get(name)
        assert m.higher_is_better and len(m.description) > 40


def test_unknown_metric_suggests_nearest() -> None:
    with pytest.raises(RegistryError, match=r"did you mean 'bleu4'"):
        parse_options("bleu", {})
    with pytest.raises(RegistryError, match=r"'meteor'"):
        compute_metrics([("meteorr", MetricOptions())], ["a"], ["a"])


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("bleu4", {"tokenize": "intl"}),  # sacrebleu's defaults are the definition
        ("rouge_l", {"use_stemmer": True}),
        ("bertscore_f1", {}),  # the backbone is never implicit
        ("bertscore_f1", {"model_type": "bundled:all-MiniLM-L6-v2", "num_layer": 6}),
        ("bertscore_f1", {"model_type": "bundled:all-MiniLM-L6-v2", "num_layers": -1}),
        ("bertscore_f1", {"model_type": "bundled:all-MiniLM-L6-v2", "batch_size": 0}),
    ],
)
def test_bad_options_raise(name: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_options(name, raw)


def test_options_are_frozen_and_typed() -> None:
    opts = parse_options("bertscore_f1", {"model_type": "bundled:all-MiniLM-L6-v2"})
    assert isinstance(opts, BERTScoreOptions)
    assert (opts.num_layers, opts.idf, opts.rescale_with_baseline, opts.batch_size) == (
        None,
        False,
        False,
        64,
    )
    with pytest.raises(ValidationError):
        opts.idf = True  # type: ignore[misc]
    with pytest.raises(TypeError, match="BERTScoreOptions"):
        METRICS.get("bertscore_f1").score(["a"], ["a"], MetricOptions())


def test_compute_metrics_checks_inputs() -> None:
    opts = MetricOptions()
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_metrics([("rouge_l", opts)], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics([("rouge_l", opts)], [], [])
    with pytest.raises(TypeError, match="prediction 1 is NoneType"):
        compute_metrics([("rouge_l", opts)], ["a", None], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="more than once"):
        compute_metrics([("rouge_l", opts), ("rouge_l", opts)], ["a"], ["a"])


def test_compute_metrics_scores_all_requests() -> None:
    preds = ["Chest X-ray showing a protruding mass.", ""]
    refs = ["Chest radiography shows aneurysm as protruding mass.", "Lung image with pneumonia."]
    requests = [(name, parse_options(name, {})) for name in ("bleu4", "rouge_l", "meteor")]
    scores = compute_metrics(requests, preds, refs)
    assert list(scores) == ["bleu4", "rouge_l", "meteor"]
    assert scores["bleu4"].details["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert scores["meteor"].details["wordnet"] == "3.0"
    for s in scores.values():
        assert s.per_sample is not None and s.per_sample[1] == 0.0


def test_import_is_light() -> None:
    code = (
        "import sys, harness.metrics; "
        "print(sorted(m for m in ('torch', 'nltk', 'bert_score', 'sacrebleu', 'rouge_score', "
        "'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- METEOR and WordNet ----------------------------------------------------------------------


def test_meteor_matches_wordnet_synonyms() -> None:
    # NLTK matches synonyms after Porter stemming, so the pair must survive stemming unchanged.
    meteor = METRICS.get("meteor")
    ref = ["Chest CT shows a neoplasm."]
    synonym = meteor.score(["Chest CT shows a tumor."], ref).value
    unrelated = meteor.score(["Chest CT shows a kidney."], ref).value
    assert synonym > unrelated > 0


@pytest.fixture
def nltk_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A private copy of nltk.data.path, so tmp data dirs do not outlive the test."""
    import nltk

    path = list(nltk.data.path)
    monkeypatch.setattr(nltk.data, "path", path)
    return path


def test_ensure_wordnet_in_tmp_dir_is_idempotent(tmp_path: Path, nltk_path: list[str]) -> None:
    data_dir = tmp_path / "nltk_data"
    assert wn.ensure_wordnet(data_dir) == data_dir
    corpus = data_dir / "corpora" / "wordnet"
    assert sorted(p.name for p in corpus.iterdir()) == sorted((*wn.SOURCE_FILES, "lexnames"))
    lexnames = (corpus / "lexnames").read_text().splitlines()
    assert len(lexnames) == 45
    assert lexnames[0] == "00\tadj.all\t3" and lexnames[44] == "44\tadj.ppl\t3"
    assert nltk_path[0] == str(data_dir)
    reader = wn.wordnet_reader(data_dir)
    assert Path(reader.root.path).resolve() == corpus.resolve()
    assert reader.get_version() == "3.0"
    assert reader.synset("dog.n.01").lexname() == "noun.animal"  # lexnames read correctly

    stamps = {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()}
    assert wn.ensure_wordnet(data_dir) == data_dir
    assert {p.name: p.stat().st_mtime_ns for p in corpus.iterdir()} == stamps
    assert nltk_path.count(str(data_dir)) == 1
    assert [p.name for p in (data_dir / "corpora").iterdir()] == ["wordnet"]  # no leftovers

    # A ready copy is used even when the source is gone; an incomplete one is rebuilt.
    assert wn.ensure_wordnet(data_dir, source=tmp_path / "absent") == data_dir
    (corpus / "lexnames").unlink()
    wn.ensure_wordnet(data_dir)
    assert (corpus / "lexnames").read_text() == wn.lexnames_text()


def test_missing_source_raises_with_install_hint(
    tmp_path: Path, nltk_path: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(wn.DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(wn.SOURCE_ENV, str(tmp_path / "absent"))
    with pytest.raises(wn.WordNetMissing) as err:
        wn.ensure_wordnet()
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get install wordnet-base wordnet-sense-index" in message
    assert "make install" in message
    assert not (tmp_path / "data" / "corpora" / "wordnet").exists()
    # METEOR does not fall back to exact matching: it fails the same way.
    with pytest.raises(wn.WordNetMissing):
        METRICS.get("meteor").score(["a b"], ["a b"])


def test_incomplete_source_names_missing_files(tmp_path: Path) -> None:
    source = tmp_path / "wordnet"
    source.mkdir()
    for name in wn.SOURCE_FILES:
        if name != "index.sense":  # what a machine without wordnet-sense-index has
            (source / name).write_text("x")
    with pytest.raises(wn.WordNetMissing, match=r"lacks index\.sense"):
        wn.ensure_wordnet(tmp_path / "data", source=source)


def test_interrupted_copy_leaves_no_half_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def failing_copy(src: Path, dst: Path) -> None:
        calls.append(src)
        if len(calls) == 3:
            raise OSError("disk full")
        Path(dst).write_bytes(Path(src).read_bytes())

    monkeypatch.setattr(wn.shutil, "copyfile", failing_copy)
    data_dir = tmp_path / "data"
    with pytest.raises(OSError, match="disk full"):
        wn.ensure_wordnet(data_dir)
    assert list((data_dir / "corpora").iterdir()) == []


# --- BERTScore -------------------------------------------------------------------------------


def test_bertscore_details_and_model_cache() -> None:
    from harness import metrics

    opts = parse_options("bertscore_f1", {"model_type": "bundled:all-MiniLM-L6-v2"})
    first = compute_metrics([("bertscore_f1", opts)], ["CT of the chest."], ["Chest CT."])
    loaded = dict(metrics._SCORERS)
    second = compute_metrics([("bertscore_f1", opts)], ["CT of the chest."], ["Chest CT."])
    # The model is loaded once per process: same scorers, same objects.
    assert loaded == metrics._SCORERS
    assert all(metrics._SCORERS[key] is scorer for key, scorer in loaded.items())
    details = second["bertscore_f1"].details
    assert details["backbone"] == "bundled:all-MiniLM-L6-v2"
    assert details["num_layers"] == 6
    assert details["idf"] is False and details["rescale_with_baseline"] is False
    assert str(details["hash"]).startswith("bundled:all-MiniLM-L6-v2_L6_no-idf_version=")
    assert first["bertscore_f1"].value == second["bertscore_f1"].value


def test_bertscore_unknown_hub_model_needs_layers() -> None:
    opts = parse_options("bertscore_f1", {"model_type": "some-org/unknown-encoder"})
    with pytest.raises(ValueError, match="set num_layers"):
        compute_metrics([("bertscore_f1", opts)], ["a"], ["a"])
    opts = parse_options("bertscore_f1", {"model_type": "bundled:nope"})
    with pytest.raises(ValueError, match="unknown bundled backbone"):
        compute_metrics([("bertscore_f1", opts)], ["a"], ["a"])


def test_bertscore_bundled_loads_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from harness.metrics import compute_metrics, parse_options; "
        "o = parse_options('bertscore_f1', {'model_type': 'bundled:all-MiniLM-L6-v2'}); "
        "print(compute_metrics([('bertscore_f1', o)], ['Chest CT.'], ['Chest CT.'])"
        "['bertscore_f1'].value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(1.0, abs=1e-6)
