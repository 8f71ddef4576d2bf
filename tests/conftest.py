"""Test session set-up: offline, a private cache, and the three tiny twins built once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports huggingface_hub / transformers (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault(
    "ROCOBENCH_CACHE", tempfile.mkdtemp(prefix="rocobench-test-cache-")
)  # twins are built once per session into a fresh cache

import pytest

from harness.paths import REPO_ROOT

FAMILY_VARIANTS = {"qwen2_vl": "tiny-qwen2-vl", "mllama": "tiny-mllama", "llava": "tiny-llava"}


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
