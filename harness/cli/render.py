"""`rocobench render`: the static leaderboard from records only."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render the static leaderboard from records")
    p.add_argument("results_dir", type=Path, help="folder holding records (e.g. results/)")
    p.add_argument(
        "-o", "--output", type=Path, default=Path("site"), help="site folder (default: site/)"
    )
    p.set_defaults(func=render)


def render(args: argparse.Namespace) -> int:
    from leaderboard.render import render_site

    try:
        page = render_site(args.results_dir, args.output)
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"leaderboard: {page.resolve()}")
    return 0
