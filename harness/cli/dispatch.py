"""`rocobench dispatch`: run a suite's missing (variant, seed) runs on Hugging Face Jobs."""

from __future__ import annotations

import argparse
import os
import sys

from harness.cli.common import CliError, parse_seeds
from harness.specs import catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dispatch",
        help="launch the runs a results dataset lacks as Hugging Face Jobs (or --dry-run)",
        description="Plan the (variant, seed) runs of a suite that the results dataset does not "
        "hold yet, and launch one Hugging Face Job per variant (per run with --per-seed). Each "
        "Job runs this checkout's commit and commits its records to the dataset, one commit per "
        "run, never overwriting. --dry-run prints every Job with its image, command, flavour, "
        "the GPU memory each phase needs at least, estimated time and cost, and launches "
        "nothing; a variant whose floor exceeds the flavour's GPU is named in a warning with "
        "the cheapest flavour that holds it. The token goes to the Jobs as a secret.",
    )
    p.add_argument("--suite", required=True, help="suite id (tasks/suites/ID.yaml) or a path")
    p.add_argument(
        "--variant",
        action="append",
        help="only this variant of the suite (repeat for several; default: all)",
    )
    p.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    p.add_argument("--flavor", required=True, help="Jobs hardware flavour, e.g. a100-large")
    p.add_argument(
        "--results-dataset", required=True, metavar="ORG/NAME", help="dataset the Jobs write to"
    )
    p.add_argument("--dry-run", action="store_true", help="print the Jobs; launch nothing")
    p.add_argument("--per-seed", action="store_true", help="one Job per (variant, seed)")
    p.add_argument("--label", help="dispatch label (default: d<UTC time>-<commit>)")
    p.add_argument("--namespace", help="user or organisation billed (default: yours)")
    p.add_argument("--image", help="Docker image (default: the uv image of huggingface_hub)")
    p.add_argument("--source-repo", metavar="URL", help="git URL the Jobs clone (default: origin)")
    p.add_argument("--revision", metavar="SHA", help="commit the Jobs run (default: HEAD)")
    p.add_argument(
        "--checkpoint-bucket",
        metavar="ORG/NAME",
        help="a Hub bucket mounted as the Jobs' work folder: a Job killed half-way resumes "
        "from its checkpoint when retried (without one, it reruns)",
    )
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=dispatch)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE") in ("1", "true")


def dispatch(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from harness.scale import jobs
    from harness.scale.jobs_cost import load_prices
    from leaderboard.publish import REPO_ID, make_api, redact

    if not REPO_ID.fullmatch(args.results_dataset):
        raise CliError(f"--results-dataset: expected ORG/NAME, got {args.results_dataset!r}")
    suite = catalog.suite(args.suite)
    variants = list(suite.variants)
    if args.variant:
        wanted = [catalog.variant(v).id for v in args.variant]
        unknown = [v for v in wanted if v not in {s.id for s in variants}]
        if unknown:
            raise CliError(f"--variant {unknown[0]!r} is not in suite {suite.name}")
        variants = [v for v in variants if v.id in wanted]
    seeds = parse_seeds(args.seeds) or list(suite.seeds)
    is_offline = offline()
    api = make_api(args.endpoint)
    try:
        prices = load_prices(api, offline=is_offline)
        held, holdings = jobs.held_runs(
            api, args.results_dataset, suite.task, variants, seeds,
            offline=is_offline or prices.unreachable,
        )  # fmt: skip
        plan = jobs.plan_dispatch(
            suite.task, variants, seeds, dataset=args.results_dataset, flavor_name=args.flavor,
            prices=prices, held=held, holdings=holdings,
            source=jobs.local_source(args.source_repo, args.revision), label=args.label,
            per_seed=args.per_seed, image=args.image or jobs.DEFAULT_IMAGE,
            checkpoint_bucket=args.checkpoint_bucket,
        )  # fmt: skip
        print(jobs.format_plan(plan))
        if args.dry_run:
            print("dry run: no Job launched", file=sys.stderr)
            return 0
        if is_offline:
            raise CliError("HF_HUB_OFFLINE is set: unset it to launch Jobs")
        if not plan.source.repo or not plan.source.revision:
            raise CliError("the Jobs need a git URL and commit: pass --source-repo/--revision")
        if not plan.jobs:
            print("nothing to launch: the dataset holds every planned run", file=sys.stderr)
            return 0
        launched = jobs.launch(
            api, plan, namespace=args.namespace, log=lambda m: print(m, file=sys.stderr)
        )
        print(
            f"{len(launched)} Jobs launched; follow them with "
            f"`rocobench jobs --dispatch {plan.label} --watch`",
            file=sys.stderr,
        )
    except jobs.DispatchError as err:
        raise CliError(redact(str(err))) from None
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    return 0
