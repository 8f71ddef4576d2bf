"""`rocobench sweep`: a suite's (variant, seed) runs, here one after another or on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import time

from harness.cli.common import (
    CliError,
    add_run_options,
    check_carbon_country,
    parse_seeds,
    positive_int,
)
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a suite, locally or as tasks on a Ray cluster",
        description="Run every (variant, seed) of a suite (tasks/suites/NAME.yaml). Without "
        "--ray, one after another here (as `run --suite`); with --ray, each build and each "
        "(variant, seed) run is a Ray task, retried when it fails. Finished runs are reused.",
    )
    p.add_argument("--suite", required=True, help="suite id (tasks/suites/ID.yaml) or a YAML path")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on the Ray cluster at ADDRESS (`auto`: the one `ray start` joined here; "
        "`local`: start one on this machine); needs the `ray` extra",
    )
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    p.add_argument("--batch-size", type=positive_int, help="images per batch (default: the task's)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument(
        "--max-retries",
        type=int,
        default=2,
        metavar="N",
        help="Ray: run a failed task (an error or a lost worker) again up to N times (default 2)",
    )
    p.add_argument(
        "--memory-gib",
        type=float,
        default=4.0,
        metavar="GIB",
        help="Ray: host memory each task reserves, which bounds how many share a machine "
        "(default 4; raise it for the 7B-11B models)",
    )
    add_run_options(p, uri=True)
    p.set_defaults(func=sweep)


def sweep(args: argparse.Namespace) -> int:
    from harness.scale.distributed import Launch
    from harness.scale.sweep import SweepError, SweepOptions, sweep_local, sweep_ray

    if Launch.from_env() is not None:
        raise CliError("sweep starts its own tasks: run it once, not under torchrun")
    suite = catalog.suite(args.suite)
    seeds = parse_seeds(args.seeds) or list(suite.seeds)
    if args.max_retries < 0:
        raise CliError("--max-retries: expected 0 or more")
    options = SweepOptions(
        seeds=tuple(seeds),
        device=args.device,
        batch_size=args.batch_size,
        limit=args.limit,
        force=args.force,
        fixed_new_tokens=args.fixed_new_tokens,
        carbon_country=check_carbon_country(args.carbon_country),
        progress=not args.no_progress and args.ray is None,
        max_retries=args.max_retries,
        memory_gib=args.memory_gib,
        backend=args.backend,
    )
    start = time.perf_counter()
    print(
        f"sweep {suite.name}: {suite.task.task} × {len(suite.variants)} variants × seeds "
        f"{list(seeds)}" + (f" on Ray ({args.ray})" if args.ray else " here"),
        file=sys.stderr,
    )
    try:
        if args.ray is None:
            report = sweep_local(suite.task, suite.variants, args.results, options)
        else:
            report = sweep_ray(
                suite.task,
                suite.variants,
                args.results,
                options,
                address=args.ray,
                progress=not args.no_progress,
            )
    except SweepError as err:
        raise CliError(str(err)) from None
    reused = sum(r.reused for r in report.runs)
    for failure in report.failures:
        print(f"failed  {failure.what}: {failure.error}", file=sys.stderr)
    print(
        f"{len(report.runs)} runs finished ({len(report.runs) - reused} computed, {reused} "
        f"reused), {len(report.failures)} failed; records under {args.results} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0 if report.ok else 1
