"""Where a run's model and images come from, chosen once per run.

`TRAINED`: the variant as its manifest says (built, then loaded) on the task's data, scored.
`RANDOM_WEIGHTS`: the base's published architecture at full size with random weights, the chain
applied without training, on synthetic images, not scored — for speed and memory figures of
models that cannot be downloaded here (`harness.models.random_weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.data.dataset import EvalSet
from harness.models.build import BuiltVariant
from harness.models.load import LoadedVariant
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec


@dataclass(frozen=True)
class Mode:
    name: str
    random_weights: bool  # seed folders `-random`, beside, never over, the trained runs
    evalset: Callable[[TaskSpec, int | None], EvalSet]
    build: Callable[..., BuiltVariant]  # (variant, *, device, progress, log)
    load: Callable[..., LoadedVariant]  # (variant, *, device, progress, log)

    @property
    def scored(self) -> bool:
        """Captions of random weights on synthetic images mean nothing: they are not scored."""
        return not self.random_weights


def _load_split(task: TaskSpec, limit: int | None) -> EvalSet:
    from harness.data.dataset import load_split

    return load_split(task, limit=limit)


def _ensure_built(variant: VariantSpec, **kwargs: Any) -> BuiltVariant:
    from harness.models.build import ensure_built

    return ensure_built(variant, **kwargs)


def _load_variant(variant: VariantSpec, **kwargs: Any) -> LoadedVariant:
    from harness.models.load import load_variant

    return load_variant(variant, **kwargs)


def _synthetic(task: TaskSpec, limit: int | None) -> EvalSet:
    from harness.models.random_weights import synthetic_evalset

    return synthetic_evalset(task, limit)


def _ensure_built_random(variant: VariantSpec, **kwargs: Any) -> BuiltVariant:
    from harness.models.random_weights import ensure_built_random

    return ensure_built_random(variant, **kwargs)


def _load_variant_random(variant: VariantSpec, **kwargs: Any) -> LoadedVariant:
    from harness.models.random_weights import load_variant_random

    return load_variant_random(variant, **kwargs)


TRAINED = Mode("trained", False, _load_split, _ensure_built, _load_variant)
RANDOM_WEIGHTS = Mode(
    "random weights", True, _synthetic, _ensure_built_random, _load_variant_random
)
