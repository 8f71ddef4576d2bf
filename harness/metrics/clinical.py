"""Clinical metrics: UMLS concept F1 and imaging-modality accuracy (ROCOv2's CUI map)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from harness.metrics.base import SHARE, Detail, MetricOptions, MetricScore, References, metric

if TYPE_CHECKING:
    from harness.metrics.stats import Statistic


# --- clinical concepts -------------------------------------------------------------------------


class ConceptF1Options(MetricOptions):
    # "manual": both sides restricted to ROCOv2's manual concepts (concepts.MANUAL_CUIS),
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
    predictions: Sequence[str], references: References, options: MetricOptions
) -> tuple[list[float | None], str]:
    from harness.data.concepts import MANUAL_CUIS, extract_concepts, source_label

    assert isinstance(options, ConceptF1Options)
    given = references.concepts_or_none()
    keep = frozenset(MANUAL_CUIS) if options.vocabulary == "manual" else None
    scores: list[float | None] = []
    for pred, ref, dataset in zip(predictions, references.texts, given, strict=True):
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
    label="Concept F1",
    order=80,
    bounds=SHARE,
    description=(
        "Mean over images of the F1 between the UMLS concepts (CUIs of ROCOv2's cui_mapping.csv) "
        "found in the prediction by harness.data.concepts' dictionary matcher and the reference "
        "concepts: the dataset's CUIs where the task has them (doc_to_concepts), else the same "
        "matcher on the reference caption (detail reference_concepts). Images without a "
        "reference concept are skipped (n_scored); an empty prediction scores 0. vocabulary "
        "'manual' restricts both sides to ROCOv2's manual modality / body-region / direction "
        "concepts. No negation handling."
    ),
    resampler=lambda p, r, o: _skipping_mean_statistic(_concept_f1_scores(p, r, o)[0]),
)
def _concept_f1(
    predictions: Sequence[str], references: References, options: MetricOptions
) -> MetricScore:
    from harness.data.concepts import EXTRACTOR

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
    predictions: Sequence[str], references: References
) -> tuple[list[tuple[str, str] | None], str]:
    """Per image (reference modality, predicted modality or "none"), None without a reference
    modality; and where the reference modalities came from."""
    from harness.data.concepts import extract_modality, modality_of_concepts, source_label

    given = references.concepts_or_none()
    pairs: list[tuple[str, str] | None] = []
    used: list[str | None] = []
    for pred, ref, dataset in zip(predictions, references.texts, given, strict=True):
        gold = modality_of_concepts(dataset) if dataset is not None else None
        used.append(gold)  # a dataset modality, or None where the caption decides
        gold = gold or extract_modality(ref)
        pairs.append(None if gold is None else (gold, extract_modality(pred) or "none"))
    return pairs, source_label(used)


def _modality_scores(pairs: Sequence[tuple[str, str] | None]) -> list[float | None]:
    return [None if p is None else float(p[0] == p[1]) for p in pairs]


@metric(
    "modality_acc",
    label="Modality acc.",
    order=90,
    bounds=SHARE,
    description=(
        "Share of images whose prediction names the reference's imaging modality (ct, mri, "
        "xray, ultrasound, angiography, pet, nuclear; harness.data.concepts.MODALITY_TERMS, first "
        "modality term in the caption). Reference modality: the modality CUI among the dataset's "
        "concepts where the task has them, else the same rule on the reference caption (detail "
        "reference_modality). Images without a reference modality are skipped (n_scored); a "
        "prediction naming none counts as wrong. Detail confusion: JSON {reference: {predicted: "
        "count}}."
    ),
    resampler=lambda p, r, _: _skipping_mean_statistic(_modality_scores(_modality_pairs(p, r)[0])),
)
def _modality_acc(
    predictions: Sequence[str], references: References, _: MetricOptions
) -> MetricScore:
    from harness.data.concepts import EXTRACTOR, confusion_json

    pairs, source = _modality_pairs(predictions, references)
    scores = _modality_scores(pairs)
    details: dict[str, Detail] = {
        "extractor": EXTRACTOR,
        "reference_modality": source,
        "n_scored": sum(s is not None for s in scores),
        "confusion": confusion_json([p for p in pairs if p is not None]),
    }
    return MetricScore(_skipping_mean(scores), None, details)
