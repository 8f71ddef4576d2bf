"""`rocobench sweep`: a suite's (variant, seed) runs, here one after another or on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
import time

from harness.cli.common import (
    CliError,
    add_batch_and_limit,
    add_run_options,
    bounded_float,
    bounded_int,
    check_carbon_country,
    parse_seeds,
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
    p.add_argument("--seeds", help="comma-separated distinct seeds (default: the suite's)")
    add_batch_and_limit(p)
    p.add_argument(
        "--max-retries",
        type=bounded_int(0, 100),
        default=2,
        metavar="N",
        help="Ray: run a failed task (an error or a lost worker) again up to N times, 0..100 "
        "(default 2), e.g. --max-retries 0",
    )
    p.add_argument(
        "--memory-gib",
        type=bounded_float(0, 65536),
        default=4.0,
        metavar="GIB",
        help="Ray: host memory each task reserves, which bounds how many share a machine "
        "(default 4; raise it for the 7B-11B models), e.g. --memory-gib 32",
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
