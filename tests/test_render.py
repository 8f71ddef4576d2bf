"""The leaderboard page, results.json and results.csv, rendered from fixture records."""

from __future__ import annotations

import csv
import json
import shlex
import statistics
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.records import (
    DatasetRef,
    Hardware,
    Measurements,
    MetricValue,
    ModelRef,
    Provenance,
    RunRecord,
    run_dir,
    write_record,
)
from leaderboard import render_site

TASK = "roco-caption"
SEEDS = (0, 1, 2)
EVIL_DESCRIPTION = "Qwen + QLoRA <script>alert(1)</script>"
EVIL_VARIANT = 'evil"><img src=x onerror=alert(2)>'
# variant -> metric -> one value per seed (values differ per variant and seed)
SCORES: dict[str, dict[str, list[float]]] = {
    "qwen-qlora": {
        "bleu4": [0.0091, 0.0093, 0.0095],
        "rouge_l": [0.1131, 0.1142, 0.1153],
        "bertscore_f1": [0.8381, 0.8387, 0.8393],
    },
    "llama-base": {
        "bleu4": [0.0046, 0.0049, 0.0052],
        "rouge_l": [0.1913, 0.1928, 0.1943],
        "bertscore_f1": [0.8547, 0.8553, 0.8559],
    },
    EVIL_VARIANT: {
        "bleu4": [0.0200, 0.0226, 0.0252],
        "rouge_l": [0.1294, 0.1311, 0.1328],
        "bertscore_f1": [0.8457, 0.8465, 0.8473],
    },
}
BACKBONE = "all-MiniLM-L6-v2"


def make_record(
    variant: str,
    seed: int,
    scores: dict[str, float],
    *,
    ids_sha256: str = "a" * 64,
    backbone: str = BACKBONE,
) -> RunRecord:
    metrics = {
        name: MetricValue(
            value=value,
            details={"backbone": backbone, "layer": 6} if name == "bertscore_f1" else {},
        )
        for name, value in scores.items()
    }
    return RunRecord(
        task=TASK,
        task_version="1.0",
        task_sha256="t" * 64,
        variant=variant,
        variant_description=EVIL_DESCRIPTION if variant == EVIL_VARIANT else f"{variant} model",
        techniques=["qlora"] if "qlora" in variant else [],
        seed=seed,
        batch_size=4,
        generation={"max_new_tokens": 64, "do_sample": False},
        prompt="Describe this radiology image.",
        metrics=metrics,
        measurements=Measurements(
            load_s=1.0,
            generate_s=10.0 + seed,
            score_s=0.5,
            n_images=20,
            new_tokens_total=600,
            new_tokens_per_image=30.0,
            images_per_s=2.0,
            tokens_per_s=60.0,
            peak_rss_mib=2048.0,
        ),
        dataset=DatasetRef(
            path="eltorio/ROCOv2-radiology",
            revision="r" * 40,
            split="test",
            n_samples=20,
            ids_sha256=ids_sha256,
        ),
        model=ModelRef(
            base="twin:qwen2_vl",
            revision=None,
            family="qwen2_vl",
            dtype="bfloat16",
            manifest_sha256="m" * 64,
            n_parameters=1_820_000_000,
            size_bytes=3 * 1024**3,
        ),
        provenance=Provenance(
            rocobench_version="0.1.0",
            git_sha="0123456789abcdef",
            git_dirty=False,
            python="3.11",
            platform="linux",
            packages={"transformers": "5.24"},
            hardware=Hardware(device="cpu", cpu="Test CPU", cpu_count=2, ram_gib=8.0),
            created_at=f"2025-01-0{seed + 1}T00:00:00+00:00",
        ),
    )


def write_all(results: Path, records: list[RunRecord]) -> None:
    for r in records:
        write_record(run_dir(results, r.task, r.variant, r.seed), r)


def fixture_records() -> list[RunRecord]:
    return [
        make_record(variant, seed, {m: vals[i] for m, vals in scores.items()})
        for variant, scores in SCORES.items()
        for i, seed in enumerate(SEEDS)
    ]


class Cells(HTMLParser):
    """Collects the data cells: (variant, column) -> (text, attributes); and row warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        self.warnings: dict[str, list[str]] = {}
        self.variants: list[str] = []
        self._variant: str | None = None
        self._cell: tuple[str, dict[str, str]] | None = None
        self._warning = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-variant" in a:
            self._variant = a["data-variant"]
            self.variants.append(self._variant)
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
    write_all(results, fixture_records())
    return render_site(results, tmp_path / "site")


def fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def test_every_variant_has_a_row_with_mean_and_sample_std(site: Path) -> None:
    page = parse(site)
    assert sorted(page.variants) == sorted(SCORES)
    for variant, scores in SCORES.items():
        for metric, values in scores.items():
            column = f"{metric}@{BACKBONE}" if metric == "bertscore_f1" else metric
            text, attrs = page.cells[(variant, column)]
            assert text.split(" n=")[0] == fmt(values)
            assert float(attrs["data-mean"]) == pytest.approx(statistics.mean(values))
            assert float(attrs["data-std"]) == pytest.approx(statistics.stdev(values))
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
    }
    for column, winner in expected.items():
        best = [v for v in SCORES if "best" in page.cells[(v, column)][1]["class"].split()]
        assert best == [winner], column


def test_record_content_is_escaped(site: Path) -> None:
    html = site.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # the page's own sort script only
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    # The variant id round-trips through the attribute intact, i.e. it was quoted correctly.
    assert EVIL_VARIANT in parse(site).variants
    # The reproduce command quotes the id for the shell.
    assert f"--variant {shlex.quote(EVIL_VARIANT)}\n" in unescape(html)


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
        assert bleu["values"] == scores["bleu4"]
        assert rows[variant]["efficiency"]["s_per_image"] == pytest.approx(11.0 / 20)
        assert rows[variant]["efficiency"]["n_parameters"] == 1_820_000_000
    columns = {c["id"]: c for c in task["metric_columns"]}
    assert columns[f"bertscore_f1@{BACKBONE}"]["details"]["backbone"] == BACKBONE

    with (site.parent / "results.csv").open(encoding="utf-8", newline="") as fh:
        lines = {line["variant"]: line for line in csv.DictReader(fh)}
    assert set(lines) == set(SCORES)
    for variant, scores in SCORES.items():
        line = lines[variant]
        assert float(line["rouge_l_mean"]) == pytest.approx(statistics.mean(scores["rouge_l"]))
        assert float(line["rouge_l_std"]) == pytest.approx(statistics.stdev(scores["rouge_l"]))
        assert line["n_seeds"] == "3"


def test_efficiency_columns_are_human_readable(site: Path) -> None:
    page = parse(site)
    assert page.cells[("llama-base", "n_parameters")][0] == "1.82 B"
    assert page.cells[("llama-base", "size_bytes")][0] == "3 GiB"
    assert page.cells[("llama-base", "s_per_image")][0] == "0.55"
    assert ("llama-base", "peak_gpu_mib") not in page.cells  # no GPU figures: no column


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
