"""The Hub models allowed to run their own code (`trust_remote_code`): a reviewed list."""

from __future__ import annotations

from pathlib import Path

from harness.paths import REPO_ROOT
from harness.specs.yamlio import SpecError, load_yaml

ALLOWLIST_PATH = REPO_ROOT / "policy" / "trust_remote_code.yaml"


def trust_remote_code_allowlist(path: Path | None = None) -> frozenset[str]:
    """The Hub ids allowed to run their own code (`models:` list in the allowlist file)."""
    path = path or ALLOWLIST_PATH
    if not path.exists():
        return frozenset()
    data, _ = load_yaml(path)
    models = (data or {}).get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise SpecError([f"{path}:1: models: expected a list of Hub ids"])
    return frozenset(models)
