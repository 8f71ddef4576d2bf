"""`rocobench render`: the static leaderboard from records only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError, bounded_int
from harness.specs.limits import MAX_SAMPLES_SHOWN


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render the static leaderboard from records",
        description="Render the static leaderboard from records only. The new site is written "
        "beside the old one and swapped in at once. Example: rocobench render results -o site",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="records to render: a folder (e.g. results/) or hf://datasets/ORG/NAME[@REV]; "
        "several are merged (a record is never overwritten by another source's)",
    )
    p.add_argument(
        "-o", "--output", type=Path, default=Path("site"), help="site folder (default: site/)"
    )
    p.add_argument(
        "--samples",
        type=bounded_int(0, MAX_SAMPLES_SHOWN),
        default=None,
        metavar="N",
        help="samples per seed in each variant page's sample browser (default: 200; 0: none), "
        "e.g. --samples 50",
    )
    p.add_argument(
        "--no-images",
        action="store_true",
        help="no thumbnails in the sample browser (made from the dataset when it is local)",
    )
    p.add_argument(
        "--trusted",
        action="append",
        default=[],
        metavar="SOURCE",
        help="a source written by a maintainer's job: its own records are shown as verified",
    )
    p.set_defaults(func=render)


def render(args: argparse.Namespace) -> int:
    from leaderboard.render import DEFAULT_MAX_SAMPLES, render_site

    samples = DEFAULT_MAX_SAMPLES if args.samples is None else max(args.samples, 0)
    try:
        page = render_site(
            args.sources,
            args.output,
            max_samples=samples,
            images=not args.no_images,
            trusted=args.trusted,
            log=lambda line: print(f"rocobench: {line}", file=sys.stderr),
        )
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"leaderboard: {page.resolve()}")
    return 0
