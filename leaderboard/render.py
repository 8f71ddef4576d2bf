"""Render the static leaderboard from RunRecords: index.html, results.json and results.csv.

The page is built from records only (`harness.records.find_records`). Every string in a record is
untrusted (community submissions), so the template autoescapes and no record text is marked safe.

Scores are put side by side only when they are comparable:
- a metric column is a metric name *plus* its details (the BERTScore backbone, tokenizer, …), so
  scores from different backbones land in different columns and are never ranked together;
- rows whose seeds disagree on what was evaluated (ids, dataset, task, prompt, model), or that
  differ from the task's reference, carry a visible warning and cannot be marked best.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shlex
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from markupsafe import Markup

from harness.records import (
    RECORD_FILE,
    RunRecord,
    atomic_writer,
    find_records,
    write_json,
)

RESULTS_FORMAT_VERSION = 1
DECIMALS = 4  # as in the paper's Table I
PACKAGE_DIR = Path(__file__).resolve().parent

# Known metrics, in Table I's column order; unknown metrics follow, by name, under their raw name.
METRIC_LABELS: dict[str, str] = {
    "bleu": "BLEU",
    "bleu4": "BLEU-4",
    "rouge_l": "ROUGE-L",
    "meteor": "METEOR",
    "bertscore_f1": "BERTScore-F1",
    "bertscore_precision": "BERTScore-P",
    "bertscore_recall": "BERTScore-R",
    "cider": "CIDEr",
}

Details = tuple[tuple[str, Any], ...]
T = TypeVar("T")


# --------------------------------------------------------------------------- formatting


def fmt_score(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def fmt_sig(value: float) -> str:
    """Three significant digits without switching to exponent notation for large values."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def fmt_count(value: float) -> str:
    """Parameter counts the way papers write them: 1.82 B, 5.3 M."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f}"


def fmt_bytes(value: float) -> str:
    for scale, unit in ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def _details_text(details: Details) -> str:
    return " · ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in details)


# --------------------------------------------------------------------------- efficiency columns


def _per_image_s(r: RunRecord) -> float | None:
    m = r.measurements
    return m.generate_s / m.n_images if m.n_images > 0 else None


@dataclass(frozen=True)
class EfficiencyColumn:
    """One measured figure: how to read it from a record and how to show it."""

    key: str
    label: str
    title: str
    extract: Callable[[RunRecord], float | None]
    fmt: Callable[[float], str]


EFFICIENCY_COLUMNS: tuple[EfficiencyColumn, ...] = (
    EfficiencyColumn(
        "s_per_image",
        "s / image",
        "generation wall time per image (generate_s / n_images)",
        _per_image_s,
        fmt_sig,
    ),
    EfficiencyColumn(
        "tokens_per_image",
        "tokens / image",
        "new tokens per image: a faster variant may simply write shorter captions",
        lambda r: r.measurements.new_tokens_per_image,
        lambda v: f"{v:.1f}",
    ),
    EfficiencyColumn(
        "images_per_s",
        "images / s",
        "generation throughput",
        lambda r: r.measurements.images_per_s,
        fmt_sig,
    ),
    EfficiencyColumn(
        "peak_rss_mib",
        "peak RSS (MiB)",
        "peak resident memory of the process",
        lambda r: r.measurements.peak_rss_mib,
        lambda v: f"{v:,.0f}",
    ),
    EfficiencyColumn(
        "peak_gpu_mib",
        "peak GPU (MiB)",
        "peak GPU memory allocated by torch",
        lambda r: r.measurements.peak_gpu_allocated_mib,
        lambda v: f"{v:,.0f}",
    ),
    EfficiencyColumn(
        "n_parameters",
        "params",
        "number of parameters",
        lambda r: r.model.n_parameters,
        fmt_count,
    ),
    EfficiencyColumn(
        "size_bytes",
        "size",
        "size of the weights as loaded",
        lambda r: r.model.size_bytes,
        fmt_bytes,
    ),
)


def hardware_label(r: RunRecord) -> str:
    hw = r.provenance.hardware
    if hw.gpus:
        names = Counter(hw.gpus)
        return ", ".join(f"{n} x {g}" if n > 1 else g for g, n in names.items())
    return f"CPU: {hw.cpu} ({hw.cpu_count} cores)"


# --------------------------------------------------------------------------- comparability checks

# What must be equal for two records' scores to be compared: (label, value of a record).
# Checked across the seeds of a row and against the task's reference (its most common value).
TASK_CHECKS: tuple[tuple[str, Callable[[RunRecord], object]], ...] = (
    ("evaluated ids (ids_sha256)", lambda r: r.dataset.ids_sha256),
    ("dataset", lambda r: (r.dataset.path, r.dataset.name, r.dataset.revision, r.dataset.split)),
    ("task definition (task_sha256)", lambda r: r.task_sha256),
)
# Checked across the seeds of a row only: rows are different models by design, and the prompt
# may legitimately differ per model family (the task's own prompt is covered by task_sha256).
ROW_CHECKS: tuple[tuple[str, Callable[[RunRecord], object]], ...] = (
    ("model (manifest_sha256)", lambda r: r.model.manifest_sha256),
    ("prompt", lambda r: r.prompt),
)


# --------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class MetricColumn:
    """A metric under fixed settings: only scores in the same column are comparable."""

    id: str
    metric: str
    higher_is_better: bool
    details: Details

    @property
    def label(self) -> str:
        return METRIC_LABELS.get(self.metric, self.metric)

    @property
    def backbone(self) -> str | None:
        value = dict(self.details).get("backbone")
        return None if value is None else str(value)

    @property
    def details_text(self) -> str:
        return _details_text(self.details)

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass
class MetricCell:
    column: MetricColumn
    seeds: list[int]
    values: list[float]
    comparable: bool = True
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def display(self) -> str:
        return f"{fmt_score(self.mean)} ± {fmt_score(self.std)}"


@dataclass
class EfficiencyCell:
    column: EfficiencyColumn
    value: float | None

    @property
    def display(self) -> str:
        return "—" if self.value is None else self.column.fmt(self.value)

    @property
    def raw(self) -> str:
        """The value for data- attributes; empty when not measured."""
        return "" if self.value is None else repr(self.value)


@dataclass
class RecordRef:
    """Where one aggregated number came from."""

    task: str
    variant: str
    seed: int
    path: str  # relative to the results folder
    sha256: str  # of the record file as read


@dataclass
class Row:
    task: str
    variant: str
    description: str
    techniques: list[str]
    records: list[RunRecord]
    refs: list[RecordRef]
    cells: dict[str, MetricCell] = field(default_factory=dict)  # by column id
    efficiency: dict[str, EfficiencyCell] = field(default_factory=dict)
    hardware: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scores_comparable: bool = True

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    @property
    def n_seeds(self) -> int:
        return len(self.records)

    @property
    def hardware_text(self) -> str:
        return " | ".join(dict.fromkeys(self.hardware))

    @property
    def reproduce(self) -> str:
        # Ids come from untrusted records: quote them so a pasted command runs nothing else.
        task, variant = shlex.quote(self.task), shlex.quote(self.variant)
        return f"rocobench run --task {task} --variant {variant}"


@dataclass
class TaskTable:
    task: str
    task_versions: list[str]
    reference: RunRecord  # a record matching every reference value: the header describes it
    columns: list[MetricColumn]
    efficiency_columns: list[EfficiencyColumn]
    rows: list[Row]

    @property
    def dataset_label(self) -> str:
        d = self.reference.dataset
        name = f" ({d.name})" if d.name else ""
        return f"{d.path}{name}, split {d.split}"


@dataclass
class Site:
    tables: list[TaskTable]
    refs: list[RecordRef]
    provenance: dict[str, Any]


# --------------------------------------------------------------------------- aggregation


def _details_key(details: dict[str, Any]) -> Details:
    return tuple(sorted(details.items()))


def _short_hash(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


def _metric_columns(records: Sequence[RunRecord]) -> list[MetricColumn]:
    """One column per (metric, direction, details); ids stay readable: name[@backbone][~hash]."""
    keys = {
        (name, mv.higher_is_better, _details_key(mv.details))
        for r in records
        for name, mv in r.metrics.items()
    }
    base_ids: dict[tuple[str, bool, Details], str] = {}
    for name, hib, details in keys:
        backbone = dict(details).get("backbone")
        base_ids[(name, hib, details)] = name if backbone is None else f"{name}@{backbone}"
    clashes = Counter(base_ids.values())
    columns = [
        MetricColumn(
            id=base if clashes[base] == 1 else f"{base}~{_short_hash([hib, list(details)])}",
            metric=name,
            higher_is_better=hib,
            details=details,
        )
        for (name, hib, details), base in base_ids.items()
    ]
    return sorted(columns, key=_column_order)


def _column_order(column: MetricColumn) -> tuple[int, str, str]:
    order = list(METRIC_LABELS)
    rank = order.index(column.metric) if column.metric in order else len(order)
    return (rank, column.metric, column.id)


def _reference(records: Sequence[RunRecord], value: Callable[[RunRecord], T]) -> T:
    # most_common keeps first-seen order on ties, and records come sorted: deterministic.
    return Counter(value(r) for r in records).most_common(1)[0][0]


def _check_row(row: Row, references: dict[str, object]) -> None:
    for label, value in TASK_CHECKS + ROW_CHECKS:
        seen = {value(r) for r in row.records}
        if len(seen) > 1:
            row.warnings.append(
                f"seeds disagree on {label}, {len(seen)} distinct values: "
                "averaged here, but not comparable"
            )
            row.scores_comparable = False
        elif label in references and seen != {references[label]}:
            row.warnings.append(
                f"{label} differs from this task's reference shown above: "
                "not comparable with the other rows"
            )
            row.scores_comparable = False
    if len(set(row.hardware)) > 1:
        row.warnings.append("seeds ran on different hardware: efficiency figures mix them")


def _aggregate_row(row: Row, columns: Sequence[MetricColumn]) -> None:
    by_key = {(c.metric, c.higher_is_better, c.details): c for c in columns}
    for r in row.records:
        for name, mv in r.metrics.items():
            column = by_key[(name, mv.higher_is_better, _details_key(mv.details))]
            cell = row.cells.setdefault(column.id, MetricCell(column, [], []))
            cell.seeds.append(r.seed)
            cell.values.append(mv.value)
    # A metric reported under several settings within one row is split, never averaged together.
    per_metric = Counter(cell.column.metric for cell in row.cells.values())
    for metric, n in sorted(per_metric.items()):
        if n > 1:
            label = METRIC_LABELS.get(metric, metric)
            row.warnings.append(
                f"seeds disagree on {label} settings: each setting is shown in its own column"
            )
    for cell in row.cells.values():
        cell.comparable = row.scores_comparable and cell.n == row.n_seeds
    for col in EFFICIENCY_COLUMNS:
        values = [v for v in (col.extract(r) for r in row.records) if v is not None]
        row.efficiency[col.key] = EfficiencyCell(col, statistics.mean(values) if values else None)


def _mark_best(table: TaskTable) -> None:
    """Bold the best mean per column; ties at the shown precision are all marked.

    Only comparable, finite cells compete, and a column needs two of them: a lone entry is not
    "best" of anything.
    """
    for column in table.columns:
        cells = [
            cell
            for row in table.rows
            if (cell := row.cells.get(column.id)) is not None
            and cell.comparable
            and math.isfinite(cell.mean)
        ]
        if len(cells) < 2:
            continue
        shown = [round(c.mean, DECIMALS) for c in cells]
        best = max(shown) if column.higher_is_better else min(shown)
        for cell, value in zip(cells, shown, strict=True):
            cell.best = value == best


def _build_table(task: str, group: list[tuple[RecordRef, RunRecord]]) -> TaskTable:
    records = [r for _, r in group]
    # The reference is the most common combination of everything that decides comparability, so
    # the header always describes at least one real record and the majority of rows.
    joint = _reference(records, lambda r: tuple(value(r) for _, value in TASK_CHECKS))
    reference = next(r for r in records if tuple(value(r) for _, value in TASK_CHECKS) == joint)
    references = {label: v for (label, _), v in zip(TASK_CHECKS, joint, strict=True)}
    columns = _metric_columns(records)
    rows: dict[str, Row] = {}
    for ref, r in group:
        row = rows.get(r.variant)
        if row is None:
            row = rows[r.variant] = Row(
                task, r.variant, r.variant_description, list(r.techniques), [], []
            )
        row.records.append(r)
        row.refs.append(ref)
        row.hardware.append(hardware_label(r))
    for row in rows.values():
        _check_row(row, references)
        _aggregate_row(row, columns)
    efficiency = [
        col
        for col in EFFICIENCY_COLUMNS
        if any(row.efficiency[col.key].value is not None for row in rows.values())
    ]
    table = TaskTable(
        task=task,
        task_versions=sorted({r.task_version for r in records}),
        reference=reference,
        columns=columns,
        efficiency_columns=efficiency,
        rows=sorted(rows.values(), key=lambda row: row.variant),
    )
    _mark_best(table)
    return table


def _provenance(records: Sequence[RunRecord]) -> dict[str, Any]:
    shas: dict[str, bool] = {}
    for r in records:
        sha = r.provenance.git_sha or "unknown"
        shas[sha] = shas.get(sha, False) or bool(r.provenance.git_dirty)
    hardware = sorted(
        {
            (
                r.provenance.hardware.device,
                r.provenance.hardware.cpu,
                r.provenance.hardware.cpu_count,
                tuple(r.provenance.hardware.gpus),
            )
            for r in records
        }
    )
    created = sorted(r.provenance.created_at for r in records)
    return {
        "rocobench_versions": sorted({r.provenance.rocobench_version for r in records}),
        "git_shas": [{"sha": sha, "dirty": dirty} for sha, dirty in sorted(shas.items())],
        "hardware": [
            {"device": d, "cpu": cpu, "cpu_count": n, "gpus": list(gpus)}
            for d, cpu, n, gpus in hardware
        ],
        "created_at": {"first": created[0], "last": created[-1]},
        "n_records": len(records),
    }


def load_site(results_dir: Path) -> Site:
    """Read and aggregate every record under `results_dir` (no files written)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results folder {results_dir} does not exist")
    found = find_records(results_dir)
    if not found:
        raise ValueError(f"no run records ({RECORD_FILE}) found under {results_dir}")
    pairs = [
        (
            RecordRef(
                r.task,
                r.variant,
                r.seed,
                path.relative_to(results_dir).as_posix(),
                hashlib.sha256(path.read_bytes()).hexdigest(),
            ),
            r,
        )
        for path, r in found
    ]
    by_task: dict[str, list[tuple[RecordRef, RunRecord]]] = {}
    for ref, r in pairs:
        by_task.setdefault(r.task, []).append((ref, r))
    tables = [_build_table(task, group) for task, group in sorted(by_task.items())]
    return Site(tables, [ref for ref, _ in pairs], _provenance([r for _, r in pairs]))


