"""Metric wrappers against direct calls of their reference libraries, and offline WordNet.

The cases are data (tests/metric_cases/<metric>.json): each names predictions, references and
options; every case is scored through our registry and through the library call written out
below, and the two must agree to 1e-9. Each case also stores what the reference library gave
when the case was written (`library`: value and per-pair values, refreshed by
`python tests/metrics/test_metrics.py --write-library-values`), so a library upgrade that changes a
number fails here. Optional `expected` entries pin known values (identical pairs score 1, empty
predictions 0).
"""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.reference_metrics import REFERENCE, official_imageclef
from pydantic import ValidationError

from harness.metrics import METRICS, MetricOptions, compute_metrics, parse_options
from harness.metrics import wordnet as wn
from harness.metrics.bertscore import BERTScoreOptions
from harness.registry import RegistryError

CASES_DIR = Path(__file__).resolve().parents[1] / "metric_cases"
TOL = 1e-9
REPO = Path(__file__).resolve().parents[2]


def _load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            marks = [pytest.mark.slow] if case.get("slow") else []  # large BERTScore cases
            params.append(
                pytest.param(doc["metric"], case, id=f"{path.stem}-{case['name']}", marks=marks)
            )
    return params


# Stored library values are compared to 1e-9, BERTScore's (float32 on whatever CPU) to 1e-6.
STORED_TOL = {"bertscore_f1": 1e-6}


# --- data-driven cases -----------------------------------------------------------------------


def test_every_metric_has_cases_and_a_reference_call() -> None:
    with_cases = {p.values[0] for p in _load_cases()}
    # the concept metrics have no reference library: tests/data/test_concepts.py hand-checks them
    own = {"concept_f1", "modality_acc"}
    # the ImageCLEF evaluator's rules: tests/metrics/test_imageclef.py, cases in imageclef/
    own |= {name for name in METRICS.names() if name.startswith("imageclef_")}
    assert set(METRICS.names()) - own == with_cases == set(REFERENCE)


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

    stored = case["library"]
    tol = STORED_TOL.get(metric, TOL)
    assert ref.value == pytest.approx(stored["value"], abs=tol)
    assert ref.per_sample == pytest.approx(stored["per_sample"], abs=tol)

    expected = case.get("expected", {})
    if "value" in expected:  # float32 models reach 1 only to ~1e-7
        assert ours.value == pytest.approx(expected["value"], abs=1e-6)
    if "per_sample" in expected:
        assert ours.per_sample == pytest.approx(expected["per_sample"], abs=1e-6)
    for i in expected.get("per_sample_zero", []):
        assert ours.per_sample[i] == 0.0


# --- registry and options --------------------------------------------------------------------


def test_registered_metrics_describe_themselves() -> None:
    assert METRICS.names() == [
        "bertscore_f1",
        "bleu1",
        "bleu4",
        "cider",
        "concept_f1",
        "imageclef_alignscore",
        "imageclef_bertscore",
        "imageclef_bleurt",
        "imageclef_factuality",
        "imageclef_relevance",
        "imageclef_rouge_1",
        "imageclef_similarity",
        "meteor",
        "modality_acc",
        "rouge_1",
        "rouge_l",
    ]
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


def test_compute_metrics_gives_n_and_a_seeded_interval() -> None:
    case = json.loads((CASES_DIR / "bleu4.json").read_text(encoding="utf-8"))["cases"]
    many = next(c for c in case if c["name"] == "many_pairs")
    preds, refs = many["predictions"][:60], many["references"][:60]
    requests = [(name, parse_options(name, {})) for name in ("bleu4", "rouge_l", "cider")]
    first = compute_metrics(requests, preds, refs)
    again = compute_metrics(requests, preds, refs)
    other_seed = compute_metrics(requests, preds, refs, seed=1)
    for name, s in first.items():
        assert s.n == 60 and s.ci95 is not None
        lo, hi = s.ci95
        assert lo < s.value < hi, name
        assert again[name].ci95 == s.ci95  # seeded
        assert other_seed[name].ci95 != s.ci95
    none = compute_metrics(requests, preds, refs, resamples=0)
    assert all(s.ci95 is None and s.n == 60 for s in none.values())


def _explicit_resample(items: list[str], counts: Any) -> list[str]:
    return [x for x, k in zip(items, counts, strict=True) for _ in range(int(k))]


@pytest.mark.parametrize("name", ["bleu4", "bleu1", "cider"])
def test_corpus_metric_resampling_equals_the_library_on_the_resampled_pairs(name: str) -> None:
    """A corpus metric's statistic on a resample is the library's value on the pairs drawn."""
    from harness.metrics import stats

    doc = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    case = next(c for c in doc["cases"] if c["name"] == "many_pairs")
    preds, refs = case["predictions"][:80], case["references"][:80]
    preds[3] = ""  # an empty prediction stays in the corpus
    metric = METRICS.get(name)
    statistic = metric.statistic(preds, refs)
    assert stats.observed(statistic, len(preds)) == pytest.approx(
        REFERENCE[name](preds, refs, MetricOptions()).value, abs=1e-12
    )
    counts = next(stats.resample_counts(len(preds), 3, seed=7))
    values = statistic(counts)
    for row, value in zip(counts, values, strict=True):
        drawn_p, drawn_r = _explicit_resample(preds, row), _explicit_resample(refs, row)
        assert value == pytest.approx(
            REFERENCE[name](drawn_p, drawn_r, MetricOptions()).value, abs=1e-12
        )


