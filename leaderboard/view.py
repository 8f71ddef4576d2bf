"""The leaderboard's view model: records aggregated into task tables, rows and cells.

Built from records only (`harness.records.store.find_records`). Every string in a record is
untrusted
(community submissions); this module only computes, the templates escape.

Scores are put side by side only when they are comparable:
- a metric column is a metric name *plus* its details (the BERTScore backbone, tokenizer, …), so
  scores from different backbones land in different columns and are never ranked together;
- rows whose seeds disagree on what was evaluated (ids, dataset, task, prompt, model), or that
  differ from the task's reference, carry a visible warning and cannot be marked best.

Records gain fields over time (confidence intervals, energy, latency …): they are read
defensively, so that the page works with records written before and after such a field existed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.metrics import METRICS, RESULT_DETAILS
from harness.records.layout import RECORD_FILE
from harness.records.record import RunRecord
from leaderboard.costs import EFFICIENCY_COLUMNS, EfficiencyColumn, hardware_label
from leaderboard.formatting import fmt_score
from leaderboard.significance import BOOTSTRAP_METHOD, clip, mark_best, seeds_interval, t975
from leaderboard.significance import apply as per_image_statistics


def metric_label(name: str) -> str:
    """A metric's heading, as its registration gives it; a metric this version does not know
    (a newer record) keeps its raw name."""
    return METRICS.get(name).display if name in METRICS else name


def metric_rank(name: str) -> int:
    """A metric's column position (Table I's order first); unknown metrics after the known."""
    return METRICS.get(name).order if name in METRICS else 10**6


Details = tuple[tuple[str, Any], ...]
T = TypeVar("T")


def _details_text(details: Details) -> str:
    return " · ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in details)


# --------------------------------------------------------------------------- reading records


def flat_fields(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`phases.load.wall_s`), for the provenance tables."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flat_fields(value, f"{name}.")
        else:
            out[name] = value
    return out


def length_mode(r: RunRecord) -> str:
    """`natural`, or `fixed-N` for a run forced to generate exactly N new tokens per image."""
    m = r.measurements
    return f"fixed-{m.fixed_new_tokens}" if m.length_mode == "fixed" else "natural"


# --------------------------------------------------------------------------- comparability checks


def _dataset_identity(r: RunRecord) -> object:
    d = r.dataset
    # A local folder is identified by its content hash: the same data under another path (a
    # relative one, another checkout) is the same data.
    if d.revision and d.revision.startswith("sha256:"):
        return (d.name, d.revision, d.split)
    return (d.path, d.name, d.revision, d.split)


# What must be equal for two records' scores to be compared: (label, value of a record).
# Checked across the seeds of a row and against the task's reference (its most common value).
TASK_CHECKS: tuple[tuple[str, Callable[[RunRecord], object]], ...] = (
    ("evaluated ids (ids_sha256)", lambda r: r.dataset.ids_sha256),
    ("dataset", _dataset_identity),
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
        return metric_label(self.metric)

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
    run_cis: list[tuple[float, float] | None] = field(default_factory=list)  # per seed, if any
    comparable: bool = True
    best: bool = False
    tied: bool = False  # in the group the paired test cannot tell from the top
    # Set by leaderboard.significance from the runs' per-image data, when it reproduces the score
    observed: float = math.nan  # the score recomputed from the per-image data
    draws: Any = None  # the score on each bootstrap resample of the images (numpy array)
    image_ids: tuple[str, ...] = ()
    boot_ci: tuple[float, float] | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1); 0 for a single seed; NaN if a value is not finite."""
        if not all(math.isfinite(v) for v in self.values):
            return math.nan
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def ci95(self) -> tuple[float, float] | None:
        """95 % interval of the mean: a bootstrap over images when the per-image data allows it,
        else Student t over seeds, else the run's own interval; always within the metric's range."""
        if self.boot_ci is not None:
            return self.boot_ci
        if self.n > 1:
            return seeds_interval(self.values, self.column.metric)
        return (
            clip(self.run_cis[0], self.column.metric) if self.run_cis and self.run_cis[0] else None
        )

    @property
    def ci_method(self) -> str:
        if self.boot_ci is not None:
            seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
            return f"{BOOTSTRAP_METHOD} ({len(self.image_ids)} images, {seeds})"
        if self.n > 1:
            return f"Student t over {self.n} seeds"
        return "the run's own interval" if self.ci95 else "none (one seed)"

    @property
    def display(self) -> str:
        return f"{fmt_score(self.mean)} ± {fmt_score(self.std)}"

    @property
    def ci_display(self) -> str:
        ci = self.ci95
        return "" if ci is None else f"[{fmt_score(ci[0])}, {fmt_score(ci[1])}]"


