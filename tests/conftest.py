"""Test session set-up: offline, a private cache, and the three tiny twins built once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub / transformers (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import pytest

from harness.paths import REPO_ROOT  # reads ROCOBENCH_CACHE when asked, not at import

# Twins are built once per session into a fresh cache, removed at the end unless given.
OWN_CACHE = "ROCOBENCH_CACHE" not in os.environ
if OWN_CACHE:
    os.environ["ROCOBENCH_CACHE"] = tempfile.mkdtemp(prefix="rocobench-test-cache-")

FAMILY_VARIANTS = {"qwen2_vl": "tiny-qwen2-vl", "mllama": "tiny-mllama", "llava": "tiny-llava"}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if OWN_CACHE:
        shutil.rmtree(os.environ["ROCOBENCH_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def loaded_twins():
    """family name -> LoadedVariant (real model classes, loaded from the saved twin folders)."""
    from harness.models.load import load_variant
    from harness.specs.variant import load_variant as load_manifest

    return {
        family: load_variant(load_manifest(REPO_ROOT / "variants" / f"{vid}.yaml"), device="cpu")
        for family, vid in FAMILY_VARIANTS.items()
    }


@pytest.fixture(scope="session")
def sample_task():
    from harness.specs.task import load_task

    return load_task(REPO_ROOT / "tasks" / "rocov2_sample.yaml")
