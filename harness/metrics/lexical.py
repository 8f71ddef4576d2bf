"""Lexical overlap: BLEU (sacrebleu), ROUGE (rouge-score) and METEOR (NLTK with WordNet 3.0)."""

from __future__ import annotations

import functools
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.metrics.base import (
    SHARE,
    Compute,
    Detail,
    MetricOptions,
    MetricScore,
    References,
    Resampler,
    metric,
)

if TYPE_CHECKING:
    import numpy as np

    from harness.metrics.stats import Statistic


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
    def compute(predictions: Sequence[str], refs: References, _: MetricOptions) -> MetricScore:
        from sacrebleu.metrics import BLEU

        bleu, stats = _bleu_statistics(predictions, refs.texts, order)
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
    def resampler(predictions: Sequence[str], refs: References, _: MetricOptions) -> Statistic:
        import numpy as np

        stats = np.asarray(_bleu_statistics(predictions, refs.texts, order)[1], dtype=np.float64)

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
    label="BLEU-4",
    order=20,
    bounds=SHARE,
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
    label="BLEU-1",
    order=10,
    bounds=SHARE,
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
    def compute(predictions: Sequence[str], refs: References, _: MetricOptions) -> MetricScore:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([kind], use_stemmer=False)
        # rouge-score returns an int 0 when a side has no tokens.
        per_sample = [
            float(scorer.score(r, p)[kind].fmeasure)
            for p, r in zip(predictions, refs.texts, strict=True)
        ]
        return MetricScore(statistics.fmean(per_sample), per_sample, {"use_stemmer": False})

    return compute


_ROUGE_TEXT = (
    "Mean over pairs of the F-measure of rouge_score.rouge_scorer.RougeScorer(['{kind}'], "
    "use_stemmer=False).score(reference, prediction) (rouge-score's tokeniser: lower-cased, "
    "non-alphanumerics removed)."
)
for _name, _kind, _label, _order in (
    ("rouge_1", "rouge1", "ROUGE-1", 30),
    ("rouge_l", "rougeL", "ROUGE-L", 40),
):
    metric(
        _name,
        label=_label,
        order=_order,
        bounds=SHARE,
        description=_ROUGE_TEXT.format(kind=_kind),
    )(_rouge(_kind))


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
    label="METEOR",
    order=50,
    bounds=SHARE,
    description=(
        "Mean over pairs of nltk.translate.meteor_score.meteor_score([wordpunct_tokenize("
        "reference)], wordpunct_tokenize(prediction)) with NLTK's defaults (alpha 0.9, beta 3, "
        "gamma 0.5, lower-casing, Porter stemmer) and WordNet 3.0 synonyms."
    ),
)
def _meteor(predictions: Sequence[str], refs: References, _: MetricOptions) -> MetricScore:
    import nltk
    from nltk.tokenize import wordpunct_tokenize
    from nltk.translate.meteor_score import meteor_score

    from harness.metrics.wordnet import WORDNET_VERSION, wordnet_reader

    # raises if WordNet 3.0 is unavailable: no silent fallback
    stemmer, wordnet = _memo_stemmer(), _memo_wordnet(wordnet_reader())
    per_sample = [
        float(
            meteor_score(
                [wordpunct_tokenize(r)], wordpunct_tokenize(p), stemmer=stemmer, wordnet=wordnet
            )
        )
        for p, r in zip(predictions, refs.texts, strict=True)
    ]
    details: dict[str, Detail] = {"wordnet": WORDNET_VERSION, "nltk": nltk.__version__}
    return MetricScore(statistics.fmean(per_sample), per_sample, details)