@dataclass
class EfficiencyCell:
    column: EfficiencyColumn
    value: float | None
    best: bool = False
    estimated: bool = False  # at least one seed's figure is a model estimate, not a measurement
    values: list[float] = field(default_factory=list)  # per seed

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for fewer than two."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def spread(self) -> str:
        """`± std` in the column's unit, or empty (one seed, or a figure without spread)."""
        std = self.std
        return "" if std is None or std == 0 else f"± {self.column.fmt(std)}"

    @property
    def ci95(self) -> tuple[float, float] | None:
        std = self.std
        if std is None or self.value is None:
            return None
        half = t975(len(self.values) - 1) * std / math.sqrt(len(self.values))
        return (self.value - half, self.value + half)

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
    path: str  # relative to its source (the results folder)
    sha256: str  # of the record file as read
    source: str = ""  # the folder or hf:// dataset it was read from
    contributor: str = ""  # "" for the source owner's own runs
    status: str = ""  # verified | checked | rejected (harness.analysis.verify)
    reasons: list[str] = field(default_factory=list)  # why rejected


SAFE_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def slug(text: str) -> str:
    """A file-name-safe form of an untrusted id; a hash suffix keeps different ids apart."""
    if SAFE_SLUG.fullmatch(text) and ".." not in text:
        return text
    readable = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


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
    mode: str = "natural"  # or fixed-N: a speed run with exactly N new tokens per image
    backend: str = "hf"  # generation engine; each backend's runs are a row of their own
    backend_version: str | None = None
    notes: list[str] = field(default_factory=list)  # facts worth knowing that are not problems
    anchor: str = ""  # element id on the index page, set once every row is known
    contributor: str = ""
    duplicate: int = 0  # > 0: another record set of the same key exists; both are shown

    @property
    def status(self) -> str:
        """The weakest status of the row's records: one rejected seed rejects the row."""
        statuses = {ref.status for ref in self.refs}
        for status in ("rejected", "checked", "verified"):
            if status in statuses:
                return status
        return ""

    @property
    def status_reasons(self) -> list[str]:
        return [f"seed {ref.seed}: {why}" for ref in self.refs for why in ref.reasons]

    deltas: dict[str, Any] = field(default_factory=dict)  # column id -> significance.Delta
    stats_note: str | None = None  # why intervals come from seeds only

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
    def fixed_tokens(self) -> str | None:
        return self.mode.removeprefix("fixed-") if self.mode != "natural" else None

    @property
    def backend_label(self) -> str | None:
        """ "vLLM 0.32.0" for rows of the vLLM backend; None for transformers (the default)."""
        if self.backend == "hf":
            return None
        name = {"vllm": "vLLM"}.get(self.backend, self.backend)
        return f"{name} {self.backend_version}" if self.backend_version else name

    @property
    def base_model(self) -> str:
        return self.records[0].model.base

    @property
    def family(self) -> str:
        return self.records[0].model.family

    @property
    def page(self) -> str:
        """The variant page, relative to the site root."""
        return f"v/{self.anchor}.html"

    @property
    def techniques_json(self) -> str:
        return json.dumps(self.techniques, ensure_ascii=False)

    @property
    def modality_confusion(self) -> ModalityConfusion | None:
        return modality_confusion(self.records)

    @property
    def reproduce(self) -> str:
        import shlex

        # Ids come from untrusted records: quote them so a pasted command runs nothing else.
        task, variant = shlex.quote(self.task), shlex.quote(self.variant)
        backend = "" if self.backend == "hf" else f" --backend {shlex.quote(self.backend)}"
        return f"rocobench run --task {task} --variant {variant}{backend}"


@dataclass(frozen=True)
class ModalityConfusion:
    """modality_acc's confusion counts summed over a row's seeds: counts[i][j] images whose
    reference modality is references[i] and whose caption named predictions[j]."""

    references: list[str]
    predictions: list[str]
    counts: list[list[int]]
    n_seeds: int


def modality_confusion(records: Sequence[RunRecord]) -> ModalityConfusion | None:
    """From the `confusion` detail of modality_acc (JSON {reference: {predicted: count}}); a
    malformed detail, as an untrusted record may hold, is left out."""
    total: Counter[tuple[str, str]] = Counter()
    seeds = 0
    for r in records:
        mv = r.metrics.get("modality_acc")
        raw = mv.details.get("confusion") if mv is not None else None
        try:
            table = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            table = None
        if not isinstance(table, dict):
            continue
        cells = [
            (str(ref), str(pred), n)
            for ref, row in table.items()
            if isinstance(row, dict)
            for pred, n in row.items()
            if isinstance(n, int) and not isinstance(n, bool) and n >= 0
        ]
        seeds += 1
        for ref, pred, n in cells:
            total[(ref, pred)] += n
    if not total:
        return None
    refs = sorted({ref for ref, _ in total})
    preds = sorted({pred for _, pred in total} | set(refs))
    return ModalityConfusion(
        refs, preds, [[total[(ref, pred)] for pred in preds] for ref in refs], seeds
    )


