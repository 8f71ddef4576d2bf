"""Builds are reproducible on one machine, and one cache key is built by one process at a time."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.models.build import BUILD_FILE, build_folder, build_key, ensure_built
from harness.models.determinism import build_lock, build_threads, deterministic
from harness.models.twins import build_twin
from harness.specs.variant import load_variant as load_manifest

TRAIN = (
    "{task: rocov2_sample, lr: 2.0e-2, batch_size: 8, epochs: 2, "
    "max_train_samples: 24, max_eval_samples: 8}"
)


def manifest(tmp_path: Path, vid: str, body: str) -> Path:
    path = tmp_path / f"{vid}.yaml"
    path.write_text(f"id: {vid}\n{body}")
    return path


def folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of a build, build.json excepted (it holds the build's date)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != BUILD_FILE
    }


def test_two_qlora_builds_give_identical_bytes(tmp_path) -> None:
    """LoRA init, dropout and data order seeded, threads fixed: the same adapter twice, whatever
    ran before in the process and however many threads it had set."""
    path = manifest(
        tmp_path,
        "t-det-qlora",
        f"base: {{twin: qwen2_vl}}\ntechniques:\n  - kind: qlora\n    train: {TRAIN}\n",
    )
    spec = load_manifest(path)
    first = ensure_built(spec, device="cpu", progress=False)
    assert first.folder is not None
    digest = folder_digest(first.folder)
    assert any(name.endswith(".safetensors") for name in digest)

    torch.rand(1000)  # another generator state, and another thread count, before the rebuild
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        second = ensure_built(spec, device="cpu", progress=False, rebuild=True)
        assert torch.get_num_threads() == threads + 1  # restored after the build
    finally:
        torch.set_num_threads(threads)
    assert second.folder == first.folder
    assert folder_digest(second.folder) == digest
    assert second.notes["qlora"]["eval_losses"] == first.notes["qlora"]["eval_losses"]


def test_deterministic_restores_settings() -> None:
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    with deterministic(7, threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        a = torch.rand(3)
    with deterministic(7, threads=1):
        assert torch.equal(torch.rand(3), a)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


def test_build_threads_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("ROCOBENCH_BUILD_THREADS", raising=False)
    assert build_threads() == 1
    monkeypatch.setenv("ROCOBENCH_BUILD_THREADS", "3")
    assert build_threads() == 3
    monkeypatch.setenv("ROCOBENCH_BUILD_THREADS", "0")
    with pytest.raises(ValueError, match="ROCOBENCH_BUILD_THREADS"):
        build_threads()


BUILD_SCRIPT = """
import sys
from pathlib import Path
from harness.models.build import ensure_built
from harness.specs.variant import load_variant
ensure_built(load_variant(Path(sys.argv[1])), device="cpu", progress=False)
"""


def test_concurrent_builds_of_one_key_take_turns_and_reuse(tmp_path, repo_root) -> None:
    """Two processes asked for the same build while it is locked: both wait, one builds, the
    other reuses its build; neither crashes."""
    path = manifest(
        tmp_path,
        "t-lock-prune",
        "base: {twin: qwen2_vl}\ntechniques:\n  - kind: prune\n    heads: 0.3\n    ffn: 0.3\n"
        "    round_to: 8\n",
    )
    spec = load_manifest(path)
    folder = build_folder(spec, build_key(spec))
    build_twin("qwen2_vl")  # the base, so that both processes go straight to the lock
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    logs = [tmp_path / f"log-{i}.txt" for i in range(2)]
    with build_lock(folder):  # held here until both processes are waiting for it
        procs = []
        for log in logs:
            with log.open("w") as fh:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", BUILD_SCRIPT, str(path)],
                        env=env,
                        stderr=fh,
                        stdout=subprocess.DEVNULL,
                    )
                )
        deadline = time.monotonic() + 600  # imports on a busy machine
        while not all("wait" in log.read_text() for log in logs):
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            assert time.monotonic() < deadline, "the builds never reached the lock"
            time.sleep(0.2)
    codes = [p.wait(timeout=300) for p in procs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    built = [t for t in texts if "built   t-lock-prune" in t]
    reused = [t for t in texts if "cached  t-lock-prune" in t]
    assert len(built) == 1 and len(reused) == 1, texts
    assert (folder / BUILD_FILE).exists()
