"""Where a variant's base model comes from: a Hub id at a pinned revision, a local folder
(written `./…` or `/…`, relative to the manifest), or an embedded twin built locally."""

from __future__ import annotations

from pathlib import Path

from harness.specs.variant import VariantSpec


class BuildError(RuntimeError):
    """The variant cannot be built or loaded; the message says why and what to do."""


def base_location(spec: VariantSpec) -> tuple[str, str | None, str]:
    """(what to pass to from_pretrained, revision, the name recorded as the base)."""
    base = spec.base
    if base.twin is not None:
        from harness.models.twins import build_twin

        return str(build_twin(base.twin)), None, f"twin:{base.twin}"
    assert base.model is not None
    if base.is_local:
        root = spec.source.parent if spec.source else Path.cwd()
        folder = (root / base.model).resolve()
        if not (folder / "config.json").exists():
            raise BuildError(f"{spec.source}: base.model: {folder} has no config.json")
        return str(folder), None, str(folder)
    return base.model, base.revision, base.model