@dataclass
class TaskTable:
    task: str
    task_versions: list[str]
    reference: RunRecord  # a record matching every reference value: the header describes it
    columns: list[MetricColumn]
    efficiency_columns: list[EfficiencyColumn]  # those with at least one value
    rows: list[Row]
    anchor: str = ""

    @property
    def shown_efficiency(self) -> list[EfficiencyColumn]:
        return [c for c in self.efficiency_columns if c.shown]

    @property
    def dataset_label(self) -> str:
        d = self.reference.dataset
        name = f" ({d.name})" if d.name else ""
        return f"{d.path}{name}, split {d.split}"

    @property
    def hardware(self) -> list[str]:
        return list(dict.fromkeys(h for row in self.rows for h in row.hardware))

    @property
    def bases(self) -> list[str]:
        return sorted({row.base_model for row in self.rows})

    @property
    def techniques(self) -> list[str]:
        return sorted({t for row in self.rows for t in row.techniques})

    @property
    def missing_efficiency(self) -> list[EfficiencyColumn]:
        present = {c.key for c in self.efficiency_columns}
        return [c for c in EFFICIENCY_COLUMNS if c.shown and c.key not in present]


@dataclass
class Site:
    tables: list[TaskTable]
    refs: list[RecordRef]
    provenance: dict[str, Any]
    results_dir: Path = Path("results")
    roots: dict[str, Path] = field(default_factory=dict)  # source -> local folder of its files
    skipped: list[str] = field(default_factory=list)  # records left out, with the reason
    twins: bool = False  # some record is an embedded twin or ran on synthetic data

    def record_path(self, ref: RecordRef) -> Path:
        return self.roots.get(ref.source, self.results_dir) / ref.path

    @property
    def n_variants(self) -> int:
        return len({row.variant for t in self.tables for row in t.rows})


# --------------------------------------------------------------------------- aggregation


def _details_key(details: dict[str, Any]) -> Details:
    """A metric's settings: its details less those that report results (RESULT_DETAILS, such as
    a confusion matrix), so runs scored the same way share a column."""
    return tuple(sorted((k, v) for k, v in details.items() if k not in RESULT_DETAILS))


details_key = _details_key


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
    return sorted(columns, key=column_order)


def column_order(column: MetricColumn) -> tuple[int, str, str]:
    return (metric_rank(column.metric), column.metric, column.id)


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
    errors = [len(r.errors) for r in row.records]
    if any(errors):
        # Scored as empty captions (nothing dropped), but a data problem to fix before publishing.
        row.warnings.append(
            f"{sum(errors)} image(s) could not be loaded across {sum(e > 0 for e in errors)} "
            "seed(s): scored as empty captions"
        )


def _aggregate_row(row: Row, columns: Sequence[MetricColumn]) -> None:
    by_key = {(c.metric, c.higher_is_better, c.details): c for c in columns}
    for r in row.records:
        for name, mv in r.metrics.items():
            column = by_key[(name, mv.higher_is_better, _details_key(mv.details))]
            cell = row.cells.setdefault(column.id, MetricCell(column, [], []))
            cell.seeds.append(r.seed)
            cell.values.append(mv.value)
            cell.run_cis.append(mv.ci95)
    # A metric reported under several settings within one row is split, never averaged together.
    per_metric = Counter(cell.column.metric for cell in row.cells.values())
    for metric, n in sorted(per_metric.items()):
        if n > 1:
            label = metric_label(metric)
            row.warnings.append(
                f"seeds disagree on {label} settings: each setting is shown in its own column"
            )
    for cell in row.cells.values():
        cell.comparable = row.scores_comparable and cell.n == row.n_seeds
    for col in EFFICIENCY_COLUMNS:
        values = [v for v in (col.extract(r) for r in row.records) if v is not None]
        row.efficiency[col.key] = EfficiencyCell(
            col,
            statistics.mean(values) if values else None,
            estimated=bool(values)
            and col.estimated is not None
            and any(col.estimated(r) for r in row.records),
            values=values,
        )


