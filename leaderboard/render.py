"""Render the static leaderboard from RunRecords: index, a page per variant, results.json/.csv.

The site is built from records only (plus, for thumbnails, the evaluated dataset when it is on
this machine). Every string in a record is untrusted (community submissions): the templates
autoescape, no record text is marked safe, and each page carries a Content-Security-Policy that
lets only our own inline script and style run and loads nothing from anywhere else.

Layout of SITE_DIR (every link relative, so the folder works from file:// and any static host):

    index.html            the table, filters and Pareto plots of every task
    v/<task>--<variant>.html   one page per row: manifest, provenance, per-seed figures, samples
    thumbs/<task>/<hash>.jpg   small thumbnails for the sample browser (when the data is local)
    results.json, results.csv  the aggregated numbers, with the records they came from
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.records.record import RunRecord
from harness.records.store import atomic_writer, write_json
from leaderboard.costs import EFFICIENCY_BY_KEY, EFFICIENCY_COLUMNS, EfficiencyColumn, memory_method
from leaderboard.formatting import DECIMALS, fmt_bytes, fmt_score, fmt_value
from leaderboard.plots import SHAPES, Point, chain_label, legend, pareto_svg
from leaderboard.samples import SampleSet, make_thumbnails, read_samples
from leaderboard.swap import new_site
from leaderboard.view import (
    MetricColumn,
    RecordRef,
    Row,
    Site,
    TaskTable,
    column_order,
    details_key,
    flat_fields,
    load_site,
    metric_label,
)

RESULTS_FORMAT_VERSION = 3  # 2: ci95 per metric, energy and best flags per efficiency figure
# 3: bootstrap ci95 over images, tied flags, delta to the base, est. flags and spread of costs
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MAX_SAMPLES = 200  # per seed on a variant page; every sample stays in samples.jsonl
PLOT_AXES = ("memory", "s_per_image", "energy_j_per_image")

# RunRecord fields the variant page shows in their own sections; any other field (added by a
# newer schema) is listed as it is under "Other record fields".
KNOWN_RECORD_FIELDS = frozenset(
    {
        "schema_version",
        "task",
        "task_version",
        "task_sha256",
        "variant",
        "variant_description",
        "techniques",
        "seed",
        "batch_size",
        "generation",
        "prompt",
        "metrics",
        "measurements",
        "dataset",
        "model",
        "provenance",
        "samples_file",
    }
)

__all__ = [
    "load_site",
    "render_html",
    "render_site",
    "site_to_json",
]


# --------------------------------------------------------------------------- Pareto plots


@dataclass(frozen=True)
class Plot:
    metric: MetricColumn
    axis: str
    svg: Markup


def _memory_column(table: TaskTable) -> EfficiencyColumn:
    """GPU memory when any row was measured on a GPU, else the CPU's tensor memory, else (older
    records) the variant's or the process's resident memory."""
    keys = {c.key for c in table.efficiency_columns}
    for key in ("peak_gpu_mib", "tensor_mib", "memory_mib"):
        if key in keys:
            return EFFICIENCY_BY_KEY[key]
    return EFFICIENCY_BY_KEY["peak_rss_mib"]


def chains(table: TaskTable) -> list[str]:
    """The technique chains of a table, uncompressed first: one marker shape each."""
    found = [chain_label(row.techniques) for row in table.rows]
    return sorted(set(found), key=lambda c: (c != "uncompressed", found.index(c)))


def plot_legend(table: TaskTable) -> Markup:
    return legend(table.bases, chains(table))


def plots(table: TaskTable, href_prefix: str = "") -> list[Plot]:
    """One plot per (quality column, cost axis); only comparable rows are drawn: coloured by
    base model, shaped by technique chain, an arrow from each base to its compressed variants."""
    out = []
    shapes = {chain: SHAPES[i % len(SHAPES)] for i, chain in enumerate(chains(table))}
    colors = {base: i for i, base in enumerate(table.bases)}
    parents: dict[str, str] = {}
    for row in table.rows:
        if not row.techniques and row.mode == "natural":
            parents.setdefault(row.base_model, row.variant)
    for column in table.columns:
        for axis in PLOT_AXES:
            cost = _memory_column(table) if axis == "memory" else EFFICIENCY_BY_KEY[axis]
            points = []
            for row in table.rows:
                cell = row.cells.get(column.id)
                x = row.efficiency[cost.key].value
                if cell is None or not cell.comparable or x is None:
                    continue
                if not (math.isfinite(x) and math.isfinite(cell.mean)):
                    continue
                ci = cell.ci95
                points.append(
                    Point(
                        label=row.variant,
                        href=f"{href_prefix}{row.page}",
                        x=x,
                        y=cell.mean,
                        y_lo=ci[0] if ci else None,
                        y_hi=ci[1] if ci else None,
                        color=colors.get(row.base_model, 0),
                        shape=shapes[chain_label(row.techniques)],
                        parent=parents.get(row.base_model) if row.techniques else None,
                        base=row.base_model,
                        techniques=row.techniques_json,
                    )
                )
            unit = {"peak_gpu_mib": "MiB", "tensor_mib": "MiB", "memory_mib": "MiB",
                    "peak_rss_mib": "MiB", "energy_j_per_image": "J"}  # fmt: skip
            x_label = cost.label + (f" ({unit[cost.key]})" if cost.key in unit else " (s)")
            svg = pareto_svg(
                points,
                x_label=x_label,
                y_label=column.label,
                higher_is_better=column.higher_is_better,
                title=f"{column.label} against {cost.label}",
                y_format=f"{{:.{DECIMALS}f}}",
            )
            out.append(Plot(column, axis, svg))
    return out


# --------------------------------------------------------------------------- variant pages


def _present(value: Any) -> bool:
    return value is not None and value != {} and value != []


def _shown(value: Any) -> str:
    return fmt_value(value) if _present(value) else "—"


@dataclass
class SeedRun:
    seed: int
    record: RunRecord
    ref: RecordRef
    samples: SampleSet


@dataclass
class VariantPage:
    table: TaskTable
    row: Row
    runs: list[SeedRun]
    thumbs: dict[str, str] = field(default_factory=dict)  # sample id -> URL from the page
    thumb_note: str | None = None

    @property
    def score_keys(self) -> list[str]:
        """Per-sample score names, in the table's column order first."""
        keys = {k for run in self.runs for s in run.samples.samples for k in s.scores}
        order = [c.metric for c in self.table.columns]
        return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))

    def _measurements(self) -> tuple[list[str], list[dict[str, Any]]]:
        per_seed = [
            flat_fields(run.record.measurements.model_dump(mode="json")) for run in self.runs
        ]
        return list(dict.fromkeys(k for fields in per_seed for k in fields)), per_seed

    @property
    def measurement_rows(self) -> list[tuple[str, list[str]]]:
        """Every measured field (nested ones dotted) against the seeds, as recorded."""
        names, per_seed = self._measurements()
        return [
            (name, [_shown(f.get(name)) for f in per_seed])
            for name in names
            if any(_present(f.get(name)) for f in per_seed)
        ]

    @property
    def unmeasured(self) -> list[str]:
        """Fields the record format has but no seed of this run could measure."""
        names, per_seed = self._measurements()
        return [n for n in names if not any(_present(f.get(n)) for f in per_seed)]

    @property
    def model_fields(self) -> list[tuple[str, str]]:
        model = self.runs[0].record.model.model_dump(mode="json")
        return [(k, fmt_value(v)) for k, v in flat_fields(model).items()]

    @property
    def generation_fields(self) -> list[tuple[str, str]]:
        r = self.runs[0].record
        fields = [("batch_size", fmt_value(r.batch_size))]
        return fields + [(k, fmt_value(v)) for k, v in flat_fields(r.generation).items()]

    @property
    def environments(self) -> list[tuple[list[int], dict[str, Any]]]:
        """Distinct provenance blocks (without the time) and the seeds that share each."""
        groups: dict[str, tuple[list[int], dict[str, Any]]] = {}
        for run in self.runs:
            prov = run.record.provenance.model_dump(mode="json")
            prov.pop("created_at", None)
            key = repr(sorted(flat_fields(prov).items()))
            groups.setdefault(key, ([], prov))[0].append(run.seed)
        return list(groups.values())

    @property
    def extra_fields(self) -> list[tuple[str, str]]:
        """Record fields this page has no section for, as `seed n: field` when seeds differ."""
        out: list[tuple[str, str]] = []
        dumps = [r.record.model_dump(mode="json") for r in self.runs]
        per_seed = [{k: v for k, v in d.items() if k not in KNOWN_RECORD_FIELDS} for d in dumps]
        names = list(dict.fromkeys(k for fields in per_seed for k in fields))
        for name in names:
            values = [fmt_value(fields.get(name)) for fields in per_seed]
            if len(set(values)) == 1:
                out.append((name, values[0]))
            else:
                seeds = [run.seed for run in self.runs]
                out += [(f"{name} (seed {s})", v) for s, v in zip(seeds, values, strict=True)]
        return out

    @property
    def synthetic_images(self) -> bool:
        """The bundled sample: real captions, pictures drawn from the modality label."""
        # the folder scripts/build_bundled_sample.py writes (tasks/data/rocov2_sample)
        return Path(self.table.reference.dataset.path).name == "rocov2_sample"

    def image_alt(self, sample: Any) -> str:
        """Alt text: what the image shows, as far as the page knows (its reference caption)."""
        caption = sample.reference if len(sample.reference) <= 160 else sample.reference[:157] + "…"
        if self.synthetic_images:
            return f"Synthetic picture (not a radiograph) drawn for the caption: {caption}"
        return f"Image {sample.id}, reference caption: {caption}"

    def metric_value(self, run: SeedRun, column: MetricColumn) -> str:
        mv = run.record.metrics.get(column.metric)
        if mv is None or (mv.higher_is_better, details_key(mv.details)) != (
            column.higher_is_better,
            column.details,
        ):
            return "—"
        ci = mv.ci95
        return fmt_score(mv.value) + (f" [{fmt_score(ci[0])}, {fmt_score(ci[1])}]" if ci else "")


