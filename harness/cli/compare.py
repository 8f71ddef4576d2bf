"""`rocobench compare`: paired bootstrap test of two variants on the same task and images.

Reads the records and samples.jsonl of both variants under RESULTS_DIR, pairs the samples by
id, and for each metric reports B − A with a bootstrap 95 % interval and a two-sided p-value
(harness.stats.paired_bootstrap): per seed, and over all common seeds together (the mean over
seeds, as the leaderboard shows it, with the same images resampled for every seed). Metrics
that are means of per-sample scores are resampled from the stored scores; corpus metrics (BLEU,
CIDEr) are recomputed from the stored texts on every resample.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.cli.common import CliError, parse_seeds
from harness.records import RECORD_FILE, RunRecord, read_jsonl, read_record, run_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="paired bootstrap test of variant B against variant A",
        description="Compare two variants' runs of one task on the same images: for each "
        "metric, B − A with a bootstrap 95 % interval and a two-sided p-value, per seed and "
        "over all common seeds.",
    )
    p.add_argument("results_dir", type=Path, help="folder holding records (e.g. results/)")
    p.add_argument("--task", required=True, help="task id")
    p.add_argument("a", metavar="A", help="baseline variant id")
    p.add_argument("b", metavar="B", help="variant compared with A")
    p.add_argument("--metrics", help="comma-separated metrics (default: all both runs have)")
    p.add_argument("--seeds", help="comma-separated seeds (default: all both variants have)")
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (1000)")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=compare)


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
    samples: dict[str, dict[str, Any]]  # by id (as a string)


def _seeds_of(results: Path, task: str, variant: str) -> set[int]:
    folder = results / task / variant
    seeds = set()
    for path in folder.glob(f"seed-*/{RECORD_FILE}"):
        try:
            seeds.add(int(path.parent.name.removeprefix("seed-")))
        except ValueError:
            continue
    return seeds


def _load(results: Path, task: str, variant: str, seed: int) -> Run:
    folder = run_dir(results, task, variant, seed)
    try:
        record = read_record(folder / RECORD_FILE)
        rows = read_jsonl(folder / record.samples_file)
    except (OSError, ValueError) as err:
        raise CliError(f"{folder}: cannot read the run ({str(err).splitlines()[0]})") from None
    return Run(record, {str(r["id"]): r for r in rows})


def compare_runs(
    runs_a: dict[int, Run],
    runs_b: dict[int, Run],
    metrics: list[str] | None = None,
    resamples: int | None = None,
) -> list[Row]:
    """The paired comparison rows: per metric, each seed and then "all" (over several seeds)."""
    from harness import stats
    from harness.concepts import reference_concepts
    from harness.metrics import METRICS, RESULT_DETAILS

    seeds = sorted(runs_a)
    first = runs_a[seeds[0]]
    ids = list(first.samples)
    for seed in seeds:
        for label, run in (("A", runs_a[seed]), ("B", runs_b[seed])):
            if set(run.samples) != set(ids):
                raise CliError(
                    f"seed {seed}: {label} was evaluated on other images than A seed "
                    f"{seeds[0]} ({len(run.samples)} against {len(ids)} samples)"
                )
        refs_a = [runs_a[seed].samples[i]["reference"] for i in ids]
        refs_b = [runs_b[seed].samples[i]["reference"] for i in ids]
        if refs_a != refs_b:
            raise CliError(f"seed {seed}: A and B have different references for the same ids")

    common = [m for m in first.record.metrics if all(
        m in r.record.metrics for r in (*runs_a.values(), *runs_b.values())
    )]  # fmt: skip
    names = common if metrics is None else metrics
    for name in names:
        if name not in common:
            raise CliError(f"metric {name!r} is not in every run (common: {', '.join(common)})")
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
            raise CliError(f"metric {name!r} was computed with different settings across runs")

    resamples = stats.RESAMPLES if resamples is None else resamples
    n = len(ids)
    rows: list[Row] = []
    for name in names:
        metric = METRICS.get(name)

        def statistic(run: Run, name: str = name, metric: Any = metric) -> stats.Statistic:
            samples = [run.samples[i] for i in ids]
            if metric.resampler is not None:
                preds = [s["prediction"] for s in samples]
                with reference_concepts([s.get("concepts") for s in samples]):
                    return metric.statistic(preds, [s["reference"] for s in samples])
            try:
                return stats.mean_statistic([float(s["scores"][name]) for s in samples])
            except (KeyError, TypeError):
                raise CliError(f"metric {name!r} has no per-sample scores to resample") from None

        per_seed = {seed: (statistic(runs_a[seed]), statistic(runs_b[seed])) for seed in seeds}
        groups: list[tuple[int | str, stats.Statistic, stats.Statistic]] = [
            (seed, sa, sb) for seed, (sa, sb) in per_seed.items()
        ]
        if len(seeds) > 1:
            groups.append(
                (
                    "all",
                    stats.mean_of([sa for sa, _ in per_seed.values()]),
                    stats.mean_of([sb for _, sb in per_seed.values()]),
                )
            )
        for seed, sa, sb in groups:
            c = stats.paired_bootstrap(sa, sb, n, resamples)
            rows.append(
                Row(name, seed, c.a, c.b, c.difference, c.ci95, c.p_value, c.n, c.resamples)
            )
    return rows


def compare(args: argparse.Namespace) -> int:
    results, task = args.results_dir, args.task
    available = {}
    for label, variant in (("A", args.a), ("B", args.b)):
        available[label] = _seeds_of(results, task, variant)
        if not available[label]:
            raise CliError(f"no finished runs of {task} × {variant} under {results}")
    seeds = sorted(available["A"] & available["B"])
    wanted = parse_seeds(args.seeds)
    if wanted is not None:
        missing = sorted(set(wanted) - set(seeds))
        if missing:
            raise CliError(f"seed(s) {missing} not finished for both {args.a} and {args.b}")
        seeds = sorted(set(wanted))
    if not seeds:
        raise CliError(f"{args.a} and {args.b} have no finished seed in common on {task}")
    metrics = None
    if args.metrics:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    runs_a = {s: _load(results, task, args.a, s) for s in seeds}
    runs_b = {s: _load(results, task, args.b, s) for s in seeds}
    if args.resamples is not None and args.resamples < 1:
        raise CliError("--resamples must be at least 1")
    rows = compare_runs(runs_a, runs_b, metrics, args.resamples)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    n, resamples = rows[0].n, rows[0].resamples
    print(
        f"{task}: B = {args.b} against A = {args.a}, {n} images, seeds "
        f"{','.join(map(str, seeds))}; paired bootstrap, {resamples} resamples"
    )
    print(f"{'metric':<14}{'seed':>5}{'A':>9}{'B':>9}{'B − A':>10}  {'95 % CI':<21}{'p':>7}")
    for r in rows:
        ci = f"[{r.ci95[0]:+.4f}, {r.ci95[1]:+.4f}]"
        print(
            f"{r.metric:<14}{r.seed!s:>5}{r.a:>9.4f}{r.b:>9.4f}{r.difference:>+10.4f}  "
            f"{ci:<21}{r.p_value:>7.3f}"
        )
    return 0
