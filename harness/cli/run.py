"""`rocobench run`: generate, score and record (task, variant, seed) runs."""

from __future__ import annotations

import argparse
import time

from harness.cli.common import (
    CliError,
    add_batch_and_limit,
    add_run_options,
    check_carbon_country,
    parse_seeds,
)
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a task on one or more variants, or a suite",
        description="Generate, score and record (task, variant, seed) runs: --task with one or "
        "more --variant, or a --suite (tasks/suites/NAME.yaml: a task, its variants and seeds). "
        "Finished runs whose task, manifest and data are unchanged are reused.",
    )
    p.add_argument("--task", help="task id (tasks/ID.yaml) or a YAML path")
    p.add_argument(
        "--variant",
        action="append",
        help="variant id (variants/ID.yaml) or a YAML path; repeat for several",
    )
    p.add_argument(
        "--suite",
        help="suite id (tasks/suites/ID.yaml) or a YAML path, instead of --task/--variant; "
        "`paper` is the study's Table I",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (variants, task, seeds; what is built, cached or finished) and exit",
    )
    p.add_argument(
        "--seeds",
        help="comma-separated distinct seeds (default: the suite's, else the task's), "
        "e.g. --seeds 0,1,2",
    )
    add_batch_and_limit(p)
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="time the base's published architecture at full size with random weights on "
        "synthetic images (nothing downloaded; not scored; recorded in seed-<n>-random/)",
    )
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.pipeline.runner import run_variant

    if args.suite is not None:
        if args.task or args.variant:
            raise CliError("--suite names the task and variants: give it without --task/--variant")
        suite = catalog.suite(args.suite)
        task, variants = suite.task, list(suite.variants)
        seeds = parse_seeds(args.seeds) or list(suite.seeds)  # None: not given
    elif args.task and args.variant:
        task = catalog.task(args.task)
        variants = [catalog.variant(v) for v in args.variant]  # all validated before any work
        seeds = parse_seeds(args.seeds)
    else:
        raise CliError("give --task and at least one --variant, or --suite")
    if args.dry_run:
        from harness.pipeline.plan import format_plan, plan

        if args.limit is not None:
            raise CliError("--dry-run plans whole runs; --limit runs are not planned")
        if args.random_weights:
            raise CliError("--dry-run plans runs of real weights; --random-weights is not planned")
        print(format_plan(task, plan(
            task, variants, seeds or task.seeds, args.results,
            fixed_new_tokens=args.fixed_new_tokens, force=args.force, backend=args.backend,
        )))  # fmt: skip
        return 0
    country = check_carbon_country(args.carbon_country)
    from harness.pipeline.executor import SingleProcess
    from harness.pipeline.modes import RANDOM_WEIGHTS, TRAINED
    from harness.scale.distributed import DataParallel

    # under torchrun / accelerate launch: one data-parallel rank; otherwise the one process
    executor = DataParallel.join(args.device) or SingleProcess()
    start = time.perf_counter()
    for variant in variants:
        run_variant(
            task,
            variant,
            args.results,
            seeds=seeds,
            device=args.device,
            batch_size=args.batch_size,
            limit=args.limit,
            force=args.force,
            progress=not args.no_progress,
            fixed_new_tokens=args.fixed_new_tokens,
            carbon_country=country,
            mode=RANDOM_WEIGHTS if args.random_weights else TRAINED,
            executor=executor,
            backend=args.backend,
        )
    if executor.is_main:
        print(f"records under {args.results}/{task.task}/ ({time.perf_counter() - start:.1f} s)")
    return 0
