"""`rocobench submit`: contribute records to the results dataset as a pull request."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="open a pull request with your records on the results dataset",
        description="Check every record under RESULTS_DIR, then open one pull request on the "
        "results dataset with them (records/<contributor>/<task>/<variant>/seed-<n>/). Never "
        "merges and never replaces a record already there. The token comes from HF_TOKEN or "
        "`hf auth login` and is never printed or written.",
    )
    p.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    p.add_argument("--dataset", required=True, metavar="ORG/NAME", help="the results dataset")
    p.add_argument(
        "--contributor",
        metavar="NAME[/MACHINE]",
        help="folder of your records in the dataset (default: your Hub user name)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send nothing")
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=submit)


def submit(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from leaderboard.publish import PublishError, make_api, redact
    from leaderboard.submit import submit

    if not args.results_dir.is_dir():
        raise CliError(f"{args.results_dir}: no such results folder")
    try:
        submit(
            args.results_dir,
            args.dataset,
            contributor=args.contributor,
            dry_run=args.dry_run,
            api=make_api(args.endpoint),
            log=lambda line: print(line, file=sys.stderr),
        )
    except PublishError as err:
        raise CliError(redact(str(err))) from None
    except OfflineModeIsEnabled:
        raise CliError("HF_HUB_OFFLINE is set: unset it to reach the Hub") from None
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    return 0
