"""What a metric is, how one registers, and how a set of metrics scores the same samples.

Each metric takes predictions and their references paired by position (`References`: the
reference captions and, where the task has them, the dataset's reference concepts: what lm-eval
hands a metric as the document) and returns the corpus value, per-pair values where the metric has
them, and details that identify the setting (library signature, backbone, ...), so scores
computed differently are never compared. Empty predictions are scored (0 for per-pair metrics)
and kept in corpus metrics: nothing is dropped.

`compute_metrics` also gives each value a bootstrap 95 % interval over the pairs
(harness.metrics.stats): a mean of per-pair scores is resampled as a mean; a corpus metric (BLEU,
CIDEr) registers a `resampler` that recomputes its corpus value from per-pair sufficient
statistics. The run pipeline, `rocobench score` and `rocobench compare` share this code.
Heavy libraries are imported inside the metrics, so importing a metric module stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from harness.registry import METRICS as _METRICS
from harness.registry import Registry
from harness.spans import span

if TYPE_CHECKING:
    from harness.metrics.stats import Statistic

Detail = str | int | float | bool


class MetricUnavailable(RuntimeError):
    """Something a metric needs (a backbone, a data file) is missing; str() is one line."""


class MetricOptions(BaseModel):
    """Options of a metric; a metric without options uses this empty model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class References:
    """What a metric sees of each sample besides its prediction, paired by position: the
    reference captions and, where the task declares them (`doc_to_concepts`), the dataset's
    reference concepts (None for an image without them)."""

    texts: tuple[str, ...]
    concepts: tuple[tuple[str, ...] | None, ...] | None = None
    # the pairs' images (PIL images or loaders), for image-caption metrics; None: not at hand
    images: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.concepts is not None and len(self.concepts) != len(self.texts):
            raise ValueError(
                f"{len(self.concepts)} reference concept lists for {len(self.texts)} references"
            )
        if self.images is not None and len(self.images) != len(self.texts):
            raise ValueError(f"{len(self.images)} images for {len(self.texts)} references")

    def __len__(self) -> int:
        return len(self.texts)

    def concepts_or_none(self) -> list[tuple[str, ...] | None]:
        """Per image, the dataset's concepts, or None where a metric extracts them itself."""
        return list(self.concepts) if self.concepts is not None else [None] * len(self.texts)

    def subset(self, index: Sequence[int]) -> References:
        concepts = None if self.concepts is None else tuple(self.concepts[i] for i in index)
        images = None if self.images is None else tuple(self.images[i] for i in index)
        return References(tuple(self.texts[i] for i in index), concepts, images)


@dataclass(frozen=True)
class MetricScore:
    value: float  # corpus-level value
    per_sample: list[float] | None  # per pair, where the metric has per-pair scores
    details: dict[str, Detail]
    ci95: tuple[float, float] | None = None  # bootstrap percentile interval over the pairs
    n: int | None = None  # pairs scored


Compute = Callable[[Sequence[str], References, MetricOptions], MetricScore]
# (predictions, references, options) -> the metric recomputed on resampled pairs
Resampler = Callable[[Sequence[str], References, MetricOptions], "Statistic"]

# Details that report what a run found rather than how it was scored: left out when checking that
# two scores were computed the same way (rocobench compare, the leaderboard's columns).
RESULT_DETAILS = frozenset({"confusion", "n_scored", "parts", "missing_why"})

UNBOUNDED = (-math.inf, math.inf)
SHARE = (0.0, 1.0)  # precisions, recalls, F-measures, accuracies


@dataclass(frozen=True)
class Metric:
    name: str
    options: type[MetricOptions]
    compute: Compute
    higher_is_better: bool
    description: str  # the exact definition, shown with the results
    # None: the value is the mean of per_sample, and a resample averages those.
    resampler: Resampler | None = None
    label: str = ""  # the column heading on the leaderboard ("" : the name)
    order: int = 1000  # the column position: Table I's order first
    # The values it can take: intervals are cut to them (a bootstrap or t interval near 0 of a
    # share would otherwise reach below it).
    bounds: tuple[float, float] = UNBOUNDED

    @property
    def display(self) -> str:
        return self.label or self.name

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[str] | References,
        options: MetricOptions | None = None,
    ) -> MetricScore:
        """Check the inputs, then compute; `options` defaults to the options model's defaults."""
        preds, refs = _pairs(predictions, references)
        return self.compute(preds, refs, self._options(options))

    def statistic(
        self,
        predictions: Sequence[str],
        references: Sequence[str] | References,
        options: MetricOptions | None = None,
        per_sample: Sequence[float] | None = None,
    ) -> Statistic:
        """This metric on resampled pairs (harness.metrics.stats): the corpus recomputation of a
        corpus metric, or the mean of `per_sample` (scores already computed) for the others."""
        from harness.metrics.stats import mean_statistic

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


METRICS: Registry[Metric] = _METRICS  # filled lazily by the metric family modules


def metric(
    name: str,
    options: type[MetricOptions] = MetricOptions,
    higher_is_better: bool = True,
    description: str = "",
    resampler: Resampler | None = None,
    label: str = "",
    order: int = 1000,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Callable[[Compute], Compute]:
    """Register the decorated compute function as metric `name`, shown as `label` in column
    `order` on the leaderboard, with values within `bounds`."""

    def decorate(compute: Compute) -> Compute:
        entry = Metric(
            name, options, compute, higher_is_better, description, resampler, label, order, bounds
        )
        METRICS.add(name, entry)
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
    references: Sequence[str] | References,
    *,
    resamples: int | None = None,
    seed: int | None = None,
) -> dict[str, MetricScore]:
    """Score the same pairs with each requested (metric name, options); results keyed by name.

    Each score carries `n` and a bootstrap 95 % interval (`ci95`) from `resamples` resamples of
    the pairs (default stats.RESAMPLES, seeded with stats.SEED; 0: no
    interval). All metrics see the same resamples. `references`: the reference captions, or
    `References` with the dataset's reference concepts as well.
    """
    import harness.metrics.stats as stats

    preds, refs = _pairs(predictions, references)
    names = [name for name, _ in requests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"metric requested more than once: {', '.join(repeated)}")
    metrics = [(METRICS.get(name), options) for name, options in requests]  # fail before work
    n = len(preds)
    scores = {}
    for m, options in metrics:
        with span("score", m.name):
            scores[m.name] = dataclasses.replace(m.score(preds, refs, options), n=n)
    resamples = stats.RESAMPLES if resamples is None else resamples
    if resamples <= 0:
        return scores
    to_resample = {
        m.name: m.statistic(preds, refs, options, scores[m.name].per_sample)
        for m, options in metrics
        if m.resampler is not None or scores[m.name].per_sample is not None
    }
    with span("score", "bootstrap intervals"):
        intervals = stats.confidence_intervals(
            to_resample, n, resamples, stats.SEED if seed is None else seed
        )
    return {name: dataclasses.replace(s, ci95=intervals.get(name)) for name, s in scores.items()}


def _pairs(
    predictions: Sequence[str], references: Sequence[str] | References
) -> tuple[list[str], References]:
    if isinstance(predictions, str) or isinstance(references, str):
        raise TypeError("predictions and references must be sequences of strings, not a string")
    given = references if isinstance(references, References) else None
    preds, refs = list(predictions), list(given.texts if given else references)
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise ValueError("nothing to score: no predictions")
    for kind, texts in (("prediction", preds), ("reference", refs)):
        bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"{kind} {bad} is {type(texts[bad]).__name__}, not str")
    return preds, given if given is not None else References(tuple(refs))
