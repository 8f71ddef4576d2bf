"""Intervals, "best" and the difference to the base, from the per-image data of the runs.

- A cell's 95 % interval is a percentile bootstrap over the evaluated images, the images drawn
  once and the same draw used for every seed (the score is the mean over seeds): the interval
  describes the uncertainty of the mean over images, and stays within the metric's range
  because every resampled value is a value of the metric.
- A column's "best" is marked only when a paired bootstrap test on the same images (the code of
  `rocobench compare`) finds the top row better than the runner-up (p < 0.05). Otherwise the
  rows the test cannot tell from the top are marked as a tied group.
- Every compressed row gets its paired difference to its base (the uncompressed row of the same
  base model): B - A with its interval and p-value, as `rocobench compare base B` prints it.

Where a run's per-image data is missing, or does not reproduce the recorded score, a cell falls
back to the Student t interval over seeds, cut to the metric's range, and "best" to intervals
that do not overlap; the cell says which method it used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness.metrics.stats as stats
from harness.registry import METRICS

# leaderboard.view's MetricCell, Row and TaskTable: this module sits below the view, which
# calls it, so it names them without importing them.
MetricCell = Row = TaskTable = Any
Locate = Callable[[Any], Path]  # a RecordRef -> the local path of its record file

# Two-sided 95 % Student t quantiles by degrees of freedom (1..30); beyond, an expansion.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df)  # Cornish-Fisher, within 0.001 of the table at df = 30


ALPHA = 0.05
BOOTSTRAP_METHOD = "bootstrap over images, seeds averaged"
# Recorded scores are kept at full precision: per-image data must give the same value.
AGREEMENT = 5e-5


def clip(interval: tuple[float, float], metric: str) -> tuple[float, float]:
    """The interval cut to the values the metric can take (registered with it)."""
    lo, hi = METRICS.get(metric).bounds if metric in METRICS else (-math.inf, math.inf)
    return (min(max(interval[0], lo), hi), max(min(interval[1], hi), lo))


@dataclass(frozen=True)
class Delta:
    """A compressed row against its base on one metric: B - A over the same images."""

    base: str  # the base row's variant id
    difference: float
    ci95: tuple[float, float]
    p_value: float
    n: int

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


@dataclass
class Prepared:
    """A row's runs with their samples by id (compare's `Run`) and a digest of their files."""

    runs: dict[int, Any]
    digests: dict[int, str]  # seed -> sha256 of its per-image file


def _runs(locate: Locate, row: Row) -> tuple[Prepared | None, str | None]:
    """The row's runs with their per-image data, or why they cannot be used."""
    from harness.analysis.compare import Run
    from harness.records.rows import SampleRow

    runs: dict[int, Any] = {}
    digests: dict[int, str] = {}
    for record, ref in zip(row.records, row.refs, strict=True):
        name = record.samples_file
        if Path(name).name != name or name in ("", ".", ".."):
            return None, "per-sample file name is not a plain file name"
        path = locate(ref).parent / name
        try:
            data = path.read_bytes()
            lines = [
                SampleRow.model_validate(json.loads(line))
                for line in data.decode("utf-8").splitlines()
                if line.strip()
            ]
            runs[record.seed] = Run(record, {r.id: r for r in lines})
        except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
            return None, f"seed {record.seed}: no readable per-image file"
        digests[record.seed] = hashlib.sha256(data).hexdigest()
    ids = [set(run.samples) for run in runs.values()]
    if not ids or any(s != ids[0] for s in ids):
        return None, "seeds evaluated different images"
    return Prepared(runs, digests), None


def _cache_path(key: dict[str, Any]) -> Path:
    from harness.paths import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "bootstrap" / f"{digest[:40]}.npy"