def _mark_best(table: TaskTable) -> None:
    """Mark what stands out, only where the data says so.

    Quality: `leaderboard.significance.mark_best` (a paired test against the runner-up, else
    a tied group). Costs: the lowest figure, when its interval over seeds does not overlap the
    runner-up's (a figure without spread, such as a size, needs no test). Only comparable, finite
    cells compete, and a column needs two of them that differ. Time, memory and energy compete
    only between rows measured on the same hardware: across machines the lowest figure says more
    about the machine than the model.
    """
    mark_best(table)
    for ecol in table.efficiency_columns:
        if ecol.lower_is_better is None:
            continue
        # Hardware-bound figures compete within one machine's rows (one best per machine).
        groups: dict[str, list[EfficiencyCell]] = {}
        for row in table.rows:
            ecell = row.efficiency[ecol.key]
            if ecell.value is None or not (row.scores_comparable or not ecol.hardware_bound):
                continue
            machine = row.hardware_text if ecol.hardware_bound else ""
            groups.setdefault(machine, []).append(ecell)
        for ecells in groups.values():
            _mark_best_cost(ecol, ecells)


def _mark_best_cost(ecol: EfficiencyColumn, ecells: list[EfficiencyCell]) -> None:
    """The lowest (or highest) cost of one machine's rows; a measured figure only when its
    interval over seeds does not overlap the runner-up's."""
    if len(ecells) < 2:
        return
    texts = [ecol.fmt(c.value) for c in ecells if c.value is not None]
    values = [c.value for c in ecells if c.value is not None]
    if len(set(texts)) == 1:
        return
    winner = ecol.fmt(min(values) if ecol.lower_is_better else max(values))
    leaders = [c for c, text in zip(ecells, texts, strict=True) if text == winner]
    chasers = [c for c, text in zip(ecells, texts, strict=True) if text != winner]
    sign = 1 if ecol.lower_is_better else -1
    runner = min(chasers, key=lambda c: sign * (c.value or 0.0))
    if ecol.hardware_bound:
        ahead = all(
            c.ci95 is not None
            and runner.ci95 is not None
            and (c.ci95[1] < runner.ci95[0] if sign == 1 else c.ci95[0] > runner.ci95[1])
            for c in leaders
        )
        if not ahead:
            return
    for ecell in leaders:
        ecell.best = True


def _build_table(task: str, group: list[tuple[RecordRef, RunRecord]]) -> TaskTable:
    records = [r for _, r in group]
    # The reference is the most common combination of everything that decides comparability, so
    # the header always describes at least one real record and the majority of rows.
    joint = _reference(records, lambda r: tuple(value(r) for _, value in TASK_CHECKS))
    reference = next(r for r in records if tuple(value(r) for _, value in TASK_CHECKS) == joint)
    references = {label: v for (label, _), v in zip(TASK_CHECKS, joint, strict=True)}
    columns = _metric_columns(records)
    rows: dict[tuple[str, str], Row] = {}
    for ref, r in group:
        # Fixed-length speed runs are rows of their own: their captions are cut or padded. So are
        # each machine's and each contributor's runs, each backend's (their sampled captions
        # differ), and a second record of one seed (kept and shown beside the first, never
        # averaged with it).
        base = (r.variant, length_mode(r), r.backend.name, hardware_label(r), ref.contributor)
        occurrence = 0
        while (key := (*base, occurrence)) in rows and r.seed in rows[key].seeds:
            occurrence += 1
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(
                task, r.variant, r.variant_description, list(r.techniques), [], [], mode=key[1],
                backend=key[2], backend_version=r.backend.version if key[2] != "hf" else None,
            )  # fmt: skip
            row.contributor, row.duplicate = ref.contributor, occurrence
            if occurrence:
                row.warnings.append(
                    "a second record of the same task, variant, seed, hardware and contributor: "
                    "both are shown, neither is ranked"
                )
                row.scores_comparable = False
        row.records.append(r)
        row.refs.append(ref)
        row.hardware.append(hardware_label(r))
    for row in rows.values():
        _check_row(row, references)
        if row.fixed_tokens is not None:
            row.scores_comparable = False
            row.notes.append(
                f"speed run: exactly {row.fixed_tokens} new tokens per image, end of sequence "
                "ignored; its scores are not ranked"
            )
        if row.backend_label is not None:
            row.notes.append(
                f"generated with {row.backend_label}: greedy captions match transformers' on the "
                "twins; sampled captions are reproducible within this backend but differ from "
                "transformers' (its own row, never averaged with them)"
            )
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
        rows=[
            rows[key] for key in sorted(rows, key=lambda k: (k[0], k[1] != "natural", k[1], k[2:]))
        ],
    )
    _mark_best(table)
    return table


