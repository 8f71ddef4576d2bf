"""`rocobench publish`: the rendered site to a static Hugging Face Space, records to a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="upload a rendered site to a static Hugging Face Space (one guarded commit)",
        description="Upload SITE_DIR to a static Space in one commit on top of the Space's "
        "current head; the Hub refuses it if someone else committed meanwhile. The token comes "
        "from HF_TOKEN or `hf auth login` and is never printed or written.",
    )
    p.add_argument("site_dir", type=Path, help="a folder written by `rocobench render`")
    p.add_argument("--space", required=True, metavar="ORG/NAME", help="the static Space")
    p.add_argument(
        "--results-dataset",
        metavar="ORG/NAME",
        help="also push the records (record.json, samples.jsonl, predictions.jsonl) here",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="records folder for --results-dataset (default: results/)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    p.add_argument(
        "--create-pr", action="store_true", help="open a pull request instead of committing to main"
    )
    p.add_argument(
        "--parent-commit",
        metavar="SHA",
        help="publish only if the Space's head is still SHA (the head a --dry-run showed)",
    )
    p.add_argument("--private", action="store_true", help="create missing repositories as private")
    p.add_argument(
        "--no-twins",
        action="store_true",
        help="refuse a site that shows embedded twins or synthetic data (public leaderboards)",
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help="Hub endpoint (default: $HF_ENDPOINT or https://huggingface.co)",
    )
    p.set_defaults(func=publish)


def publish(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from leaderboard.publish import PublishError, make_api, publish, redact

    try:
        publish(
            args.site_dir,
            args.space,
            results_dir=args.results if args.results_dataset else None,
            results_dataset=args.results_dataset,
            dry_run=args.dry_run,
            create_pr=args.create_pr,
            expected_head=args.parent_commit,
            private=True if args.private else None,
            api=make_api(args.endpoint),
            log=lambda line: print(line, file=sys.stderr),
            refuse_twins=args.no_twins,
        )
    except PublishError as err:
        raise CliError(redact(str(err))) from None
    except OfflineModeIsEnabled:
        raise CliError("HF_HUB_OFFLINE is set: unset it to reach the Hub") from None
    except HfHubHTTPError as err:
        # The Hub's own message (permissions, quota …), first line only, token scrubbed.
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    return 0
