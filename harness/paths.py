"""Where things live: the repository (tasks, variants, bundled data) and the cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = REPO_ROOT / "tasks"
VARIANTS_DIR = REPO_ROOT / "variants"
SUITES_DIR = TASKS_DIR / "suites"


def cache_dir() -> Path:
    """Built models and other reusable artefacts: $ROCOBENCH_CACHE or ~/.cache/rocobench."""
    env = os.environ.get("ROCOBENCH_CACHE")
    # absolute: folders under it are handed to loaders, which read a relative name as a Hub id
    return Path(env).absolute() if env else Path.home() / ".cache" / "rocobench"
