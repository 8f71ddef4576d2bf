"""The study's published Table I as *reported* rows, each beside its reproductions.

The figures are the paper's own (`data/paper_table1.json`: DOI, table, mean ± std over three
runs, and the GPU figures its text gives). They are shown apart from the measured table and never
ranked with it; a reproduction is a measured row of the same task and variant, shown with its
difference from the paper.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from leaderboard.formatting import fmt_score
from leaderboard.view import Row, Site

DATA = Path(__file__).resolve().parent / "data" / "paper_table1.json"
# The paper's BERTScore backbone (bert-score's default for English): other backbones' numbers
# are shown but not differenced.
PAPER_BACKBONE = "roberta-large"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuFigures(_Model):
    gpu_usage_pct: float | None = None  # average GPU usage, percent
    inference_min: float | None = None  # total inference time over the test images, minutes


class ReportedRow(_Model):
    name: str
    variant: str  # the manifest in variants/ that reproduces it
    scores: dict[str, tuple[float, float]]  # metric -> (mean, std)
    gpu: GpuFigures | None = None


class ReportedTable(_Model):
    format: int
    citation: str
    doi: str
    table: str
    task: str
    metrics: dict[str, str]  # metric name -> the paper's column label
    hardware: str
    efficiency_note: str
    rows: list[ReportedRow]

    @property
    def doi_url(self) -> str:
        return f"https://doi.org/{self.doi}"


@cache
def load_reported(path: Path = DATA) -> ReportedTable:
    return ReportedTable.model_validate(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class Difference:
    text: str  # the reproduction's mean ± std
    delta: str  # reproduction minus paper, or why there is none
    comparable: bool


@dataclass
class Reproduction:
    row: Row
    cells: dict[str, Difference]

    @property
    def who(self) -> str:
        return self.row.contributor or "this leaderboard's runs"

    @property
    def inference(self) -> str:
        """Generation wall time of a whole run, in minutes (mean over seeds), as the paper
        reports its inference time; with the time per image."""
        times = [r.measurements.generate_s for r in self.row.records]
        per_image = self.row.efficiency["s_per_image"].display
        return f"{sum(times) / len(times) / 60:.3g} min ({per_image} / image)"


@dataclass
class ReportedView:
    reported: ReportedRow
    reproductions: list[Reproduction] = field(default_factory=list)
    command: str = ""

    def paper(self, metric: str) -> str:
        value = self.reported.scores.get(metric)
        return "—" if value is None else f"{fmt_score(value[0])} ± {fmt_score(value[1])}"


def _difference(row: Row, metric: str, paper: tuple[float, float] | None) -> Difference:
    cells = [c for c in row.cells.values() if c.column.metric == metric]
    if not cells:
        return Difference("—", "not measured", False)
    # prefer the paper's backbone when the row has several settings of one metric
    cells.sort(key=lambda c: c.column.backbone not in (None, PAPER_BACKBONE))
    cell = cells[0]
    same_setting = cell.column.backbone in (None, PAPER_BACKBONE)
    if paper is None or not same_setting:
        why = f"backbone {cell.column.backbone}: not comparable" if not same_setting else "—"
        return Difference(cell.display, why, False)
    delta = cell.mean - paper[0]
    return Difference(cell.display, f"{'+' if delta >= 0 else '−'}{fmt_score(abs(delta))}", True)


def reported_views(site: Site, table: ReportedTable | None = None) -> list[ReportedView]:
    """Every reported row, with the measured rows of its task and variant (natural length)."""
    table = table or load_reported()
    measured = [t for t in site.tables if t.task == table.task]
    views = []
    for reported in table.rows:
        view = ReportedView(
            reported,
            command=f"rocobench run --task {shlex.quote(table.task)} "
            f"--variant {shlex.quote(reported.variant)}",
        )
        for t in measured:
            for row in t.rows:
                if row.variant == reported.variant and row.mode == "natural":
                    view.reproductions.append(
                        Reproduction(
                            row,
                            {m: _difference(row, m, reported.scores.get(m)) for m in table.metrics},
                        )
                    )
        views.append(view)
    return views
