"""The Hub path (model id + pinned revision) on a local twin: a Hugging Face cache laid out by
hand, `HF_HUB_OFFLINE=1`, and the real manifests. What a user with internet gets is the same
code with a download in front."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.models.twins import build_twin
from harness.records.layout import RECORD_FILE, run_dir
from harness.records.store import read_record
from harness.specs.variant import load_variant

REAL = {"qwen2-vl-2b": "qwen2_vl", "llama-3.2-11b-vision": "mllama", "llava-1.5-7b": "llava"}


def fill_hub_cache(cache: Path, repo_id: str, revision: str, folder: Path) -> None:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/…}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def test_real_manifests_load_through_the_hub_path(tmp_path: Path, repo_root: Path) -> None:
    cache = tmp_path / "hub"
    for variant, family in REAL.items():
        spec = load_variant(repo_root / "variants" / f"{variant}.yaml")
        assert spec.base.model and spec.base.revision
        fill_hub_cache(cache, spec.base.model, spec.base.revision, build_twin(family))

    task = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    task = task.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    task = task.replace("max_new_tokens: 128", "max_new_tokens: 8") + "limit: 2\n"
    task_file = tmp_path / "rocov2_sample.yaml"
    task_file.write_text(task)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path))
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", str(task_file), "--seeds", "0",
           "--results", str(tmp_path / "results"), "--no-progress"]  # fmt: skip
    for variant in REAL:
        cmd += ["--variant", variant]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root)
    assert done.returncode == 0, done.stderr[-2000:]

    for variant, family in REAL.items():
        record = read_record(
            run_dir(tmp_path / "results", "rocov2_sample", variant, 0) / RECORD_FILE
        )
        spec = load_variant(repo_root / "variants" / f"{variant}.yaml")
        assert (record.model.base, record.model.revision) == (spec.base.model, spec.base.revision)
        assert record.model.family == family


def test_missing_hub_model_is_one_clear_line(tmp_path: Path, repo_root: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "rocov2_sample",
           "--variant", "qwen2-vl-2b", "--limit", "1",
           "--results", str(tmp_path / "r")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rocobench: cannot load Qwen/Qwen2-VL-2B-Instruct at revision 895c3a49")
    assert not (tmp_path / "r").exists()