def variant_pages(site: Site, site_dir: Path, max_samples: int, images: bool) -> list[VariantPage]:
    """Read the per-sample files and make thumbnails (written into `site_dir/thumbs`)."""
    from harness.paths import REPO_ROOT

    bases = [REPO_ROOT, site.results_dir.resolve().parent, Path.cwd()]
    pages = []
    for table in site.tables:
        built = []
        for row in table.rows:
            runs = [
                SeedRun(
                    r.seed,
                    r,
                    ref,
                    read_samples(site.record_path(ref), r, max_samples)
                    if max_samples > 0
                    else SampleSet(),
                )
                for r, ref in zip(row.records, row.refs, strict=True)
            ]
            built.append(VariantPage(table, row, runs))
        ids = [s.id for page in built for run in page.runs for s in run.samples.samples]
        if not ids:
            pages += built
            continue
        thumbs: dict[str, str] = {}
        note: str | None = "thumbnails not rendered (--no-images)"
        if images:
            folder = site_dir / "thumbs" / table.anchor
            made, note = make_thumbnails(table.task, table.reference.dataset, ids, folder, bases)
            thumbs = {i: f"../thumbs/{table.anchor}/{name}" for i, name in made.items()}
        for page in built:
            page.thumbs, page.thumb_note = thumbs, note
        pages += built
    return pages


