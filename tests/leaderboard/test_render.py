"""The leaderboard site rendered from fixture records: index, variant pages, JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
import shlex
import shutil
import statistics
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fixtures.site_records import (
    BACKBONE,
    EVIL_CAPTION,
    EVIL_VARIANT,
    SAMPLE_IDS,
    SCORES,
    SEEDS,
    TASK,
    bundled_dataset_ref,
    fixture_records,
    make_record,
    write_all,
)

from harness.records.record import RunRecord
from leaderboard import render_site
from leaderboard.plots import Point, pareto_front, pareto_svg
from leaderboard.view import slug, t975


class Cells(HTMLParser):
    """Collects the data cells: (variant, column) -> (text, attributes); and row warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.warnings: dict[str, list[str]] = {}
        self.variants: list[str] = []
        self.rows: dict[str, dict[str, str]] = {}
        self._variant: str | None = None
        self._cell: tuple[str, dict[str, str]] | None = None
        self._warning = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-variant" in a:
            self._variant = a["data-variant"]
            self.variants.append(self._variant)
            self.rows[self._variant] = a
        elif tag == "td" and "data-column" in a and self._variant is not None:
            self._cell, self._text = (a["data-column"], a), []
        elif tag == "p" and "data-warning" in a:
            self._warning, self._text = True, []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._variant is not None:
            column, attrs = self._cell
            self.cells[(self._variant, column)] = ("".join(self._text).strip(), attrs)
            self._cell = None
        elif tag == "p" and self._warning and self._variant is not None:
            self.warnings.setdefault(self._variant, []).append("".join(self._text).strip())
            self._warning = False
        elif tag == "tr":
            self._variant = None


def parse(index: Path) -> Cells:
    parser = Cells()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


