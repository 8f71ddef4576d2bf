"""Scoring profiles: the text normalisation and BERTScore setting of a named way to score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.metrics.base import METRICS, MetricOptions, parse_options
from harness.metrics.bertscore import BUNDLED_PREFIX, BERTScoreOptions

# --- profiles ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A named way to score: the text normalisation of both sides and the BERTScore setting."""

    name: str
    imageclef_text: bool  # apply imageclef_normalise to predictions and references
    bertscore: BERTScoreOptions
    description: str
    # metric name -> the metric that computes it under this profile, on the raw texts (it
    # normalises what its rules normalise): the ImageCLEF evaluator's own rules
    routes: Mapping[str, str] = field(default_factory=dict)


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
            "ImageCLEFmedical Caption 2026's evaluator: both sides normalised (lowercase, digit "
            "runs -> 'number', ASCII punctuation removed); bertscore_f1 and rouge_1 follow its "
            "rules (imageclef_bertscore: microsoft/deberta-xlarge-mnli, idf from the normalised "
            "references, pair by pair; imageclef_rouge_1; both raw sides empty -> 1); "
            "imageclef_relevance / imageclef_factuality are its composites",
            routes={"bertscore_f1": "imageclef_bertscore", "rouge_1": "imageclef_rouge_1"},
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


def default_metrics() -> tuple[str, ...]:
    """Every registered metric, in the order results are shown (the registrations' `order`),
    less the ImageCLEF evaluator's (heavy backbones: named when wanted)."""
    names = [name for name in METRICS.names() if not name.startswith("imageclef_")]
    return tuple(sorted(names, key=lambda name: (METRICS.get(name).order, name)))


def profile_requests(profile: str, names: Sequence[str]) -> list[tuple[str, MetricOptions]]:
    """(metric, options) for each name under `profile`: BERTScore takes the profile's backbone,
    the other metrics their defaults."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return [
        (name, PROFILES[profile].bertscore if name == "bertscore_f1" else parse_options(name, {}))
        for name in names
    ]