# --------------------------------------------------------------------------- results.json / .csv


def _finite(value: float | None) -> float | None:
    """NaN and infinities as null: results.json must stay standard JSON."""
    return value if value is None or math.isfinite(value) else None


def _pair(ci: tuple[float, float] | None) -> list[float | None] | None:
    return None if ci is None else [_finite(ci[0]), _finite(ci[1])]


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
                        "backend": row.backend,
                        "backend_version": row.backend_version,
                        "description": row.description,
                        "techniques": row.techniques,
                        "base_model": row.base_model,
                        "page": row.page,
                        "n_seeds": row.n_seeds,
                        "seeds": row.seeds,
                        "metrics": {
                            cid: {
                                "mean": _finite(c.mean),
                                "std": _finite(c.std),
                                "ci95": _pair(c.ci95),
                                "ci95_method": c.ci_method,
                                "n": c.n,
                                "seeds": c.seeds,
                                "values": [_finite(v) for v in c.values],
                                "run_ci95": [_pair(ci) for ci in c.run_cis],
                                "comparable": c.comparable,
                                "best": c.best,
                                "tied": c.tied,
                                "delta_vs_base": _delta_json(row.deltas.get(cid)),
                            }
                            for cid, c in row.cells.items()
                        },
                        "efficiency": {k: _finite(c.value) for k, c in row.efficiency.items()},
                        "efficiency_std": {
                            k: _finite(c.std) for k, c in row.efficiency.items() if c.values
                        },
                        "efficiency_values": {
                            k: [_finite(v) for v in c.values]
                            for k, c in row.efficiency.items()
                            if c.values
                        },
                        "efficiency_best": sorted(k for k, c in row.efficiency.items() if c.best),
                        "efficiency_estimated": sorted(
                            k for k, c in row.efficiency.items() if c.estimated
                        ),
                        "memory_method": sorted({memory_method(r) for r in row.records}),
                        "hardware": sorted(set(row.hardware)),
                        "contributor": row.contributor,
                        "status": row.status,
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
        "ci95": "percentile bootstrap over images (1,000 resamples; each resample scored for "
        "every seed and averaged); without per-image data, Student t over seeds cut to the "
        "metric's range; see ci95_method per cell",
        "best": "ahead of the runner-up in a paired bootstrap test on the same images (p < 0.05); "
        "otherwise `tied` marks the rows the test cannot tell from the top",
        "delta_vs_base": "B - A against the uncompressed row of the same base model, paired "
        "bootstrap over the same images (as `rocobench compare`)",
        "efficiency_units": {c.key: c.title for c in EFFICIENCY_COLUMNS},
        "tasks": tasks,
        "records": [asdict(ref) for ref in site.refs],
        "provenance": site.provenance,
        # embedded twins or synthetic images among the rows: not for a public leaderboard
        "twins": site.twins,
    }