def _draws(prepared: Prepared, ids: list[str], cell: MetricCell) -> tuple[float, Any] | None:
    """The cell's score (mean over its seeds) on the images and on each bootstrap resample of
    them; None when the per-image data cannot give it or does not reproduce the recorded value.
    Resampled values are cached (corpus metrics such as CIDEr take seconds per resample set):
    the key holds everything they depend on."""
    import numpy as np

    from harness.analysis.compare import CompareError, run_statistic

    try:
        per_seed = [
            run_statistic(prepared.runs[seed], ids, cell.column.metric) for seed in cell.seeds
        ]
        statistic = stats.mean_of(per_seed)
        value = stats.observed(statistic, len(ids))
    except (CompareError, KeyError, TypeError, ValueError, ZeroDivisionError, FloatingPointError):
        return None
    if not (math.isfinite(value) and abs(value - cell.mean) <= AGREEMENT * max(1, abs(value))):
        return None
    key = {
        "version": 1,
        "metric": cell.column.metric,
        "details": [list(d) for d in cell.column.details],
        "seeds": list(cell.seeds),
        "files": [prepared.digests[seed] for seed in cell.seeds],
        "ids": hashlib.sha256("\0".join(ids).encode()).hexdigest(),
        "resamples": stats.RESAMPLES,
        "seed": stats.SEED,
        "block": stats.BLOCK,
    }
    path = _cache_path(key)
    try:
        draws = np.load(path)
        if draws.shape == (stats.RESAMPLES,):
            return value, draws
    except (OSError, ValueError):
        pass
    draws = stats.bootstrap({"m": statistic}, len(ids))["m"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.save(fh, draws)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs time
    return value, draws


def _prepare(table: TaskTable, locate: Locate) -> tuple[dict[int, Prepared], list[str]]:
    """Per row (by position), its runs; and the image ids in one order for the whole table (the
    evaluation order of the first usable run, as `rocobench compare` takes it)."""
    out: dict[int, Prepared] = {}
    order: list[str] = []
    for i, row in enumerate(table.rows):
        prepared, problem = _runs(locate, row)
        if prepared is None:
            row.stats_note = f"intervals from seeds only: {problem}"
            continue
        first = next(iter(prepared.runs.values()))
        if not order:
            order = list(first.samples)
        if set(first.samples) != set(order):
            row.stats_note = "intervals from seeds only: other images than the other rows"
            continue
        out[i] = prepared
    return out, order


def _intervals(table: TaskTable, prepared: dict[int, Prepared], ids: list[str]) -> None:
    for i, row in enumerate(table.rows):
        if i not in prepared:
            continue
        for cell in row.cells.values():
            if not all(s in prepared[i].runs for s in cell.seeds):
                continue
            found = _draws(prepared[i], ids, cell)
            if found is None:
                continue
            cell.observed, cell.draws = found
            cell.image_ids = tuple(ids)
            cell.boot_ci = clip(stats.percentile_interval(cell.draws), cell.column.metric)


def paired(a: MetricCell, b: MetricCell) -> stats.PairedComparison:
    """B − A over the same images, from the resampled values both cells keep."""
    return stats.paired_from_draws(a.observed, b.observed, b.draws - a.draws, len(a.image_ids))


def _disjoint(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and (a[0] > b[1] or b[0] > a[1])


def _behind(cell: MetricCell, top: MetricCell, sign: int, same_images: bool) -> bool:
    """Whether `cell` is significantly worse than `top`: a paired bootstrap test on the same
    images, or without per-image data, intervals that do not overlap."""
    if not same_images:
        return _disjoint(cell.ci95, top.ci95)
    test = paired(cell, top)
    return test.p_value < ALPHA and sign * test.difference > 0


def mark_best(table: TaskTable) -> None:
    """Per quality column: best if significantly ahead of the runner-up, else a tied group."""
    for column in table.columns:
        cells = [
            cell
            for row in table.rows
            if (cell := row.cells.get(column.id)) is not None
            and cell.comparable
            and math.isfinite(cell.mean)
        ]
        for cell in cells:
            cell.best = cell.tied = False
        if len(cells) < 2 or len({c.mean for c in cells}) == 1:
            continue  # a lone entry, or everyone ties exactly: nothing stands out
        sign = 1 if column.higher_is_better else -1
        ranked = sorted(cells, key=lambda c: -sign * c.mean)
        top, runner = ranked[0], ranked[1]
        same = all(c.draws is not None and c.image_ids == top.image_ids for c in ranked)
        if _behind(runner, top, sign, same):
            top.best = True
            continue
        top.tied = True
        for cell in ranked[1:]:
            cell.tied = cell is runner or not _behind(cell, top, sign, same)


def _base_rows(table: TaskTable) -> dict[str, Row]:
    """Per base model, its uncompressed natural-length row (when there is exactly one)."""
    found: dict[str, list[Row]] = {}
    for row in table.rows:
        if not row.techniques and row.mode == "natural" and row.scores_comparable:
            found.setdefault(row.base_model, []).append(row)
    return {base: rows[0] for base, rows in found.items() if len(rows) == 1}


def deltas(table: TaskTable, prepared: dict[int, Prepared]) -> None:
    """Each compressed row's paired difference to its base row, per metric column: the numbers
    `rocobench compare RESULTS --task T BASE ROW` prints on its `all` line."""
    from harness.analysis.compare import CompareError, compare_runs

    bases = _base_rows(table)
    index = {id(row): i for i, row in enumerate(table.rows)}
    for i, row in enumerate(table.rows):
        base = bases.get(row.base_model)
        if base is None or base is row or not row.scores_comparable or row.mode != "natural":
            continue
        j = index[id(base)]
        for cid, cell in row.cells.items():
            base_cell = base.cells.get(cid)
            if base_cell is None or cell.draws is None or base_cell.draws is None:
                continue
            if base_cell.seeds == cell.seeds:
                result = paired(base_cell, cell)  # the same draws compare would make
            else:  # other seeds: compare's own path over the seeds both have
                seeds = sorted(set(base_cell.seeds) & set(cell.seeds))
                try:
                    (row_result,) = compare_runs(
                        {s: prepared[j].runs[s] for s in seeds},
                        {s: prepared[i].runs[s] for s in seeds},
                        [cell.column.metric],
                        per_seed=False,
                    )
                except (CompareError, KeyError, ValueError):
                    continue
                result = stats.PairedComparison(
                    row_result.a, row_result.b, row_result.difference, row_result.ci95,
                    row_result.p_value, row_result.n, row_result.resamples,
                )  # fmt: skip
            row.deltas[cid] = Delta(
                base.variant, result.difference, result.ci95, result.p_value, result.n
            )


def apply(table: TaskTable, locate: Locate) -> None:
    """Intervals, best marks and differences to the base of one task table, in place;
    `locate` gives the local path of a row's record file (its samples lie beside it)."""
    prepared, ids = _prepare(table, locate)
    _intervals(table, prepared, ids)
    mark_best(table)
    deltas(table, prepared)


def seeds_interval(values: Sequence[float], metric: str) -> tuple[float, float] | None:
    """Fallback: Student t interval of the mean over seeds, cut to the metric's range."""
    n = len(values)
    if n < 2 or not all(math.isfinite(v) for v in values):
        return None
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return clip((mean - half, mean + half), metric)
