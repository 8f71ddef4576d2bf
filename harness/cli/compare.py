"""`rocobench compare`: paired bootstrap test of two variants (`harness.analysis.compare`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from harness.analysis.compare import CompareError, compare_runs, load_run, seeds_of
from harness.cli.common import CliError, bounded_int, parse_seeds
from harness.specs.limits import MAX_RESAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="paired bootstrap test of variant B against variant A",
        description="Compare two variants' runs of one task on the same images: for each "
        "metric, B − A with a bootstrap 95 % interval and a two-sided p-value, per seed and "
        "over all common seeds.",
        epilog="example: rocobench compare results --task rocov2_sample tiny-qwen2-vl "
        "tiny-qwen2-vl-pruned  (the page's Δ vs base is its `all` line)",
    )
    p.add_argument("results_dir", type=Path, help="folder holding records (e.g. results/)")
    p.add_argument("--task", required=True, help="task id")
    p.add_argument("a", metavar="A", help="baseline variant id")
    p.add_argument("b", metavar="B", help="variant compared with A")
    p.add_argument("--metrics", help="comma-separated metrics (default: all both runs have)")
    p.add_argument("--seeds", help="comma-separated seeds (default: all both variants have)")
    p.add_argument(
        "--resamples",
        type=bounded_int(1, MAX_RESAMPLES),
        default=None,
        help="bootstrap resamples (default 1000), e.g. --resamples 2000",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=compare)


def compare(args: argparse.Namespace) -> int:
    results, task = args.results_dir, args.task
    available = {}
    for label, variant in (("A", args.a), ("B", args.b)):
        available[label] = seeds_of(results, task, variant)
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
    try:
        runs_a = {s: load_run(results, task, args.a, s) for s in seeds}
        runs_b = {s: load_run(results, task, args.b, s) for s in seeds}
        rows = compare_runs(runs_a, runs_b, metrics, args.resamples)
    except CompareError as err:
        raise CliError(str(err)) from None
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
