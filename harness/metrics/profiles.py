"""Scoring profiles: the text normalisation and BERTScore setting of a named way to score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def default_metrics() -> tuple[str, ...]:
    """Every registered metric, in the order results are shown (the registrations' `order`)."""
    return tuple(sorted(METRICS.names(), key=lambda name: (METRICS.get(name).order, name)))


def profile_requests(profile: str, names: Sequence[str]) -> list[tuple[str, MetricOptions]]:
    """(metric, options) for each name under `profile`: BERTScore takes the profile's backbone,
    the other metrics their defaults."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return [
        (name, PROFILES[profile].bertscore if name == "bertscore_f1" else parse_options(name, {}))
        for name in names
    ]