def test_mean_metrics_resample_their_per_pair_scores() -> None:
    import numpy as np

    rouge = METRICS.get("rouge_l")
    with pytest.raises(ValueError, match="per-pair scores"):
        rouge.statistic(["a"], ["a"])
    statistic = rouge.statistic(["a", "b"], ["a", "c"], per_sample=[1.0, 0.0])
    assert statistic(np.array([[2.0, 0.0], [0.0, 2.0]])).tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "text",
    [
        "Axial T2-weighted MRI at 1.5 T shows a 3.5 × 2.1 cm lesion at C5–C6.",
        " CT (arrow) of the “left” kidney: 12mm stone; see Fig. 2a/2b.",
        "Ultrasound — 4th week, Dawson’s fingers, 90% stenosis, ٣ Arabic-Indic digit",
        "",
        "   ...   ",
    ],
)
def test_imageclef_normalisation_matches_the_official_preprocessing(text: str) -> None:
    from harness.specs.task import TextCleaning
    from harness.text import imageclef_normalise

    assert imageclef_normalise(text) == official_imageclef(text)
    raw = TextCleaning(strip=False, collapse_whitespace=False, imageclef=True)
    assert raw.apply(text) == official_imageclef(text)
    tidy = TextCleaning(imageclef=True)  # then the task's whitespace cleaning
    assert tidy.apply(text) == " ".join(official_imageclef(text).split())
    assert TextCleaning().apply(text) == " ".join(text.split())  # off by default


def test_imageclef_normalisation_examples() -> None:
    from harness.text import imageclef_normalise

    assert imageclef_normalise("CT, 3.5 cm (C5–C6)!") == "ct numbernumber cm cnumber–cnumber"


def test_profiles_name_their_bertscore_backbones() -> None:
    from harness.metrics.bertscore import BERTScoreOptions
    from harness.metrics.profiles import PROFILES, default_metrics, profile_requests

    heavy = {name for name in METRICS.names() if name.startswith("imageclef_")}
    assert set(default_metrics()) == set(METRICS.names()) - heavy
    assert dict(PROFILES["imageclef"].routes) == {
        "bertscore_f1": "imageclef_bertscore",
        "rouge_1": "imageclef_rouge_1",
    }
    backbones = {name: p.bertscore.model_type for name, p in PROFILES.items()}
    assert backbones == {
        "paper": "roberta-large",
        "imageclef": "microsoft/deberta-xlarge-mnli",
        "offline": "bundled:all-MiniLM-L6-v2",
    }
    for p in PROFILES.values():
        assert p.bertscore.num_layers is None or p.name == "offline"
        assert not p.bertscore.idf and not p.bertscore.rescale_with_baseline
    assert [p.imageclef_text for p in PROFILES.values()] == [False, True, False]
    requests = dict(profile_requests("imageclef", ["bleu4", "bertscore_f1"]))
    assert requests["bleu4"] == MetricOptions()
    assert isinstance(requests["bertscore_f1"], BERTScoreOptions)
    assert requests["bertscore_f1"].model_type == "microsoft/deberta-xlarge-mnli"
    with pytest.raises(ValueError, match="unknown profile"):
        profile_requests("coco", ["bleu4"])


def test_missing_bertscore_backbone_is_one_clear_line() -> None:
    from harness.metrics import MetricUnavailable

    opts = parse_options(
        "bertscore_f1", {"model_type": "rocobench-test/absent-encoder", "num_layers": 1}
    )
    with pytest.raises(MetricUnavailable) as err:
        compute_metrics([("bertscore_f1", opts)], ["a"], ["a"])
    message = str(err.value)
    assert "\n" not in message
    assert "rocobench-test/absent-encoder" in message and "hf download" in message
    assert "bundled:all-MiniLM-L6-v2" in message


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
    from harness.metrics import bertscore as metrics

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
        "from harness.metrics.base import compute_metrics, parse_options; "
        "o = parse_options('bertscore_f1', {'model_type': 'bundled:all-MiniLM-L6-v2'}); "
        "print(compute_metrics([('bertscore_f1', o)], ['Chest CT.'], ['Chest CT.'])"
        "['bertscore_f1'].value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(1.0, abs=1e-6)


# --- refreshing the stored library values ------------------------------------------------------


def write_library_values() -> None:
    """Store what each reference call gives for every case (after a deliberate library update)."""
    for path in sorted(CASES_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        for case in doc["cases"]:
            if "raises" in case:
                continue
            options = parse_options(doc["metric"], case["options"])
            ref = REFERENCE[doc["metric"]](case["predictions"], case["references"], options)
            case["library"] = {"value": ref.value, "per_sample": ref.per_sample}
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-library-values"]:
        sys.exit("usage: python tests/metrics/test_metrics.py --write-library-values")
    sys.path.insert(0, str(REPO))
    write_library_values()
