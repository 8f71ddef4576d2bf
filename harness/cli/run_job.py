"""`rocobench run-job`: what a dispatched Hugging Face Job runs (see `rocobench dispatch`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError, bounded_int, parse_seeds
from harness.specs import catalog
from harness.specs.limits import MAX_LIMIT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run-job",
        help="run one variant's seeds and commit each run to a results dataset (inside a Job)",
        description="The command a dispatched Job runs: each seed of (task, variant) the "
        "results dataset does not hold yet is run, then committed there on its own (one commit "
        "per run, on top of the head it saw). The record names the Job and the dispatch label.",
    )
    p.add_argument("--task", required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--seeds", required=True, help="comma-separated seeds")
    p.add_argument("--results-dataset", required=True, metavar="ORG/NAME")
    p.add_argument("--dispatch", required=True, help="the dispatch label")
    p.add_argument(
        "--work-dir",
        type=Path,
        help="local records and checkpoints (default: $ROCOBENCH_WORK_DIR or "
        "/tmp/rocobench-results); a mounted bucket lets a retried Job resume",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        help="first N images only (smoke tests), e.g. --limit 4",
    )
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=run_job)


def run_job(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from harness.scale.job_run import default_work_dir, run_job
    from leaderboard.publish import make_api, redact

    seeds = parse_seeds(args.seeds)
    if not seeds:
        raise CliError("--seeds: give at least one seed")
    try:
        pushed = run_job(
            catalog.task(args.task), catalog.variant(args.variant), seeds,
            dataset=args.results_dataset, dispatch=args.dispatch,
            work_dir=args.work_dir or default_work_dir(), api=make_api(args.endpoint),
            device=args.device, limit=args.limit, log=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    done = sum(p.commit is not None for p in pushed)
    print(f"{done} of {len(pushed)} runs committed to {args.results_dataset}", file=sys.stderr)
    return 0
