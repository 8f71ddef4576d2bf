"""`rocobench run`: generate, score and record (task, variant, seed) runs."""

from __future__ import annotations

import argparse
import time

from harness.cli.common import (
    add_run_options,
    check_carbon_country,
    load_task_arg,
    load_variant_arg,
    parse_seeds,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a task on one or more variants",
        description="Generate, score and record (task, variant, seed) runs. Finished runs whose "
        "task, manifest and data are unchanged are reused.",
    )
    p.add_argument("--task", required=True, help="task id (tasks/ID.yaml) or a YAML path")
    p.add_argument(
        "--variant",
        required=True,
        action="append",
        help="variant id (variants/ID.yaml) or a YAML path; repeat for several",
    )
    p.add_argument("--seeds", help="comma-separated seeds (default: the task's)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the task's)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.run import run_variant

    task = load_task_arg(args.task)
    variants = [load_variant_arg(v) for v in args.variant]  # all validated before any work
    seeds = parse_seeds(args.seeds)
    country = check_carbon_country(args.carbon_country)
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
        )
    print(f"records under {args.results}/{task.task}/ ({time.perf_counter() - start:.1f} s)")
    return 0
