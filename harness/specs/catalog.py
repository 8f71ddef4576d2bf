"""The one place that turns a name into a spec.

A task, variant or suite is named by its id (`tasks/ID.yaml`, `variants/ID.yaml`,
`tasks/suites/ID.yaml`) or given as a path to a YAML file. Every command, the build (teachers,
training tasks) and the sweep resolve names here, so an unknown name reads the same everywhere:
one line with the nearest known ids, exit 2.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from harness.paths import SUITES_DIR, TASKS_DIR, VARIANTS_DIR
from harness.specs.suite import Suite, load_suite_spec
from harness.specs.task import TaskSpec, load_task
from harness.specs.variant import VariantSpec, load_variant
from harness.specs.yamlio import SpecError

Kind = Literal["task", "variant", "suite"]
FOLDERS: dict[Kind, Path] = {"task": TASKS_DIR, "variant": VARIANTS_DIR, "suite": SUITES_DIR}


def ids(kind: Kind) -> list[str]:
    """The ids of the specs of this kind in the checkout."""
    return [p.stem for p in sorted(FOLDERS[kind].glob("*.yaml"))]  # file-name order, as `ls`


def near(kind: Kind, name: str) -> str:
    """'; did you mean …?' for the closest known ids, or ''."""
    close = difflib.get_close_matches(name, ids(kind), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def path(kind: Kind, name: str | Path) -> Path:
    """The file of a spec given by id or as a path; SpecError (one line) if there is none."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml"):
        if not as_path.is_file():
            raise SpecError([f"{as_path}: {kind} file does not exist"])
        return as_path
    candidate = FOLDERS[kind] / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    raise SpecError([f"unknown {kind} {str(name)!r}{near(kind, str(name))} (see `rocobench ls`)"])


def task(name: str | Path) -> TaskSpec:
    return load_task(path("task", name))


def variant(name: str | Path) -> VariantSpec:
    return load_variant(path("variant", name))


def suite(name: str | Path) -> Suite:
    """A suite with the task and variant specs it names."""
    spec = load_suite_spec(path("suite", name))
    return Suite(spec, task(spec.task), tuple(variant(v) for v in spec.variants))


def all_variants() -> list[VariantSpec]:
    return [variant(v) for v in ids("variant")]


def teachers(spec: VariantSpec) -> list[VariantSpec]:
    """The variants whose builds this variant's chain learns from, as its techniques declare."""
    return [variant(v) for t in spec.techniques for v in t.dependencies().teachers]
