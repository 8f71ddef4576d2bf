"""Suites: the paper's Table I and the embedded benchmark, declared once, checked on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.paths import SUITES_DIR
from harness.specs.catalog import suite as load_suite
from harness.specs.yamlio import SpecError

TABLE_I = [
    "qwen2-vl-2b", "qwen2-vl-2b-qlora", "qwen2-vl-2b-pruned",
    "llama-3.2-11b-vision", "llama-3.2-11b-vision-qlora", "llama-3.2-11b-vision-pruned",
    "llava-1.5-7b-kd", "llava-1.5-7b-kd-qlora", "llava-1.5-7b-kd-qlora-pruned",
]  # fmt: skip


def test_paper_suite_is_table_one() -> None:
    suite = load_suite(SUITES_DIR / "paper.yaml")
    assert suite.task.task == "rocov2_paper327"
    assert [v.id for v in suite.variants] == TABLE_I
    assert suite.seeds == (0, 1, 2)


def test_embedded_suite_covers_every_embedded_variant(repo_root: Path) -> None:
    from harness.specs.variant import load_variant

    embedded = {
        p.stem for p in (repo_root / "variants").glob("*.yaml") if load_variant(p).is_embedded
    }
    suite = load_suite(SUITES_DIR / "embedded.yaml")
    assert {v.id for v in suite.variants} == embedded
    assert all(v.is_embedded for v in suite.variants) and suite.task.is_local


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("variants: [tiny-llava, tiny-lava]\n", "bad.yaml:4: variants: unknown variant"),
        ("variants: [tiny-llava, tiny-llava]\n", "bad.yaml:4: variants: listed more than once"),
        ("variants: [tiny-llava]\nseeds: [1, 1]\n", "bad.yaml:5: seeds: seeds must be"),
        ("variants: [tiny-llava]\ncolour: red\n", "bad.yaml:5: colour: unknown key"),
    ],
)
def test_bad_suite_names_file_line_and_field(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("suite: bad\ndescription: x\ntask: rocov2_sample\n" + body)
    with pytest.raises(SpecError) as err:
        load_suite(path)
    assert any(expected in p for p in err.value.problems), err.value.problems


def test_dry_run_lists_the_plan_and_writes_nothing(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    assert main(["run", "--suite", "paper", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "task rocov2_paper327" in out
    for variant in TABLE_I:
        assert f"  {variant}\n" in out
    assert "distill → qlora → prune: to build" in out
    assert "27 of 27 runs to do" in out
    assert not results.exists()


def test_suite_and_task_options_are_exclusive(capsys) -> None:
    assert main(["run", "--suite", "paper", "--task", "rocov2_sample", "--dry-run"]) == 1
    assert "without --task/--variant" in capsys.readouterr().err
    # an unknown name is a spec problem: exit 2, like a malformed file
    assert main(["run", "--suite", "papr", "--dry-run"]) == 2
    assert "did you mean paper" in capsys.readouterr().err