# --------------------------------------------------------------------------- outputs


def _finite(value: float | None) -> float | None:
    """NaN and infinities as null: results.json must stay standard JSON."""
    return value if value is None or math.isfinite(value) else None


def site_to_json(site: Site) -> dict[str, Any]:
    """The aggregated table as plain data: the stable contract for other readers of the site."""
    tasks = []
    for t in site.tables:
        ref = t.reference
        tasks.append(
            {
                "task": t.task,
                "task_versions": t.task_versions,
                "reference": {
                    "task_version": ref.task_version,
                    "task_sha256": ref.task_sha256,
                    "prompt": ref.prompt,
                    "dataset": ref.dataset.model_dump(mode="json"),
                },
                "metric_columns": [
                    {
                        "id": c.id,
                        "metric": c.metric,
                        "label": c.label,
                        "higher_is_better": c.higher_is_better,
                        "details": dict(c.details),
                    }
                    for c in t.columns
                ],
                "rows": [
                    {
                        "variant": row.variant,
                        "description": row.description,
                        "techniques": row.techniques,
                        "n_seeds": row.n_seeds,
                        "seeds": row.seeds,
                        "metrics": {
                            cid: {
                                "mean": _finite(c.mean),
                                "std": _finite(c.std),
                                "n": c.n,
                                "seeds": c.seeds,
                                "values": [_finite(v) for v in c.values],
                                "comparable": c.comparable,
                                "best": c.best,
                            }
                            for cid, c in row.cells.items()
                        },
                        "efficiency": {k: _finite(c.value) for k, c in row.efficiency.items()},
                        "hardware": sorted(set(row.hardware)),
                        "warnings": row.warnings,
                        "records": [ref.path for ref in row.refs],
                    }
                    for row in t.rows
                ],
            }
        )
    return {
        "format_version": RESULTS_FORMAT_VERSION,
        "std": "sample standard deviation over seeds (ddof=1); 0 for one seed",
        "tasks": tasks,
        "records": [asdict(ref) for ref in site.refs],
        "provenance": site.provenance,
    }


