"""Paired bootstrap test of two variants on the same task and images (`rocobench compare`).

Reads the records and samples.jsonl of both variants, pairs the samples by id, and for each
metric reports B − A with a bootstrap 95 % interval and a two-sided p-value
(`harness.metrics.stats.paired_bootstrap`): per seed, and over all common seeds together (the
mean over seeds, as the leaderboard shows it, with the same images resampled for every seed).
Metrics that are means of per-sample scores are resampled from the stored scores; corpus metrics
(BLEU, CIDEr) are recomputed from the stored texts on every resample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records.layout import RECORD_FILE, run_dir
from harness.records.record import RunRecord
from harness.records.rows import SampleRow, read_samples
from harness.records.store import read_record


class CompareError(ValueError):
    """The runs cannot be compared; str() is one line saying why."""


@dataclass(frozen=True)
class Row:
    metric: str
    seed: int | str  # a seed, or "all"
    a: float
    b: float
    difference: float
    ci95: tuple[float, float]
    p_value: float
    n: int
    resamples: int


@dataclass(frozen=True)
class Run:
    record: RunRecord
    samples: dict[str, SampleRow]  # by id


def seeds_of(results: Path, task: str, variant: str) -> set[int]:
    folder = results / task / variant
    seeds = set()
    for path in folder.glob(f"seed-*/{RECORD_FILE}"):
        try:
            seeds.add(int(path.parent.name.removeprefix("seed-")))
        except ValueError:
            continue
    return seeds


def load_run(results: Path, task: str, variant: str, seed: int) -> Run:
    folder = run_dir(results, task, variant, seed)
    try:
        record = read_record(folder / RECORD_FILE)
        rows = read_samples(folder / record.samples_file)
    except (OSError, ValueError) as err:
        raise CompareError(f"{folder}: cannot read the run ({str(err).splitlines()[0]})") from None
    return Run(record, {r.id: r for r in rows})


def run_statistic(run: Run, ids: list[str], name: str) -> Any:
    """Metric `name` of one run as a bootstrap statistic over the images `ids` (in this order):
    corpus metrics recomputed from the stored texts, the others from per-sample scores."""
    import harness.metrics.stats as stats
    from harness.metrics import METRICS, References

    metric = METRICS.get(name)
    samples = [run.samples[i] for i in ids]
    if metric.resampler is not None:
        concepts = [None if s.concepts is None else tuple(s.concepts) for s in samples]
        refs = References(
            tuple(s.reference for s in samples),
            None if all(c is None for c in concepts) else tuple(concepts),
        )
        return metric.statistic([s.prediction for s in samples], refs)
    try:
        return stats.mean_statistic([s.scores[name] for s in samples])
    except KeyError:
        raise CompareError(f"metric {name!r} has no per-sample scores to resample") from None


def compare_runs(
    runs_a: dict[int, Run],
    runs_b: dict[int, Run],
    metrics: list[str] | None = None,
    resamples: int | None = None,
    *,
    per_seed: bool = True,
) -> list[Row]:
    """The paired comparison rows: per metric, each seed and then "all" (over several seeds);
    `per_seed=False`: only the row over all seeds (the one seed's when there is one)."""
    import harness.metrics.stats as stats
    from harness.metrics import RESULT_DETAILS

    seeds = sorted(runs_a)
    first = runs_a[seeds[0]]
    ids = list(first.samples)
    for seed in seeds:
        for label, run in (("A", runs_a[seed]), ("B", runs_b[seed])):
            if set(run.samples) != set(ids):
                raise CompareError(
                    f"seed {seed}: {label} was evaluated on other images than A seed "
                    f"{seeds[0]} ({len(run.samples)} against {len(ids)} samples)"
                )
        refs_a = [runs_a[seed].samples[i].reference for i in ids]
        refs_b = [runs_b[seed].samples[i].reference for i in ids]
        if refs_a != refs_b:
            raise CompareError(f"seed {seed}: A and B have different references for the same ids")

    common = [m for m in first.record.metrics if all(
        m in r.record.metrics for r in (*runs_a.values(), *runs_b.values())
    )]  # fmt: skip
    names = common if metrics is None else metrics
    for name in names:
        if name not in common:
            raise CompareError(f"metric {name!r} is not in every run (common: {', '.join(common)})")
        settings = {
            json.dumps(
                {
                    k: v
                    for k, v in r.record.metrics[name].details.items()
                    if k != "device" and k not in RESULT_DETAILS
                },
                sort_keys=True,
            )
            for r in (*runs_a.values(), *runs_b.values())
        }
        if len(settings) > 1:
            raise CompareError(f"metric {name!r} was computed with different settings across runs")

    resamples = stats.RESAMPLES if resamples is None else resamples
    n = len(ids)
    rows: list[Row] = []
    for name in names:
        pairs = {
            seed: (run_statistic(runs_a[seed], ids, name), run_statistic(runs_b[seed], ids, name))
            for seed in seeds
        }
        groups: list[tuple[int | str, stats.Statistic, stats.Statistic]] = []
        if per_seed or len(seeds) == 1:
            groups += [(seed, sa, sb) for seed, (sa, sb) in pairs.items()]
        if len(seeds) > 1:
            groups.append(
                (
                    "all",
                    stats.mean_of([sa for sa, _ in pairs.values()]),
                    stats.mean_of([sb for _, sb in pairs.values()]),
                )
            )
        for seed, sa, sb in groups:
            c = stats.paired_bootstrap(sa, sb, n, resamples)
            rows.append(
                Row(name, seed, c.a, c.b, c.difference, c.ci95, c.p_value, c.n, c.resamples)
            )
    return rows