def _csv_text(value: str) -> str:
    """Defuse spreadsheet formulas in untrusted text (results.json keeps the exact value)."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


DELTA_PARTS = ("delta_base", "delta", "delta_ci95_lo", "delta_ci95_hi", "delta_p")


def _delta_json(delta: Any) -> dict[str, Any] | None:
    if delta is None:
        return None
    return {
        "base": delta.base,
        "difference": _finite(delta.difference),
        "ci95": _pair(delta.ci95),
        "p_value": delta.p_value,
        "n": delta.n,
    }


def csv_rows(site: Site) -> tuple[list[str], list[dict[str, Any]]]:
    """One line per (task, variant); metric columns by id (`<id>_mean`, `_std`, `_n`, CI)."""
    columns = {c.id: c for t in site.tables for c in t.columns}
    metric_ids = [c.id for c in sorted(columns.values(), key=column_order)]
    parts = ("mean", "std", "ci95_lo", "ci95_hi", "n")
    header = ["task", "variant", "backend", "base_model", "techniques", "n_seeds", "seeds"]
    header += [f"{cid}_{part}" for cid in metric_ids for part in parts]
    header += [f"{cid}_{part}" for cid in metric_ids for part in DELTA_PARTS]
    for c in EFFICIENCY_COLUMNS:
        header += [c.key, f"{c.key}_std"]
        header += [f"{c.key}_estimated"] if c.estimated is not None else []
    header += ["memory_method", "hardware", "warnings"]
    lines = []
    for t in site.tables:
        for row in t.rows:
            line: dict[str, Any] = {
                "task": _csv_text(row.task),
                "variant": _csv_text(row.variant),
                "backend": _csv_text(row.backend_label or "transformers"),
                "base_model": _csv_text(row.base_model),
                "techniques": _csv_text(" ".join(row.techniques)),
                "n_seeds": row.n_seeds,
                "seeds": " ".join(map(str, row.seeds)),
                "hardware": _csv_text(row.hardware_text),
                "warnings": _csv_text(" | ".join(row.warnings)),
            }
            for cid, cell in row.cells.items():
                ci = cell.ci95
                line |= {
                    f"{cid}_mean": cell.mean,
                    f"{cid}_std": cell.std,
                    f"{cid}_ci95_lo": None if ci is None else ci[0],
                    f"{cid}_ci95_hi": None if ci is None else ci[1],
                    f"{cid}_n": cell.n,
                }
                delta = row.deltas.get(cid)
                if delta is not None:
                    line |= dict(zip(
                        (f"{cid}_{part}" for part in DELTA_PARTS),
                        (delta.base, delta.difference, *delta.ci95, delta.p_value),
                        strict=True,
                    ))  # fmt: skip
            for k, c in row.efficiency.items():
                line |= {k: c.value, f"{k}_std": c.std}
                if c.column.estimated is not None and c.value is not None:
                    line[f"{k}_estimated"] = c.estimated
            line["memory_method"] = " | ".join(sorted({memory_method(r) for r in row.records}))
            lines.append(line)
    return header, lines


# --------------------------------------------------------------------------- HTML


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
    env.filters["score"] = fmt_score
    env.filters["bytes"] = fmt_bytes
    env.filters["value"] = fmt_value
    env.filters["metric_label"] = metric_label
    return env


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@dataclass(frozen=True)
class Assets:
    """Our own stylesheet and script, inlined into every page, and the policy that allows them.

    Only these two blocks may run or style the page (by hash): markup smuggled in through a
    record could neither execute nor load anything, even if escaping ever failed.
    """

    css: Markup
    js: Markup
    csp: str

    @classmethod
    def load(cls) -> Assets:
        css = (PACKAGE_DIR / "static" / "style.css").read_text(encoding="utf-8")
        js = (PACKAGE_DIR / "static" / "site.js").read_text(encoding="utf-8")
        csp = "; ".join(
            (
                "default-src 'none'",
                "img-src 'self' data:",
                f"style-src {_csp_hash(css)}",
                f"script-src {_csp_hash(js)}",
                "base-uri 'none'",
                "form-action 'none'",
            )
        )
        return cls(Markup(css), Markup(js), csp)


def render_html(site: Site, assets: Assets | None = None) -> str:
    """The index page."""
    from leaderboard.reported import load_reported, reported_views

    assets = assets or Assets.load()
    template = _environment().get_template("index.html.j2")
    return template.render(
        site=site,
        reported=reported_views(site),
        reported_table=load_reported(),
        assets=assets,
        decimals=DECIMALS,
        plots={t.task: plots(t) for t in site.tables},
        legends={t.task: plot_legend(t) for t in site.tables},
        root="",
    )


def render_variant(page: VariantPage, site: Site, assets: Assets | None = None) -> str:
    assets = assets or Assets.load()
    template = _environment().get_template("variant.html.j2")
    return template.render(page=page, site=site, assets=assets, decimals=DECIMALS, root="../")


def _prune(folder: Path, keep: set[Path], suffix: str) -> None:
    """Remove our own stale outputs (pages of rows that no longer exist, old thumbnails)."""
    if not folder.is_dir():
        return
    for path in folder.rglob(f"*{suffix}"):
        if path.is_file() and path not in keep:
            path.unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()


def render_site(
    results_dir: Path | str | Sequence[Path | str],
    site_dir: Path,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    images: bool = True,
    trusted: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    endpoint: str | None = None,
) -> Path:
    """Render the site into `site_dir`; return the index path.

    `results_dir` is a folder, an hf://datasets/ORG/NAME URI, or a list of them (merged; see
    `harness.records.sources`); records of `trusted` sources count as verified. A record that
    cannot be read is reported through `log` and left out. `max_samples` caps the sample
    browser per seed (0: none); `images=False` skips thumbnails. Raises ValueError if the
    sources hold no records.
    """
    from harness.records.sources import SourceError, open_sources

    given = [results_dir] if isinstance(results_dir, str | Path) else list(results_dir)
    try:
        sources = open_sources([str(s) for s in given], endpoint=endpoint)
    except SourceError as err:
        raise ValueError(str(err)) from None
    with sources:
        return _render(
            load_site(str(given[0]), sources=sources, trusted=trusted, log=log),
            Path(site_dir),
            max_samples,
            images,
        )


def _render(site: Site, final: Path, max_samples: int, images: bool) -> Path:
    """Render into a fresh folder beside `final` and swap it in (`leaderboard.swap`)."""
    with new_site(final) as site_dir:
        _render_into(site, site_dir, max_samples, images)
    return final / "index.html"


def _render_into(site: Site, site_dir: Path, max_samples: int, images: bool) -> None:
    """Write the whole site into a fresh folder (the previous site's thumbnails are in it)."""
    assets = Assets.load()
    pages = variant_pages(site, site_dir, max_samples, images)
    outputs: dict[Path, str] = {site_dir / "index.html": render_html(site, assets)}
    for page in pages:
        outputs[site_dir / page.row.page] = render_variant(page, site, assets)
    header, lines = csv_rows(site)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    outputs[site_dir / "results.csv"] = table.getvalue()

    write_json(site_dir / "results.json", site_to_json(site))
    for path, text in outputs.items():
        with atomic_writer(path) as fh:
            fh.write(text)
    _prune(site_dir / "v", set(outputs), ".html")
    thumbs = {
        site_dir / "thumbs" / page.table.anchor / Path(url).name
        for page in pages
        for url in page.thumbs.values()
    }
    _prune(site_dir / "thumbs", thumbs, ".jpg")
