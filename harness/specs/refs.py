"""Model and dataset references in specs, read one way everywhere: a Hub id or a folder.

`org/name` could be a Hub id or a relative folder; transformers and datasets, given such a
string, load the folder when one exists in the working directory. A manifest must not load
something other than what its reviewer reads, so:

- a local folder is written as a path: `./…`, `../…` or `/…` (relative to the spec file);
- anything else must be a valid Hub id, resolved only on the Hub or in its cache
  (`harness.models.sources.resolve`);
- URLs are not references, and one carrying credentials is refused without being echoed.
"""

from __future__ import annotations

from harness.specs.yamlio import has_credentials, shown

LOCAL_PREFIXES = ("./", "../", "/")


def is_local(ref: str) -> bool:
    """A folder reference: written as a path, so it cannot be mistaken for a Hub id."""
    return ref.startswith(LOCAL_PREFIXES) or ref in (".", "..")


def check_ref(ref: str) -> str:
    """The reference if it is a folder path or a valid Hub id; ValueError (one line) otherwise."""
    if has_credentials(ref):
        raise ValueError("a URL with credentials is refused (value not shown)")
    if is_local(ref):
        return ref
    if "://" in ref:
        raise ValueError(
            "a URL is not a model reference; give a Hub id (org/name) or a folder (./path or /path)"
        )
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(ref)
    except HFValidationError:
        raise ValueError(
            f"{shown(ref)} is not a Hub id (org/name); write a local folder as ./path or /path"
        ) from None
    return ref
