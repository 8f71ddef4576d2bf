"""`rocobench ls`: the tasks, suites and variants this checkout knows."""

from __future__ import annotations

import argparse
import sys

from harness.cli.common import EXIT_SPEC
from harness.specs.yamlio import SpecError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list tasks, suites and variants")
    p.set_defaults(func=ls)


def ls(args: argparse.Namespace) -> int:
    from harness.specs import catalog

    problems: list[str] = []
    print("tasks:")
    for name in catalog.ids("task"):
        try:
            t = catalog.task(name)
        except SpecError as err:
            problems += err.problems
            continue
        where = f"{t.dataset_path} (bundled)" if t.is_local else t.dataset_path
        print(f"  {t.task:<18} {where} [{t.test_split}], seeds {list(t.seeds)}")
    print("suites:")
    for name in catalog.ids("suite"):
        try:
            s = catalog.suite(name)
        except SpecError as err:
            problems += err.problems
            continue
        print(f"  {s.name:<18} {s.task.task} × {len(s.variants)} variants × seeds {list(s.seeds)}")
    print("variants:")
    for name in catalog.ids("variant"):
        try:
            v = catalog.variant(name)
        except SpecError as err:
            problems += err.problems
            continue
        base = f"twin:{v.base.twin} (embedded)" if v.is_embedded else f"{v.base.model}"
        chain = " + ".join(t.kind for t in v.techniques) or "base"
        print(f"  {v.id:<28} {base}  [{chain}]")
    for p in problems:
        print(p, file=sys.stderr)
    return EXIT_SPEC if problems else 0
