"""Suites: a named set of (task, variants, seeds) run as one — `rocobench run --suite NAME`.

A suite is a YAML file under `tasks/suites/` naming a task and variants by id, so the plan of a
study (the paper's Table I, the embedded CI benchmark) is declared once and shared by `run`,
`bench` and `sweep`. Ids are checked against the files in the checkout when the suite loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from harness.paths import SUITES_DIR, TASKS_DIR, VARIANTS_DIR
from harness.specs.common import SAFE_ID, Frozen, Seed
from harness.specs.limits import MAX_SEEDS
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec
from harness.specs.yamlio import SpecError, load_spec


def _known(kind: str, folder: Path, name: str) -> str:
    if not (folder / f"{name}.yaml").is_file():
        import difflib

        known = sorted(p.stem for p in folder.glob("*.yaml"))
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise ValueError(f"unknown {kind} {name!r} (no {folder.name}/{name}.yaml){hint}")
    return name


class SuiteSpec(Frozen):
    suite: str = Field(pattern=SAFE_ID)
    description: str = Field("", max_length=2000)
    task: str = Field(pattern=SAFE_ID)
    variants: tuple[str, ...] = Field(min_length=1, max_length=1000)
    seeds: tuple[Seed, ...] | None = Field(None, max_length=MAX_SEEDS)  # None: the task's

    @field_validator("task")
    @classmethod
    def _task_exists(cls, v: str) -> str:
        return _known("task", TASKS_DIR, v)

    @field_validator("variants")
    @classmethod
    def _variants_exist(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for name in v:
            _known("variant", VARIANTS_DIR, name)
        dupes = sorted({n for n in v if v.count(n) > 1})
        if dupes:
            raise ValueError(f"listed more than once: {', '.join(dupes)}")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("seeds must be a non-empty list of distinct integers")
        return v


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its spec with the task and variant specs it names."""

    spec: SuiteSpec
    task: TaskSpec
    variants: tuple[VariantSpec, ...]

    @property
    def name(self) -> str:
        return self.spec.suite

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.spec.seeds if self.spec.seeds is not None else tuple(self.task.seeds)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite_spec(path: Path) -> SuiteSpec:
    """The suite file alone; `harness.specs.catalog.suite` loads the specs it names."""
    spec = load_spec(SuiteSpec, path)
    if spec.suite != path.stem:
        raise SpecError([f"{path}:1: suite: {spec.suite!r} must match the file name {path.stem!r}"])
    return spec
