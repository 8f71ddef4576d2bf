"""benchmarks/memory_vs_size.py: the memory column's order against the weights', on a page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fixtures.site_records import fixture_records, write_all

from leaderboard import render_site

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_vs_size.py"


def page(tmp_path: Path, tensors: dict[str, float], sizes: dict[str, int]) -> Path:
    records = []
    for r in fixture_records():
        m = r.measurements.model_copy(update={"peak_tensor_mib": tensors[r.variant]})
        model = r.model.model_copy(update={"size_bytes": sizes[r.variant]})
        records.append(r.model_copy(update={"measurements": m, "model": model}))
    write_all(tmp_path / "results", records)
    site = render_site(tmp_path / "results", tmp_path / "site", images=False)
    return site.parent / "results.json"


def run(results_json: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(results_json)], capture_output=True, text=True
    )


def variants(tmp_path: Path) -> list[str]:
    write_all(tmp_path / "probe", fixture_records())
    data = json.loads(
        (render_site(tmp_path / "probe", tmp_path / "probe-site", images=False).parent
         / "results.json").read_text()
    )  # fmt: skip
    return [row["variant"] for row in data["tasks"][0]["rows"]]


def test_agreeing_orders_pass_and_disagreeing_ones_fail(tmp_path: Path) -> None:
    small, middle, large = variants(tmp_path)
    sizes = {small: 1_000, middle: 2_000, large: 3_000}
    agree = run(page(tmp_path / "a", {small: 10.0, middle: 20.0, large: 30.0}, sizes))
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert "memory orders the variants by weights: yes" in agree.stdout
    disagree = run(page(tmp_path / "b", {small: 10.0, middle: 40.0, large: 30.0}, sizes))
    assert disagree.returncode == 1
    assert "memory orders the variants by weights: NO" in disagree.stdout


def test_equal_sizes_may_come_in_either_order(tmp_path: Path) -> None:
    a, b, c = variants(tmp_path)
    done = run(page(tmp_path / "a", {a: 20.0, b: 10.0, c: 30.0}, {a: 1_000, b: 1_000, c: 2_000}))
    assert done.returncode == 0, done.stdout + done.stderr