def _csv_text(value: str) -> str:
    """Defuse spreadsheet formulas in untrusted text (results.json keeps the exact value)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def csv_rows(site: Site) -> tuple[list[str], list[dict[str, Any]]]:
    """One line per (task, variant); metric columns by id (`<id>_mean`, `<id>_std`, `<id>_n`)."""
    columns = {c.id: c for t in site.tables for c in t.columns}
    metric_ids = [c.id for c in sorted(columns.values(), key=_column_order)]
    header = ["task", "variant", "n_seeds", "seeds"]
    header += [f"{cid}_{part}" for cid in metric_ids for part in ("mean", "std", "n")]
    header += [c.key for c in EFFICIENCY_COLUMNS] + ["hardware", "warnings"]
    lines = []
    for t in site.tables:
        for row in t.rows:
            line: dict[str, Any] = {
                "task": _csv_text(row.task),
                "variant": _csv_text(row.variant),
                "n_seeds": row.n_seeds,
                "seeds": " ".join(map(str, row.seeds)),
                "hardware": _csv_text(row.hardware_text),
                "warnings": _csv_text(" | ".join(row.warnings)),
            }
            for cid, cell in row.cells.items():
                line |= {f"{cid}_mean": cell.mean, f"{cid}_std": cell.std, f"{cid}_n": cell.n}
            line |= {k: c.value for k, c in row.efficiency.items()}
            lines.append(line)
    return header, lines


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=jinja2.select_autoescape(["html", "html.j2", "j2"]),
        undefined=jinja2.StrictUndefined,  # a typo in the template fails the render
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["short"] = lambda s, n=12: s if s is None or len(s) <= n else s[:n]
    return env


def render_html(site: Site) -> str:
    # Our own stylesheet, inlined so the page works from file://; never record content.
    css = Markup((PACKAGE_DIR / "static" / "style.css").read_text(encoding="utf-8"))
    template = _environment().get_template("index.html.j2")
    return template.render(site=site, css=css, decimals=DECIMALS)


def render_site(results_dir: Path, site_dir: Path) -> Path:
    """Render `site_dir/index.html`, `results.json` and `results.csv`; return the index path.

    Raises ValueError if `results_dir` holds no records.
    """
    site = load_site(Path(results_dir))
    site_dir = Path(site_dir)
    # Render everything before writing anything, so a failure leaves the previous site intact.
    page, data = render_html(site), site_to_json(site)
    header, lines = csv_rows(site)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    write_json(site_dir / "results.json", data)
    with atomic_writer(site_dir / "results.csv") as fh:
        fh.write(table.getvalue())
    index = site_dir / "index.html"
    with atomic_writer(index) as fh:
        fh.write(page)
    return index
