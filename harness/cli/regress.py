"""`rocobench regress`: the regression gate — compare a results folder with a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regress",
        help="compare results with a baseline; exit 1 on a regression",
        description="Compare each (task, variant) metric's mean over seeds with the baseline. "
        "Exit 1 when one is worse than its tolerance (max(abs, rel * |baseline|, ci * the "
        "half-width of the 95% bootstrap interval of the difference), in the metric's bad "
        "direction) or when a (task, variant) or metric of the baseline is missing "
        "from the results; exit 0 otherwise. --update-baseline rewrites the baseline instead.",
    )
    p.add_argument("results", type=Path, metavar="RESULTS_DIR")
    p.add_argument("--baseline", type=Path, required=True, metavar="BASELINE.json")
    p.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=ABS[,REL[,CI]]",
        help="override a metric's tolerance (METRIC `default` for all others; CI: how many "
        "95%% interval half-widths of the difference are noise); repeatable",
    )
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the results' means (and the tolerances) to the baseline, atomically",
    )
    p.add_argument("--all", action="store_true", help="list unchanged metrics too")
    p.add_argument(
        "--skip-record-checks",
        action="store_true",
        help="compare without checking the records first (re-scored from their samples, "
        "finite, one per seed, the baseline's seeds and evaluated ids): only for records this "
        "machine just wrote",
    )
    p.set_defaults(func=regress)


def regress(args: argparse.Namespace) -> int:
    from harness.analysis.regress import (
        BaselineError,
        blind_summary,
        collect,
        compare,
        format_table,
        load_baseline,
        parse_tolerance,
        write_baseline,
    )

    try:
        overrides = dict(parse_tolerance(t) for t in args.tolerance)
        if args.update_baseline and not args.baseline.exists():
            tolerances, base = {}, {}
        else:
            tolerances, base = load_baseline(args.baseline)
    except BaselineError as err:
        raise CliError(str(err)) from None
    tolerances |= overrides
    if not args.results.is_dir():
        raise CliError(f"{args.results}: no such results folder")
    import json

    from harness.analysis.gate import baseline_runs, gate_problems

    runs = None
    if args.baseline.exists():
        try:
            runs = json.loads(args.baseline.read_text(encoding="utf-8")).get("runs")
        except (OSError, ValueError, AttributeError):
            runs = None  # load_baseline above already read it: an old baseline has no runs
    problems = [] if args.skip_record_checks else gate_problems(args.results, runs)
    if problems:
        for line in problems:
            print(line)
        print(f"regression gate FAILED: {len(problems)} record problem(s)")
        return 1
    current = collect(args.results)
    if not current:
        raise CliError(f"{args.results}: no records found")
    changes = compare(base, current, tolerances)
    if args.all or any(c.status != "ok" for c in changes):
        print(format_table(changes, all_rows=args.all))
    counts = {
        s: sum(c.status == s for c in changes)
        for s in ("ok", "improved", "regressed", "missing", "new")
    }
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    if (blind := blind_summary(changes)) is not None:
        print(blind)
    if args.update_baseline:
        write_baseline(args.baseline, tolerances, current, baseline_runs(args.results))
        n = sum(len(m) for v in current.values() for m in v.values())
        print(f"baseline {args.baseline} updated: {n} metric(s)")
        return 0
    failed = counts["regressed"] + counts["missing"]
    if failed:
        print(f"regression gate FAILED: {failed} metric(s) regressed or missing")
        return 1
    print("regression gate passed")
    return 0
