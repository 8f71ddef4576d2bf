"""Where a variant's base model comes from: a Hub id at a pinned revision, a local folder
(written `./…` or `/…`, relative to the manifest), or an embedded twin built locally.

A Hub id is only ever resolved on the Hub or in its cache: loaders receive the cache's snapshot
folder (`resolve`), never the bare id, which transformers would read as a folder when one of
that name exists in the working directory (`harness.specs.refs`)."""

from __future__ import annotations

from pathlib import Path

from harness.specs.refs import check_ref, is_local
from harness.specs.variant import VariantSpec
from harness.specs.yamlio import shown

# Files a model or adapter folder needs; never pickles (`*.bin`, `*.pt`) or the consolidated
# checkpoints some repositories carry beside the transformers weights (`original/`).
LOAD_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")
IGNORE_PATTERNS = ("original/*",)


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


def hub_snapshot(repo_id: str, revision: str) -> str:
    """The folder of `repo_id` at `revision` in the Hugging Face cache, downloaded if needed.

    Raises OSError (huggingface_hub's not-found errors are OSErrors) when it is neither cached
    nor reachable."""
    from huggingface_hub import snapshot_download

    return snapshot_download(
        repo_id,
        revision=revision,
        allow_patterns=list(LOAD_PATTERNS),
        ignore_patterns=list(IGNORE_PATTERNS),
    )


def resolve(location: str, revision: str | None) -> str:
    """What to hand `from_pretrained`: a folder path, always.

    `revision` set: `location` is a Hub id, resolved in the cache. `revision` None: `location` is
    a folder (a local base, a twin, a build stage) and must be written as a path."""
    if revision is not None:
        check_ref(location)
        if is_local(location):
            raise ValueError(f"{location}: a local folder has no revision")
        return hub_snapshot(location, revision)
    if not is_local(location):
        raise ValueError(f"{shown(location)}: a Hub id needs a pinned revision")
    return location
