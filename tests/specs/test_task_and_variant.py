"""Task and variant specs: the repo's own load; bad ones fail with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec, load_task
from harness.specs.variant import VariantSpec, load_variant
from harness.specs.yamlio import SpecError, load_spec

VALID_VARIANT = """\
id: {id}
description: a test variant
base:
  model: Qwen/Qwen2-VL-2B-Instruct
  revision: 895c3a49bc3fa70a340399125c650a463535e71c
techniques: []
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return exc.value.problems


def test_repo_tasks_and_variants_load(repo_root: Path) -> None:
    tasks = {load_task(p).task for p in (repo_root / "tasks").glob("*.yaml")}
    assert tasks == {"rocov2_sample", "rocov2_caption", "rocov2_paper327"}
    variants = {load_variant(p).id for p in (repo_root / "variants").glob("*.yaml")}
    assert {"qwen2-vl-2b", "llama-3.2-11b-vision", "llava-1.5-7b"} <= variants
    assert {"tiny-qwen2-vl", "tiny-mllama", "tiny-llava"} <= variants


def test_hub_references_are_pinned(repo_root: Path) -> None:
    for path in (repo_root / "variants").glob("*.yaml"):
        v = load_variant(path)
        if not v.is_embedded:
            assert v.base.revision is not None and len(v.base.revision) == 40
    for path in (repo_root / "tasks").glob("*.yaml"):
        t = load_task(path)
        if not t.is_local:
            assert t.dataset_kwargs.revision is not None


def test_paper_generation_settings(repo_root: Path) -> None:
    for path in (repo_root / "tasks").glob("*.yaml"):
        g = load_task(path).generation_kwargs
        assert (g.do_sample, g.temperature, g.max_new_tokens, g.pad_token) == (
            True,
            0.7,
            128,
            "eos",
        )
        assert (g.top_p, g.top_k, g.repetition_penalty, g.num_beams) == (1.0, 0, 1.0, 1)


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    text = VALID_VARIANT.format(id="v1").replace("  revision:", "  revison: x\n  revision:")
    path = write(tmp_path, "v1.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_variant(path)
    assert any(p.startswith(f"{path}:5: base.revison: unknown key") for p in problems(exc))


def test_wrong_type_names_line(tmp_path: Path, repo_root: Path) -> None:
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("max_new_tokens: 128", "max_new_tokens: lots")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "max_new_tokens" in ln)
    path = write(tmp_path, "t.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_task(path)
    [problem] = problems(exc)
    assert problem.startswith(f"{path}:{line}: generation_kwargs.max_new_tokens: ")
    assert "'lots'" in problem


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "id: x\nbase: [unclosed\n  model: y\n")
    with pytest.raises(SpecError) as exc:
        load_variant(path)
    [problem] = problems(exc)
    assert problem.startswith(f"{path}:") and "invalid YAML" in problem


def test_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"id: !!python/object/apply:os.system ['touch {marker}']\n"
    path = write(tmp_path, "evil.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_variant(path)
    assert "invalid YAML" in problems(exc)[0]
    assert not marker.exists()


def test_hub_model_must_be_pinned(tmp_path: Path) -> None:
    text = VALID_VARIANT.format(id="v2").replace(
        "  revision: 895c3a49bc3fa70a340399125c650a463535e71c\n", ""
    )
    with pytest.raises(SpecError) as exc:
        load_variant(write(tmp_path, "v2.yaml", text))
    assert "40-hex" in problems(exc)[0]


def test_unknown_metric_suggests_nearest(tmp_path: Path, repo_root: Path) -> None:
    text = (
        (repo_root / "tasks/rocov2_sample.yaml")
        .read_text()
        .replace("- metric: rouge_l", "- metric: rouge-l")
    )
    with pytest.raises(SpecError) as exc:
        load_task(write(tmp_path, "t.yaml", text))
    assert "did you mean 'rouge_l'" in problems(exc)[0]


def test_unknown_twin_and_technique(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_variant(write(tmp_path, "t1.yaml", "id: t1\nbase: {twin: qwen2-vl}\n"))
    assert "did you mean 'qwen2_vl'" in problems(exc)[0]
    text = VALID_VARIANT.format(id="t2").replace("techniques: []", "techniques: [{kind: magic}]")
    with pytest.raises(SpecError) as exc:
        load_variant(write(tmp_path, "t2.yaml", text))
    assert "unknown technique 'magic'" in problems(exc)[0]


def test_unsafe_ids_and_file_name_mismatch(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec(VariantSpec, write(tmp_path, "x.yaml", VALID_VARIANT.format(id="../etc")))
    assert problems(exc)[0].startswith(f"{tmp_path / 'x.yaml'}:1: id:")
    with pytest.raises(SpecError) as exc:
        load_variant(write(tmp_path, "other.yaml", VALID_VARIANT.format(id="v3")))
    assert "must match the file name" in problems(exc)[0]


def test_spec_hash_ignores_location_not_content(tmp_path: Path, repo_root: Path) -> None:
    src = repo_root / "tasks/rocov2_sample.yaml"
    a = load_task(src)
    b = load_task(write(tmp_path, "rocov2_sample.yaml", src.read_text()))
    assert spec_hash(a) == spec_hash(b)
    changed = src.read_text().replace("temperature: 0.7", "temperature: 0.8")
    assert spec_hash(load_task(write(tmp_path, "c.yaml", changed))) != spec_hash(a)


def test_specs_are_frozen(repo_root: Path) -> None:
    task = load_task(repo_root / "tasks/rocov2_sample.yaml")
    assert isinstance(task, TaskSpec)
    with pytest.raises(ValueError):
        task.batch_size = 3  # type: ignore[misc]


def test_technique_fields_are_checked_with_their_lines(tmp_path: Path) -> None:
    text = VALID_VARIANT.format(id="t3").replace(
        "techniques: []",
        "techniques:\n  - kind: qlora\n    r: sixteen\n"
        "  - kind: prune\n    heads: 0.3\n    hedas: 1\n",
    )
    path = write(tmp_path, "t3.yaml", text)
    with pytest.raises(SpecError) as exc:
        load_variant(path)
    found = problems(exc)
    assert any(p.startswith(f"{path}:8: techniques[0].r: ") for p in found), found
    assert any(p.startswith(f"{path}:11: techniques[1].hedas: unknown key") for p in found), found


def test_technique_parameters_change_the_spec_hash(tmp_path: Path) -> None:
    base = VALID_VARIANT.format(id="t4").replace(
        "techniques: []", "techniques:\n  - kind: prune\n    heads: 0.3\n"
    )
    a = load_variant(write(tmp_path, "t4.yaml", base))
    (tmp_path / "b").mkdir()
    b = load_variant(write(tmp_path / "b", "t4.yaml", base.replace("heads: 0.3", "heads: 0.4")))
    assert spec_hash(a) != spec_hash(b)