@pytest.fixture
def site(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    write_all(results, fixture_records(), samples=True)
    return render_site(results, tmp_path / "site")


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def column_id(metric: str) -> str:
    return f"{metric}@{BACKBONE}" if metric == "bertscore_f1" else metric


def test_every_variant_has_a_row_with_mean_std_and_ci(site: Path) -> None:
    page = parse(site)
    assert sorted(page.variants) == sorted(SCORES)
    for variant, scores in SCORES.items():
        for metric, values in scores.items():
            text, attrs = page.cells[(variant, column_id(metric))]
            mean, std = statistics.mean(values), statistics.stdev(values)
            half = t975(len(values) - 1) * std / math.sqrt(len(values))
            assert text.startswith(fmt(values))
            assert f"[{mean - half:.4f}, {mean + half:.4f}]" in text
            assert float(attrs["data-mean"]) == pytest.approx(mean)
            assert float(attrs["data-std"]) == pytest.approx(std)
            assert attrs["data-n"] == "3"
    assert not page.warnings


def test_headers_name_metrics_and_the_bertscore_backbone(site: Path) -> None:
    html = site.read_text(encoding="utf-8")
    for label in ("BLEU-4", "ROUGE-L", "BERTScore-F1"):
        assert label in html
    assert f'<span class="sub">{BACKBONE}</span>' in html
    assert "backbone=all-MiniLM-L6-v2" in html  # the footnote with every setting
    assert "<style>" in html and "<link" not in html  # CSS inlined, nothing fetched
    assert "http://" not in html and "https://" not in html


def test_best_mean_per_column_is_marked(site: Path) -> None:
    page = parse(site)
    expected = {
        "bleu4": EVIL_VARIANT,
        "rouge_l": "llama-base",
        f"bertscore_f1@{BACKBONE}": "llama-base",
        "s_per_image": "qwen-qlora",  # lower is better for costs
        "memory_mib": "qwen-qlora",
        "tensor_mib": "qwen-qlora",
    }
    for column, winner in expected.items():
        best = [v for v in SCORES if "best" in page.cells[(v, column)][1]["class"].split()]
        assert best == [winner], column
    # A caption length is neither better nor worse: never marked.
    assert not any("best" in page.cells[(v, "tokens_per_image")][1]["class"] for v in SCORES)


def test_record_content_is_escaped(site: Path) -> None:
    html = site.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # the page's own script only
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    # The variant id round-trips through the attribute intact, i.e. it was quoted correctly.
    assert EVIL_VARIANT in parse(site).variants
    # The reproduce command quotes the id for the shell.
    assert f"--variant {shlex.quote(EVIL_VARIANT)}\n" in unescape(html)


def test_pages_carry_a_policy_that_admits_only_our_own_script(site: Path) -> None:
    for page in [site, *sorted((site.parent / "v").glob("*.html"))]:
        html = unescape(page.read_text(encoding="utf-8"))
        assert 'http-equiv="Content-Security-Policy"' in html
        assert "default-src 'none'" in html and "script-src 'sha256-" in html
        assert "unsafe-inline" not in html


def test_results_json_and_csv_match_the_inputs(site: Path) -> None:
    data = json.loads((site.parent / "results.json").read_text(encoding="utf-8"))
    (task,) = data["tasks"]
    assert task["task"] == TASK
    rows = {row["variant"]: row for row in task["rows"]}
    assert set(rows) == set(SCORES)
    assert len(data["records"]) == 9
    assert {(r["variant"], r["seed"]) for r in data["records"]} == {
        (v, s) for v in SCORES for s in SEEDS
    }
    for variant, scores in SCORES.items():
        assert len(rows[variant]["records"]) == 3
        bleu = rows[variant]["metrics"]["bleu4"]
        assert bleu["mean"] == pytest.approx(statistics.mean(scores["bleu4"]))
        assert bleu["std"] == pytest.approx(statistics.stdev(scores["bleu4"]))
        half = 4.303 * statistics.stdev(scores["bleu4"]) / math.sqrt(3)
        assert bleu["ci95"][1] - bleu["mean"] == pytest.approx(half)
        assert bleu["values"] == scores["bleu4"]
        assert rows[variant]["efficiency"]["n_parameters"] == 1_820_000_000
        assert (site.parent / rows[variant]["page"]).is_file()
    assert rows["qwen-qlora"]["efficiency"]["s_per_image"] == pytest.approx(11.0 / 20)
    columns = {c["id"]: c for c in task["metric_columns"]}
    assert columns[f"bertscore_f1@{BACKBONE}"]["details"]["backbone"] == BACKBONE

    with (site.parent / "results.csv").open(encoding="utf-8", newline="") as fh:
        lines = {line["variant"]: line for line in csv.DictReader(fh)}
    assert set(lines) == set(SCORES)
    for variant, scores in SCORES.items():
        line = lines[variant]
        assert float(line["rouge_l_mean"]) == pytest.approx(statistics.mean(scores["rouge_l"]))
        assert float(line["rouge_l_std"]) == pytest.approx(statistics.stdev(scores["rouge_l"]))
        assert float(line["rouge_l_ci95_lo"]) < float(line["rouge_l_mean"])
        assert line["n_seeds"] == "3"


def test_efficiency_columns_are_human_readable(site: Path) -> None:
    page = parse(site)
    assert page.cells[("llama-base", "n_parameters")][0] == "1.82 B"
    assert page.cells[("llama-base", "size_bytes")][0] == "3 GiB"
    # mean (seeds take 10, 11, 12 s for 20 images) and its spread over seeds
    assert page.cells[("qwen-qlora", "s_per_image")][0] == "550 ms (best) ± 50 ms"
    assert page.cells[("llama-base", "memory_mib")][0] == "7,168 MiB"
    assert page.cells[("llama-base", "tensor_mib")][0] == "2,048 MiB"
    assert ("llama-base", "peak_gpu_mib") not in page.cells  # no GPU figures: no column
    assert ("llama-base", "energy_j_per_image") not in page.cells
    assert "Not measured in these records: peak GPU, energy / image" in " ".join(
        site.read_text(encoding="utf-8").split()
    )


def test_rows_are_filterable_by_base_model_and_technique(site: Path) -> None:
    page = parse(site)
    assert page.rows["qwen-qlora"]["data-base"] == "twin:qwen2_vl"
    assert json.loads(page.rows["qwen-qlora"]["data-techniques"]) == ["qlora"]
    assert json.loads(page.rows["llama-base"]["data-techniques"]) == []
    html = site.read_text(encoding="utf-8")
    assert '<option value="qlora">qlora</option>' in html
    assert '<option value="twin:mllama">twin:mllama</option>' in html


def test_each_row_has_a_permalink_and_a_safe_page_name(site: Path) -> None:
    page = parse(site)
    pages = sorted(p.name for p in (site.parent / "v").glob("*.html"))
    assert len(pages) == 3
    for attrs in page.rows.values():
        assert f'href="#{attrs["id"]}"' in site.read_text(encoding="utf-8")
        assert f"{attrs['id']}.html" in pages
    evil = page.rows[EVIL_VARIANT]["id"]
    assert all(c.isalnum() or c in "-_." for c in evil)
    assert slug("llama-base") == "llama-base" and slug("../x") != "../x"


def test_energy_and_new_measurements_are_read_when_present(tmp_path: Path) -> None:
    records = [
        make_record(
            r.variant,
            r.seed,
            {m: v.value for m, v in r.metrics.items()},
            measurements={"energy_per_image_j": 2.5, "energy_estimated": True, "ttft_p50_ms": 12.0},
        )
        for r in fixture_records()
    ]
    page, data = _render(tmp_path, records)
    text, _ = page.cells[("llama-base", "energy_j_per_image")]
    assert text.startswith("2.5 J") and "est." in text
    assert data["tasks"][0]["rows"][0]["efficiency"]["energy_j_per_image"] == 2.5
    variant_page = (tmp_path / "site" / "v" / "roco-caption--llama-base.html").read_text()
    assert "ttft_p50_ms" in variant_page
    # Plotted against energy too: a front, not the "not measured" note.
    assert "energy / image: not measured" not in (tmp_path / "site" / "index.html").read_text()


def test_a_single_seed_shows_the_runs_own_interval(tmp_path: Path) -> None:
    record = make_record("llama-base", 0, {"rouge_l": 0.5})
    metrics = {"rouge_l": record.metrics["rouge_l"].model_copy(update={"ci95": (0.4, 0.6)})}
    page, data = _render(tmp_path, [record.model_copy(update={"metrics": metrics})])
    assert page.cells[("llama-base", "rouge_l")][0].endswith("[0.4000, 0.6000]")
    cell = data["tasks"][0]["rows"][0]["metrics"]["rouge_l"]
    assert cell["ci95"] == [0.4, 0.6] and cell["run_ci95"] == [[0.4, 0.6]]
    html = (tmp_path / "site" / "v" / "roco-caption--llama-base.html").read_text()
    assert "0.5000 [0.4000, 0.6000]" in html


def test_fixed_length_speed_runs_are_rows_of_their_own(tmp_path: Path) -> None:
    records = fixture_records()
    fixed = [
        make_record(
            "llama-base",
            seed,
            {m: SCORES["llama-base"][m][i] + 0.5 for m in SCORES["llama-base"]},
            measurements={"length_mode": "fixed", "fixed_new_tokens": 32},
        )
        for i, seed in enumerate(SEEDS)
    ]
    write_all(tmp_path / "results", records)
    for r in fixed:  # the runner's folder for fixed-length runs
        from harness.records.store import write_record

        write_record(tmp_path / "results" / TASK / r.variant / f"seed-{r.seed}-fixed-32", r)
    index = render_site(tmp_path / "results", tmp_path / "site")
    data = json.loads((tmp_path / "site" / "results.json").read_text())
    rows = [r for r in data["tasks"][0]["rows"] if r["variant"] == "llama-base"]
    assert len(rows) == 2 and all(r["n_seeds"] == 3 for r in rows)
    # The fixed run scored higher but is not ranked: the natural row keeps "best".
    assert not any(c["best"] for r in rows[1:] for c in r["metrics"].values())
    assert "fixed 32 tokens" in index.read_text()


def test_a_non_finite_record_is_left_out_and_reported_with_its_path(tmp_path: Path) -> None:
    records = fixture_records()
    records[0] = make_record(records[0].variant, 0, {"bleu4": float("nan"), "rouge_l": 0.1})
    records[1] = make_record(records[1].variant, 1, {"bleu4": float("inf"), "rouge_l": 0.1})
    write_all(tmp_path / "results", records)
    (tmp_path / "results" / "broken").mkdir()
    (tmp_path / "results" / "broken" / "record.json").write_text('{"task": "x", ')
    lines: list[str] = []
    index = render_site(tmp_path / "results", tmp_path / "site", log=lines.append)
    assert len(lines) == 3 and all(": skipped: " in line for line in lines)
    assert any(line.startswith(f"{tmp_path / 'results'}/broken/record.json") for line in lines)
    assert any("value nan is not finite" in line for line in lines)
    assert any("value inf is not finite" in line for line in lines)
    data = json.loads((tmp_path / "site" / "results.json").read_text())
    row = next(r for r in data["tasks"][0]["rows"] if r["variant"] == records[0].variant)
    assert row["seeds"] == [2]  # seeds 0 and 1 left out, seed 2 kept
    assert "3 records could not be read" in index.read_text()


def test_empty_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    with pytest.raises(ValueError, match="results"):
        render_site(tmp_path / "results", tmp_path / "site")
    assert not (tmp_path / "site" / "index.html").exists()


def _render(tmp_path: Path, records: list[RunRecord]) -> tuple[Cells, dict[str, Any]]:
    write_all(tmp_path / "results", records)
    index = render_site(tmp_path / "results", tmp_path / "site")
    return parse(index), json.loads((tmp_path / "site" / "results.json").read_text())


def test_seeds_on_different_ids_are_flagged_and_not_ranked(tmp_path: Path) -> None:
    records = fixture_records()
    records[2] = records[2].model_copy(
        update={"dataset": records[2].dataset.model_copy(update={"ids_sha256": "b" * 64})}
    )
    flagged = records[2].variant
    page, data = _render(tmp_path, records)
    assert any("ids_sha256" in w for w in page.warnings[flagged])
    assert set(page.warnings) == {flagged}
    cell = page.cells[(flagged, "bleu4")][1]
    assert "best" not in cell["class"] and "incomparable" in cell["class"]
    row = next(r for r in data["tasks"][0]["rows"] if r["variant"] == flagged)
    assert row["warnings"] and not row["metrics"]["bleu4"]["comparable"]


def test_different_backbones_get_separate_columns(tmp_path: Path) -> None:
    records = fixture_records()
    # One variant scored with another backbone; one seed of another variant too.
    records = [
        r
        if r.variant != "llama-base"
        else make_record(
            r.variant, r.seed, {m: v.value for m, v in r.metrics.items()}, backbone="roberta-large"
        )
        for r in records
    ]
    records[0] = make_record(
        records[0].variant,
        records[0].seed,
        {m: v.value for m, v in records[0].metrics.items()},
        backbone="roberta-large",
    )
    page, data = _render(tmp_path, records)
    ids = [c["id"] for c in data["tasks"][0]["metric_columns"]]
    assert f"bertscore_f1@{BACKBONE}" in ids and "bertscore_f1@roberta-large" in ids
    # llama-base is alone in its column (not "best" of one), absent from the other.
    assert "best" not in page.cells[("llama-base", "bertscore_f1@roberta-large")][1]["class"]
    assert "missing" in page.cells[("llama-base", f"bertscore_f1@{BACKBONE}")][1]["class"]
    # The mixed row is split by backbone, never averaged across them, and flagged.
    mixed = records[0].variant
    assert page.cells[(mixed, "bertscore_f1@roberta-large")][1]["data-n"] == "1"
    assert page.cells[(mixed, f"bertscore_f1@{BACKBONE}")][1]["data-n"] == "2"
    assert any("BERTScore-F1" in w for w in page.warnings[mixed])


# --------------------------------------------------------------------------- variant pages


def variant_page(site: Path, variant: str) -> str:
    attrs = parse(site).rows[variant]
    return (site.parent / "v" / f"{attrs['id']}.html").read_text(encoding="utf-8")


def test_variant_page_shows_manifest_provenance_and_per_seed_metrics(site: Path) -> None:
    html = variant_page(site, "llama-base")
    for text in ("manifest_sha256", "m" * 64, "transformers", "5.24", "Test CPU", "seed 2"):
        assert text in html
    for value in SCORES["llama-base"]["rouge_l"]:
        assert f"{value:.4f}" in html
    assert 'href="../index.html#roco-caption--llama-base"' in html
    assert "roco-caption/llama-base/seed-1/record.json" in html


def test_sample_browser_escapes_captions_and_degrades_without_images(site: Path) -> None:
    html = variant_page(site, EVIL_VARIANT)
    assert "<script>alert(3)" not in html and "onerror=alert(4)>" not in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html
    assert html.count("<script") == 1 and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the description, as text
    for sample_id in SAMPLE_IDS:
        assert f'data-sample="{sample_id}"' in html
    # The dataset is a Hub id that is not in the local cache: no thumbnails, and a note.
    assert "not in the local Hugging Face cache" in html
    assert not (site.parent / "thumbs").exists()


def test_sample_browser_is_capped_and_a_missing_file_is_a_note(tmp_path: Path) -> None:
    records = fixture_records()
    write_all(tmp_path / "results", records[:3], samples=True)
    write_all(tmp_path / "results", records[3:])
    index = render_site(tmp_path / "results", tmp_path / "site", max_samples=2)
    html = variant_page(index, records[0].variant)
    assert html.count("data-sample=") == 2 * 3  # two per seed
    assert "First 2\n      of 5 samples" in html or "First 2 of 5" in " ".join(html.split())
    other = variant_page(index, records[3].variant)
    assert "no per-sample file" in other


def test_thumbnails_come_from_the_local_dataset(tmp_path: Path, repo_root: Path) -> None:
    dataset = bundled_dataset_ref(repo_root)
    records = [
        make_record(r.variant, r.seed, {m: v.value for m, v in r.metrics.items()}, dataset=dataset)
        for r in fixture_records()
        if r.variant == "llama-base"
    ]
    write_all(tmp_path / "results", records, samples=True)
    index = render_site(tmp_path / "results", tmp_path / "site")
    thumbs = sorted((tmp_path / "site" / "thumbs").rglob("*.jpg"))
    assert len(thumbs) == len(SAMPLE_IDS)  # one per sample, shared by the seeds
    assert all(500 < p.stat().st_size < 20_000 for p in thumbs)
    html = variant_page(index, "llama-base")
    assert html.count('<img src="../thumbs/') == len(SAMPLE_IDS) * len(SEEDS)
    # A changed dataset is not mistaken for the evaluated one.
    stale = dataset.model_copy(update={"revision": "sha256:" + "0" * 64})
    records = [r.model_copy(update={"dataset": stale}) for r in records]
    write_all(tmp_path / "results", records, samples=True)
    index = render_site(tmp_path / "results", tmp_path / "site")
    assert "has changed since the run" in variant_page(index, "llama-base")
    assert not list((tmp_path / "site" / "thumbs").rglob("*.jpg"))  # stale thumbnails pruned


def test_thumbnails_come_from_the_hub_cache_snapshot(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    revision = "c0ffee00" * 5
    snapshot = tmp_path / "hub" / "datasets--eltorio--ROCOv2-radiology" / "snapshots" / revision
    shutil.copytree(repo_root / "tasks" / "data" / "rocov2_sample" / "data", snapshot / "data")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    write_all(tmp_path / "results", fixture_records()[:3], samples=True)  # revision c0ffee00…
    render_site(tmp_path / "results", tmp_path / "site")
    assert len(list((tmp_path / "site" / "thumbs").rglob("*.jpg"))) == len(SAMPLE_IDS)


def test_pages_of_rows_that_disappeared_are_removed(tmp_path: Path) -> None:
    write_all(tmp_path / "results", fixture_records())
    render_site(tmp_path / "results", tmp_path / "site")
    assert len(list((tmp_path / "site" / "v").glob("*.html"))) == 3
    shutil.rmtree(tmp_path / "results" / TASK / "llama-base")
    render_site(tmp_path / "results", tmp_path / "site")
    assert len(list((tmp_path / "site" / "v").glob("*.html"))) == 2


# --------------------------------------------------------------------------- Pareto plots


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [
        Point("cheap-bad", "a", x=1.0, y=0.1),
        Point("mid", "b", x=2.0, y=0.5),
        Point("dominated", "c", x=3.0, y=0.4),
        Point("dear-good", "d", x=4.0, y=0.9),
        Point("tie-cost-worse", "e", x=2.0, y=0.3),
    ]
    front = [points[i].label for i in pareto_front(points, True)]
    assert front == ["cheap-bad", "mid", "dear-good"]
    # Lower-is-better quality flips the y direction.
    assert [points[i].label for i in pareto_front(points, False)] == ["cheap-bad"]


def test_pareto_svg_escapes_labels_and_marks_the_front() -> None:
    svg = str(
        pareto_svg(
            [Point(EVIL_CAPTION, "v/x.html", 1.0, 0.2), Point("b", "v/b.html", 2.0, 0.1)],
            x_label="time / image (s)",
            y_label="BLEU-4",
            higher_is_better=True,
            title="BLEU-4 against time",
        )
    )
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="point on-front base-0"') == 1
    assert svg.count('class="point dominated base-0"') == 1
    assert "not measured" in str(
        pareto_svg([], x_label="x", y_label="y", higher_is_better=True, title="<t>")
    )
