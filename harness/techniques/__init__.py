"""Compression techniques a variant manifest chains (`techniques:`), registered by `kind`.

A technique is a typed spec plus `apply(ctx, spec)`, which moves the build context
(`harness.techniques.context.BuildContext`) from one state to the next: where the current
full-precision weights are, whether an adapter sits on top, how the model is loaded. Third-party
techniques register through the `rocobench.techniques` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.registry import TECHNIQUES as _TECHNIQUES
from harness.registry import Registry


@dataclass(frozen=True)
class Technique:
    kind: str
    spec: type[Any]  # a `harness.specs.variant.TechniqueSpec` subclass
    description: str
    apply: Callable[[Any, Any], None] | None = None  # (BuildContext, spec) -> None


# Filled on first lookup with the built-in techniques and the `rocobench.techniques` entry points.
TECHNIQUES: Registry[Technique] = _TECHNIQUES