def _assign_anchors(tables: Sequence[TaskTable]) -> None:
    """Element ids and page names: `<task>--<variant>`, unique over the site."""
    used: set[str] = set()
    for table in tables:
        table.anchor = slug(table.task)
        for row in table.rows:
            anchor = f"{table.anchor}--{slug(row.variant)}"
            if row.mode != "natural":
                anchor += f"--{slug(row.mode)}"
            if row.backend != "hf":
                anchor += f"--{slug(row.backend)}"
            # A contributor's rows never rename the owner's pages (links stay valid).
            machines = {
                r.hardware_text
                for r in table.rows
                if (r.variant, r.mode, r.backend, r.contributor)
                == (row.variant, row.mode, row.backend, row.contributor)
            }
            if len(machines) > 1:
                anchor += f"--{slug(row.hardware_text)}"
            if row.contributor:
                anchor += f"--by-{slug(row.contributor)}"
            if row.duplicate:
                anchor += f"--{row.duplicate + 1}"
            if anchor in used:  # two ids that slug alike: the full hash tells them apart
                digest = hashlib.sha256(f"{row.task}\0{row.variant}".encode()).hexdigest()[:12]
                anchor = f"{anchor}-{digest}"
            used.add(anchor)
            row.anchor = anchor


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


def is_twin(r: RunRecord) -> bool:
    """An embedded twin, or a run on the bundled (synthetic) images: says nothing of real models."""
    return r.model.base.startswith("twin:") or r.dataset.path.endswith("rocov2_sample")


def load_site(
    results_dir: Path | str,
    *,
    sources: Any = None,
    trusted: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> Site:
    """Read, check and aggregate every record under `results_dir`, or of every source in
    `sources` (`harness.records.sources.Sources`, read with `open_sources`); no files written.

    Each record is checked on read (`harness.analysis.verify`, depth `samples`): one that
    cannot be read, or whose numbers are not finite, is left out and reported through `log`
    with its path; any other failed check marks it `rejected` on the page.
    """
    from harness.analysis.verify import record_key, verify_paths
    from harness.records.sources import SourceError, open_sources

    log = log or (lambda line: None)
    if sources is None:
        results_dir = Path(results_dir)
        if not results_dir.is_dir():
            raise ValueError(f"results folder {results_dir} does not exist")
        try:
            sources = open_sources([str(results_dir)])
        except SourceError as err:
            raise ValueError(str(err)) from None
    files = sources.files
    trusted_set = set(trusted)
    verdicts = verify_paths(
        (
            (f.path, f.label, f.contributor, f.source in trusted_set and not f.contributor)
            for f in files
        ),
        depth="samples",
    )
    kept = []
    skipped = []
    seen: set[tuple[Any, str]] = set()
    for f, v in zip(files, verdicts, strict=True):
        r = v.record
        if r is None or any("not finite" in why for why in v.reasons):
            skipped.append(f"{v.path}: skipped: {'; '.join(v.reasons)}")
            continue
        if r.model.random_weights:
            continue  # `--random-weights` runs time an architecture with noise for captions
        digest = hashlib.sha256(f.path.read_bytes()).hexdigest()
        if (record_key(v), digest) in seen:
            continue  # the very same record in two sources (a folder and its dataset): once
        seen.add((record_key(v), digest))
        kept.append((f, r, v, digest))
    for line in skipped:
        log(line)
    if not kept:
        where = ", ".join(sources.roots) or str(results_dir)
        raise ValueError(f"no run records ({RECORD_FILE}) found under {where}")
    pairs = [
        (
            RecordRef(
                r.task,
                r.variant,
                r.seed,
                f.rel,
                digest,
                source=f.source,
                contributor=f.contributor,
                status=v.status,
                reasons=list(v.reasons),
            ),
            r,
        )
        for f, r, v, digest in kept
    ]
    pairs.sort(key=lambda pr: (pr[1].run_key, pr[0].contributor, pr[0].source, pr[0].path))
    by_task: dict[str, list[tuple[RecordRef, RunRecord]]] = {}
    for ref, r in pairs:
        by_task.setdefault(r.task, []).append((ref, r))
    tables = [_build_table(task, group) for task, group in sorted(by_task.items())]
    roots, base = dict(sources.roots), Path(results_dir) if results_dir else Path(".")
    for table in tables:
        per_image_statistics(table, lambda ref: roots.get(ref.source, base) / ref.path)
    _assign_anchors(tables)
    return Site(
        tables,
        [ref for ref, _ in pairs],
        _provenance([r for _, r in pairs]),
        base,
        roots=roots,
        skipped=skipped,
        twins=any(is_twin(r) for _, r in pairs),
    )
