"""Commands that only read YAML, records or text never import torch or transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "datasets", "peft", "bitsandbytes", "bert_score", "codecarbon")
PROBE = f"""
import json, sys
from harness.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _heavy_modules(args: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], report["heavy"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [
        {"id": "a", "prediction": "CT of the chest", "reference": "CT scan of the chest"},
        {"id": "b", "prediction": "MRI of the knee", "reference": "Knee MRI, sagittal"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.site_records import fixture_records, write_all

    folder = tmp_path_factory.mktemp("results")
    write_all(folder, fixture_records())
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["ls"],
        ["validate", *sorted(str(p) for p in (REPO / "variants").glob("*.yaml"))],
    ],
    ids=["help", "run-help", "ls", "validate"],
)
def test_spec_commands_import_no_torch(args: list[str]) -> None:
    code, heavy = _heavy_modules(args, REPO)
    assert code == 0
    assert heavy == []


def test_a_plan_imports_no_torch(tmp_path: Path) -> None:
    """`--dry-run` works out build keys (teachers included) and reuse without a model library:
    the same plan is a cached `rocobench bench`'s first step."""
    variants = ["tiny-llava-kd-qlora-pruned", "tiny-qwen2-vl-qlora", "tiny-mllama-pruned"]
    args = ["run", "--task", "rocov2_sample", "--dry-run", "--results", str(tmp_path)]
    code, heavy = _heavy_modules([*args, *(a for v in variants for a in ("--variant", v))], REPO)
    assert code == 0
    assert heavy == []


def test_score_without_bertscore_imports_no_torch(pairs: Path) -> None:
    metrics = "bleu1,bleu4,rouge_1,rouge_l,meteor,cider,concept_f1,modality_acc"
    code, heavy = _heavy_modules(["score", "--pairs", str(pairs), "--metrics", metrics], REPO)
    assert code == 0
    assert heavy == []


def test_render_imports_no_torch(results: Path, tmp_path: Path) -> None:
    code, heavy = _heavy_modules(["render", str(results), "-o", str(tmp_path / "site")], REPO)
    assert code == 0
    assert (tmp_path / "site" / "index.html").is_file()
    assert heavy == []


def test_the_probe_sees_a_heavy_import(pairs: Path) -> None:
    """The check can fail: BERTScore does load torch."""
    args = ["score", "--pairs", str(pairs), "--metrics", "bertscore_f1", "--resamples", "0"]
    code, heavy = _heavy_modules(args, REPO)
    assert code == 0
    assert "torch" in heavy
