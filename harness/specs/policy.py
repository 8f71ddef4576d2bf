"""The submission rules `rocobench validate` applies to a variant manifest (CONTRIBUTING.md).

A submitted manifest is untrusted input. Loading it (`harness.specs.variant.load_variant`)
already gives:
safe YAML (no `!!python/…` tag is ever constructed), a size limit, a strict schema (unknown keys
refused), ids in a safe character set, registered techniques only, Hub ids pinned to 40-hex
commits and `trust_remote_code` refused unless the model is on the allowlist. These rules add
what only matters for a submission, checked offline (no network):

- every Hub reference, wherever it sits in the manifest (`model`/`repo` beside a `revision`),
  is pinned to a 40-hex commit;
- no local paths: a submission names Hub repositories, embedded twins or variant ids only;
- a distillation teacher given as `variant:` names an existing variant (in `variants/` or among
  the files validated together);
- a training `task:` names an existing task in `tasks/`.

Each problem is one `file:line: field: message` line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.paths import TASKS_DIR, VARIANTS_DIR
from harness.specs.common import COMMIT, SAFE_ID
from harness.specs.variant import load_variant
from harness.specs.yamlio import SpecError, _field, _locate, load_yaml

# Models whose own code may run (`base.trust_remote_code: true`), one Hub id per entry. Kept
# outside variants/ so it is never read as a manifest; changing it is a maintainer's decision.

# Keys that name a Hub repository, each pinned by a sibling `revision`.
HUB_KEYS = ("model", "repo")


def _is_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or "\\" in value


def _line(node: yaml.Node | None, loc: Sequence[str | int]) -> str:
    at = _locate(node, loc)
    return f":{at.start_mark.line + 1}" if at is not None else ""


Loc = tuple[str | int, ...]


def _walk(data: Any, loc: Loc = ()) -> Iterable[tuple[Loc, dict[str, Any]]]:
    """Every mapping in a parsed document, with its location."""
    if isinstance(data, dict):
        yield loc, data
        for k, v in data.items():
            yield from _walk(v, (*loc, str(k)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, (*loc, i))


def rule_problems(
    path: Path, data: Any, node: yaml.Node | None, known_variants: frozenset[str]
) -> list[str]:
    """The submission rules beyond the schema, for a manifest that loads."""
    problems: list[str] = []

    def add(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(f"{path}{_line(node, loc)}: {_field(loc)}: {msg}")

    for loc, mapping in _walk(data):
        for key in HUB_KEYS:
            value = mapping.get(key)
            if not isinstance(value, str):
                continue
            if _is_path(value):
                add((*loc, key), "a submission may not name a local path; use a Hub id")
                continue
            rev = mapping.get("revision")
            if not isinstance(rev, str) or not COMMIT.match(rev):
                add((*loc, "revision"), f"{value!r} must be pinned to a 40-hex commit")
        # distill teachers given as a variant id
        if loc and loc[-1] == "teacher" and isinstance(mapping.get("variant"), str):
            name = mapping["variant"]
            if _is_path(name) or not re.match(SAFE_ID, name):
                add((*loc, "variant"), f"{name!r} is not a variant id (no paths in submissions)")
            elif name not in known_variants:
                add((*loc, "variant"), f"no variant {name!r} in variants/")
        # training tasks
        if loc and loc[-1] == "train" and "task" in mapping:
            name = mapping["task"]
            if not isinstance(name, str) or not re.match(SAFE_ID, name):
                add((*loc, "task"), f"{name!r} is not a task id")
            elif not (TASKS_DIR / f"{name}.yaml").is_file():
                add((*loc, "task"), f"no task {name!r} in tasks/")
    return problems


def check_manifests(paths: Sequence[Path], *, rules: bool = True) -> list[str]:
    """Validate variant manifests; every problem as one `file:line: field: message` line."""
    known = frozenset(p.stem for p in VARIANTS_DIR.glob("*.yaml")) | {p.stem for p in paths}
    problems: list[str] = []
    for path in paths:
        # schema and rules in one pass: a submitter sees every problem at once
        schema: list[str] = []
        try:
            load_variant(path)
        except SpecError as err:
            schema = err.problems
        problems += schema
        if not rules:
            continue
        try:
            data, node = load_yaml(path)
        except SpecError:
            continue  # unreadable or not YAML: the schema pass said so
        # a rule about a field the schema already refused (or one inside it) says it twice
        flagged = [_field_of(p) for p in schema]
        problems += [
            p
            for p in rule_problems(path, data, node, frozenset(known))
            if not any(_within(_field_of(p), f) for f in flagged)
        ]
    return problems


def _field_of(problem: str) -> str:
    """The field of a `file:line: field: message` line."""
    parts = problem.split(": ", 2)
    return parts[1] if len(parts) == 3 else ""


def _within(field: str, outer: str) -> bool:
    return field == outer or field.startswith((f"{outer}.", f"{outer}["))
