"""The one resolver: an id or a path to a task, variant or suite spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.specs import catalog
from harness.specs.yamlio import SpecError


def test_ids_and_paths_resolve_to_the_same_spec(repo_root: Path) -> None:
    by_id = catalog.variant("tiny-llava")
    by_path = catalog.variant(repo_root / "variants" / "tiny-llava.yaml")
    assert by_id == by_path
    assert catalog.task("rocov2_sample").task == "rocov2_sample"
    suite = catalog.suite("embedded")
    assert suite.task.task == "rocov2_sample" and len(suite.variants) >= 3


@pytest.mark.parametrize("kind", ["task", "variant", "suite"])
def test_an_unknown_id_suggests_the_nearest(kind: str) -> None:
    known = catalog.ids(kind)  # type: ignore[arg-type]
    typo = known[0][:-1] + "#"
    with pytest.raises(SpecError) as err:
        catalog.path(kind, typo)  # type: ignore[arg-type]
    (line,) = err.value.problems
    assert line.startswith(f"unknown {kind} {typo!r}")
    assert "did you mean" in line


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.yaml"
    with pytest.raises(SpecError, match="task file does not exist"):
        catalog.task(missing)


def test_teachers_follow_the_declared_dependencies() -> None:
    student = catalog.variant("tiny-llava-kd")
    needs = [t.dependencies() for t in student.techniques]
    assert any(n.teachers for n in needs)
    assert [t.id for t in catalog.teachers(student)] == [v for n in needs for v in n.teachers]
    assert catalog.teachers(catalog.variant("tiny-llava")) == []
