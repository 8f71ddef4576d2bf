"""`rocobench bench`: the embedded default benchmark, offline on the CPU, then the page."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.cli.common import (
    EMBEDDED_SUITE,
    add_run_options,
    check_carbon_country,
    positive_int,
)
from harness.specs import catalog

RENDER_EVERY_S = 60.0  # between the pages rendered while the benchmark runs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="the embedded default benchmark (offline, CPU): bundled sample × tiny twins",
        description=f"Run suite {EMBEDDED_SUITE} (tasks/suites/{EMBEDDED_SUITE}.yaml: the "
        "bundled ROCOv2 sample × every embedded twin × its seeds), each variant's runs in a "
        "fresh process so that its memory figures are its own, and render the leaderboard "
        f"as variants finish (at most every {RENDER_EVERY_S:.0f} s, and at the end; an "
        "interrupted run still leaves a page).",
        epilog="example: rocobench bench --results results --site site  "
        "(then open site/index.html)",
    )
    add_run_options(p)
    p.add_argument("--site", type=Path, default=Path("site"), help="site folder (default: site/)")
    p.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="builds and variant runs at once, in worker processes (default: one per CPU core, "
        "at most 4; 1 on a GPU)",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const=Path("bench-profile.jsonl"),
        type=Path,
        metavar="FILE",
        help="time every phase (builds, training epochs, model loads, generation, each metric, "
        "render), append the spans to FILE (default: bench-profile.jsonl) and print the table",
    )
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    if args.profile is not None:
        return _profiled(args)
    return _bench(args)


def _profiled(args: argparse.Namespace) -> int:
    """The bench with every span recorded (worker processes inherit the variable)."""
    import os
    import resource

    import psutil

    from harness import spans as phases

    path = args.profile.resolve()
    path.unlink(missing_ok=True)
    os.environ[phases.PROFILE_ENV] = str(path)
    started = psutil.Process().create_time()  # interpreter start: imports count too
    phases.record(
        "startup", "interpreter and imports", started, time.time() - started, time.process_time()
    )
    try:
        code = _bench(args)
    finally:
        os.environ.pop(phases.PROFILE_ENV, None)
    total = time.time() - started
    spans = phases.read_spans(path)
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in used)  # this process and its finished workers
    print(phases.markdown_table(phases.summarise(spans), total, cpu))
    print(f"spans in {path}")
    return code


def _bench(args: argparse.Namespace) -> int:
    from harness.progress import Countdown
    from harness.scale.pool import sweep_pool
    from harness.scale.sweep import SweepOptions
    from harness.spans import span
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
    options = SweepOptions(
        seeds=tuple(suite.seeds),
        device=args.device,
        force=args.force,
        fixed_new_tokens=args.fixed_new_tokens,
        carbon_country=country,
        progress=not args.no_progress,
        backend=args.backend,
    )
    countdown = Countdown(len(variants))
    pages: list[Path] = []
    # the first page once the benchmark has run a while, then every RENDER_EVERY_S; the final
    # one (or the one left by an interruption) in any case
    rendered = {"at": time.perf_counter(), "stale": False}

    def render() -> None:
        rendered.update(at=time.perf_counter(), stale=False)
        try:
            with span("render"):
                pages.append(render_site(args.results, args.site))
        except ValueError as err:  # nothing to show yet
            print(f"page not rendered: {err}", file=sys.stderr)

    def finished(vid: str, runs: list[Any]) -> None:
        """After each variant: the countdown, and a page when the last one is old enough. A
        render holds up the workers waiting for their next job, so they are spaced out."""
        rendered["stale"] = True
        if time.perf_counter() - rendered["at"] >= RENDER_EVERY_S:
            render()
        did_work = any(not r.reused for r in runs)
        print(f"{vid}: {countdown.finish(time.perf_counter() - last[0], did_work)}",
              file=sys.stderr, flush=True)  # fmt: skip
        last[0] = time.perf_counter()

    last = [time.perf_counter()]
    try:
        report = sweep_pool(
            task, variants, str(args.results), options, workers=args.workers, on_variant=finished
        )
    finally:  # at the end, and when interrupted: a page of everything finished
        if rendered["stale"]:
            render()
    reused = sum(r.reused for r in report.runs)
    computed = len(report.runs) - reused
    for failure in report.failures:
        print(f"error: {failure.what}: {failure.error}", file=sys.stderr)
    if pages:
        print(f"leaderboard: {pages[-1].resolve()}")
    print(f"{computed} runs computed, {reused} reused; results in {args.results}/")
    print(f"took {time.perf_counter() - start:.1f} s")
    return 0 if report.ok else 1
