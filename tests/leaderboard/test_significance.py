"""The page's statistics: bootstrap intervals within each metric's range, "best" only where a
paired test says so, the difference to the base as `rocobench compare` computes it, est. flags
and spread of costs in results.csv / results.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fixtures.board_records import TASK, write_board
from fixtures.site_records import fixture_records, make_record, write_all

from harness.analysis.compare import compare_runs, load_run
from leaderboard import render_site
from leaderboard.view import load_site


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("board")
    write_board(root / "results")
    render_site(root / "results", root / "site", images=False)
    return root


def rows(root: Path) -> dict[str, dict]:
    data = json.loads((root / "site" / "results.json").read_text())
    return {r["variant"]: r for r in data["tasks"][0]["rows"]}


def test_intervals_are_bootstrap_over_images_and_contain_the_mean(board: Path) -> None:
    for variant, row in rows(board).items():
        for cid, m in row["metrics"].items():
            lo, hi = m["ci95"]
            assert lo <= m["mean"] <= hi, (variant, cid)
            assert m["ci95_method"].startswith("bootstrap over images"), m["ci95_method"]


def test_intervals_stay_within_the_metric_range(tmp_path: Path) -> None:
    """Scores near 0 over 3 seeds: a t interval would go below 0, these do not."""
    low = {"bleu4": [0.0, 0.0, 0.004], "rouge_l": [0.001, 0.0, 0.0]}
    records = [make_record("near-zero", s, {m: v[s] for m, v in low.items()}) for s in range(3)]
    write_all(tmp_path / "results", records)  # no per-image files: the seeds' fallback
    (row,) = load_site(tmp_path / "results").tables[0].rows
    for cell in row.cells.values():
        assert cell.ci95 is not None and cell.ci95[0] >= 0.0, cell.ci95
        assert cell.ci_method.startswith("Student t")


def test_best_only_when_ahead_of_the_runner_up(board: Path) -> None:
    r = rows(board)
    # The two QLoRA twins lead ROUGE-L 0.2106 and 0.2081: too close to tell apart on 64 images
    top = ["tiny-llava-qlora", "tiny-mllama-qlora"]
    assert not any(r[v]["metrics"]["rouge_l"]["best"] for v in r)
    assert sorted(v for v in r if r[v]["metrics"]["rouge_l"]["tied"]) == top


def test_a_clear_lead_is_marked_best(tmp_path: Path) -> None:
    write_board(tmp_path / "results", ["tiny-llava", "tiny-llava-qlora", "tiny-qwen2-vl"])
    table = load_site(tmp_path / "results").tables[0]
    cells = {row.variant: row.cells["rouge_l"] for row in table.rows}
    assert cells["tiny-llava-qlora"].best and not cells["tiny-llava-qlora"].tied
    assert not any(c.best or c.tied for v, c in cells.items() if v != "tiny-llava-qlora")


def test_delta_vs_base_is_what_compare_prints(board: Path) -> None:
    results = board / "results"
    seeds = [0, 1, 2]
    base = {s: load_run(results, TASK, "tiny-qwen2-vl", s) for s in seeds}
    pruned = {s: load_run(results, TASK, "tiny-qwen2-vl-pruned", s) for s in seeds}
    (expected,) = compare_runs(base, pruned, ["rouge_l"], per_seed=False)
    assert expected.seed == "all"
    delta = rows(board)["tiny-qwen2-vl-pruned"]["metrics"]["rouge_l"]["delta_vs_base"]
    assert delta["base"] == "tiny-qwen2-vl"
    assert delta["difference"] == pytest.approx(expected.difference)
    assert delta["ci95"] == pytest.approx(list(expected.ci95))
    assert delta["p_value"] == pytest.approx(expected.p_value)
    assert delta["difference"] < 0 and delta["ci95"][1] < 0  # pruning cost quality here
    assert rows(board)["tiny-qwen2-vl"]["metrics"]["rouge_l"]["delta_vs_base"] is None
    html = (board / "site" / "index.html").read_text()
    assert f"Δ {expected.difference:+.4f}" in html


def test_est_flags_and_spread_of_costs_reach_csv_and_json(board: Path) -> None:
    row = rows(board)["tiny-llava"]
    assert row["efficiency_estimated"] == ["energy_j_per_image"]
    assert row["efficiency_std"]["s_per_image"] > 0
    assert len(row["efficiency_values"]["memory_mib"]) == 3
    assert row["memory_method"] == ["fresh process"]
    with (board / "site" / "results.csv").open() as fh:
        lines = {line["variant"]: line for line in csv.DictReader(fh)}
    line = lines["tiny-llava"]
    assert line["energy_j_per_image_estimated"] == "True"
    assert float(line["s_per_image_std"]) > 0
    assert line["memory_method"] == "fresh process"
    assert float(lines["tiny-llava-qlora"]["rouge_l_delta"]) > 0
    assert lines["tiny-llava-qlora"]["rouge_l_delta_base"] == "tiny-llava"


def test_memory_is_the_variant_share_and_best_needs_separated_intervals(tmp_path: Path) -> None:
    write_all(tmp_path / "results", fixture_records())
    table = load_site(tmp_path / "results").tables[0]
    for row in table.rows:
        cell = row.efficiency["memory_mib"]
        assert cell.value == row.efficiency["peak_rss_mib"].value - 1024.0


def test_plots_colour_by_base_shape_by_technique_and_draw_arrows_from_the_base(
    board: Path,
) -> None:
    html = (board / "site" / "index.html").read_text(encoding="utf-8")
    figure = html.split('<figure data-metric="rouge_l">', 1)[1].split("</figure>", 1)[0]
    assert figure.count('class="point ') == 10
    # three base models, three colours; a shape per technique chain
    assert {f"base-{i}" for i in range(3)} <= set(figure.split('"')) | {
        c for part in figure.split('class="') for c in part.split('"')[0].split()
    }
    assert 'class="marker circle"' in figure and 'class="marker diamond"' in figure
    # an arrow from each base to each of its compressed variants (7 of them), when apart
    arrows = figure.count('<g class="arrow ')
    assert 5 <= arrows <= 7
    assert 'data-from="tiny-qwen2-vl" data-to="tiny-qwen2-vl-pruned"' in figure
    assert '<ul class="legend"' in html and "distill → qlora → prune" in html
