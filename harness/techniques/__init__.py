"""Compression techniques a variant manifest chains (`techniques:`), registered by `kind`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.registry import Registry


@dataclass(frozen=True)
class Technique:
    kind: str
    spec: type[Any]  # a `harness.specs.TechniqueSpec` subclass
    description: str


TECHNIQUES: Registry[Technique] = Registry("technique")
