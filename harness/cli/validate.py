"""`rocobench validate`: check variant manifests (or task files) without running anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import EXIT_SPEC
from harness.paths import TASKS_DIR
from harness.specs.yamlio import SpecError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check variant manifests or task files",
        description="Validate specs offline: one line per problem (file:line: field: message), "
        "exit 2 when any is invalid, 0 when all are valid. Files in tasks/ are read as tasks. "
        "Variant manifests are held to the schema and the submission rules (CONTRIBUTING.md, "
        "docs/security.md), both reported in one pass, unless --schema-only is given. "
        "Example: rocobench validate variants/my-variant.yaml",
    )
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--task", action="store_true", help="treat every file as a task spec")
    p.add_argument(
        "--schema-only",
        "--no-rules",
        dest="rules",
        action="store_false",
        help="check variant manifests against the schema only, not the submission rules",
    )
    p.set_defaults(func=validate)


def validate(args: argparse.Namespace) -> int:
    from harness.specs.policy import check_manifests
    from harness.specs.task import load_task

    problems: list[str] = []
    variants: list[Path] = []
    for path in args.files:
        if args.task or path.resolve().parent == TASKS_DIR.resolve():
            try:
                load_task(path)
            except SpecError as err:
                problems += err.problems
        else:
            variants.append(path)
    problems += check_manifests(variants, rules=args.rules)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(args.files)} file(s) valid")
    return EXIT_SPEC if problems else 0
