"""benchmarks/gpu_paper_check.py: the paper suite's GPU check, exercised on the CPU."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records.layout import RECORD_FILE
from harness.records.store import read_record

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_paper_check.py"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def test_no_step_starts_without_budget(tmp_path: Path) -> None:
    done = check("--out", str(tmp_path), "--budget", "0")
    assert done.returncode == 0, done.stderr
    for variant in ("qwen2-vl-2b", "qwen2-vl-2b-qlora", "llama-3.2-11b-vision"):
        assert f"== {variant}: skipped" in done.stdout
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_tiny_check_writes_fixed_length_records_and_a_table(tmp_path: Path) -> None:
    done = check("--tiny", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for variant in ("tiny-qwen2-vl", "tiny-qwen2-vl-pruned"):
        record = read_record(
            tmp_path / "results/rocov2_sample" / variant / "seed-0-fixed-8" / RECORD_FILE
        )
        assert record.measurements.n_images == 8
        assert record.measurements.new_tokens_per_image == 8
        row = next(line for line in lines if line.strip().startswith(variant + " "))
        assert f"{record.measurements.generate_s:.1f}" in row


def test_the_table_sets_each_peak_beside_the_floor_dispatch_uses(tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_paper_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    from fixtures.site_records import make_record, write_all

    peaks = {"qwen2-vl-2b": 4400.0, "llama-3.2-11b-vision-qlora": 6100.0, "tiny-qwen2-vl": None}
    write_all(tmp_path, [
        make_record(v, 0, {"bleu4": 0.1}, measurements={"peak_gpu_allocated_mib": peak})
        for v, peak in peaks.items()
    ])  # fmt: skip
    lines = gpu_paper_check.table(tmp_path).splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines]  # columns: 2+ spaces apart
    rows = {row[0]: dict(zip(cells[0], row, strict=False)) for row in cells[1:]}  # goal: blank
    # 2.21 B parameters at 2 bytes; 10.67 B at half a byte (NF4); a twin has no floor.
    pairs = {v: (row["GPU MiB"], row["floor MiB"]) for v, row in rows.items()}
    assert pairs == {
        "qwen2-vl-2b": ("4400", "4215"),
        "llama-3.2-11b-vision-qlora": ("6100", "5088"),
        "tiny-qwen2-vl": ("-", "-"),
    }
