"""CIDEr-D (pycocoevalcap), with an exact bootstrap over resampled pairs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.metrics.base import (
    Detail,
    MetricOptions,
    MetricScore,
    References,
    metric,
)

if TYPE_CHECKING:
    import numpy as np

    from harness.metrics.stats import Statistic

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
    label="CIDEr",
    order=70,
    bounds=(0.0, 10.0),  # pycocoevalcap's CIDEr-D is ×10
    description=(
        "pycocoevalcap.cider.Cider().compute_score({i: [tok(reference_i)]}, {i: [tok("
        "prediction_i)]}) (CIDEr-D as in the COCO caption evaluation: n-grams 1-4, sigma 6, "
        "x10; document frequencies from the evaluated references, so the value depends on the "
        "whole set), where tok(s) is the lowercase nltk wordpunct_tokenize tokens of s that "
        "contain a letter or digit, joined by spaces (pycocoevalcap's PTB tokenizer needs "
        "Java). Per pair: that pair's score in the same computation; the value is their mean."
    ),
    resampler=lambda p, r, _: _cider_statistic(p, r.texts),
)
def _cider(predictions: Sequence[str], references: References, _: MetricOptions) -> MetricScore:
    from pycocoevalcap.cider.cider import Cider

    refs = {i: [cider_tokens(r)] for i, r in enumerate(references.texts)}
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
