"""`rocobench bench`: the embedded default benchmark, offline on the CPU, then the page."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cli.common import (
    EMBEDDED_SUITE,
    add_run_options,
    check_carbon_country,
)
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="the embedded default benchmark (offline, CPU): bundled sample × tiny twins",
        description=f"Run suite {EMBEDDED_SUITE} (tasks/suites/{EMBEDDED_SUITE}.yaml: the "
        "bundled ROCOv2 sample × every embedded twin × its seeds), then render the leaderboard.",
    )
    add_run_options(p)
    p.add_argument("--site", type=Path, default=Path("site"), help="site folder (default: site/)")
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from harness.pipeline.runner import run_variant
    from leaderboard.render import render_site

    start = time.perf_counter()
    suite = catalog.suite(EMBEDDED_SUITE)
    task, variants = suite.task, suite.variants
    country = check_carbon_country(args.carbon_country)
    print(
        f"embedded benchmark: {task.task} × {len(variants)} variants "
        f"({', '.join(v.id for v in variants)}) × seeds {list(suite.seeds)}",
        file=sys.stderr,
    )
    reused = computed = 0
    for variant in variants:
        for outcome in run_variant(
            task,
            variant,
            args.results,
            seeds=suite.seeds,
            device=args.device,
            force=args.force,
            progress=not args.no_progress,
            fixed_new_tokens=args.fixed_new_tokens,
            carbon_country=country,
        ):
            reused += outcome.reused
            computed += not outcome.reused
    page = render_site(args.results, args.site)
    print(f"{computed} runs computed, {reused} reused; results in {args.results}/")
    print(f"leaderboard: {page.resolve()}")
    print(f"took {time.perf_counter() - start:.1f} s")
    return 0
