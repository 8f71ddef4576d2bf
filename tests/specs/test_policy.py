"""`rocobench validate` applies the submission rules (harness.specs.policy, CONTRIBUTING.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.specs import allowlist
from harness.specs.yamlio import MAX_SPEC_BYTES

SHA = "0123456789abcdef0123456789abcdef01234567"

HUB_BASE = f"""\
id: {{id}}
description: a submitted variant
base:
  model: org/some-vlm
  revision: {SHA}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[str]]:
    rc = main(["validate", *map(str, args)])
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line.strip()]


def test_pinned_hub_manifest_is_valid(tmp_path, capsys):
    path = write(tmp_path, "good", HUB_BASE.format(id="good"))
    assert validate(capsys, path) == (0, [])


def test_repository_manifests_pass_the_rules(capsys):
    paths = sorted((Path(__file__).resolve().parents[2] / "variants").glob("*.yaml"))
    assert paths
    assert validate(capsys, *paths) == (0, [])


def test_unpinned_hub_base(tmp_path, capsys):
    path = write(tmp_path, "v", "id: v\nbase:\n  model: org/some-vlm\n  revision: main\n")
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines == [f"{path}:3: base: revision: a Hub model must be pinned to a 40-hex commit id"]


def test_unpinned_teacher(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: distill\n    teacher:\n      model: org/teacher\n"
    )
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:9: techniques[0].teacher: ")
    assert "40-hex commit" in lines[0]


def test_unpinned_source_repo(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: source\n    repo: org/adapter\n    revision: v1.0\n"
        "    type: adapter\n"
    )
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:7: techniques[0]")
    assert "40-hex commit" in lines[0]


def test_local_paths_refused_in_submissions(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: source\n    repo: ../../somewhere\n    type: adapter\n"
    )
    path = write(tmp_path, "v", text)
    assert validate(capsys, "--schema-only", path) == (0, [])
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines == [
        f"{path}:8: techniques[0].repo: a submission may not name a local path; use a Hub id"
    ]


def test_trust_remote_code_needs_the_allowlist(tmp_path, capsys, monkeypatch):
    text = HUB_BASE.format(id="v") + "  trust_remote_code: true\n"
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:4: base: trust_remote_code: refused")

    allow = tmp_path / "allow.yaml"
    allow.write_text("models: [org/some-vlm]\n", encoding="utf-8")
    monkeypatch.setattr(allowlist, "ALLOWLIST_PATH", allow)
    assert validate(capsys, path) == (0, [])
    # the allowlist names models, not whatever sets the flag
    other = write(
        tmp_path, "w", text.replace("org/some-vlm", "org/other").replace("id: v", "id: w")
    )
    assert validate(capsys, other)[0] == 2


def test_the_committed_allowlist_loads():
    assert isinstance(allowlist.trust_remote_code_allowlist(), frozenset)


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "..", "Upper", ".hidden"])
def test_unsafe_ids(tmp_path, capsys, bad_id):
    path = write(tmp_path, "v", HUB_BASE.format(id=f'"{bad_id}"'))
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines[0].startswith(f"{path}:1: id: String should match pattern")


def test_python_tag_is_an_error_and_never_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    text = HUB_BASE.format(id="v") + (f"tags: !!python/object/apply:os.system ['touch {marker}']\n")
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:6: <document>: invalid YAML")
    assert "python/object/apply:os.system" in lines[0]
    assert not marker.exists()


def test_oversized_file(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + "# " + "x" * MAX_SPEC_BYTES + "\n"
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines == [f"{path}: file is {len(text)} bytes; specs are limited to {MAX_SPEC_BYTES}"]


def test_unknown_technique(tmp_path, capsys):
    path = write(tmp_path, "v", HUB_BASE.format(id="v") + "techniques:\n  - kind: magic\n")
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:7: techniques[0].kind: ")
    assert "magic" in lines[0]


def test_unknown_key(tmp_path, capsys):
    path = write(tmp_path, "v", HUB_BASE.format(id="v") + "scores: {bleu4: 0.9}\n")
    assert validate(capsys, path) == (2, [f"{path}:6: scores: unknown key"])


def test_teacher_variant_must_exist(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: distill\n    teacher: {variant: no-such-variant}\n"
    )
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines == [
        f"{path}:8: techniques[0].teacher.variant: no variant 'no-such-variant' in variants/"
    ]

    # an existing variant, or one submitted in the same pull request, is fine
    ok = write(tmp_path, "v", text.replace("no-such-variant", "tiny-llava-qlora"))
    assert validate(capsys, ok) == (0, [])
    teacher = write(tmp_path, "no-such-variant", HUB_BASE.format(id="no-such-variant"))
    assert validate(capsys, write(tmp_path, "v", text), teacher) == (0, [])


def test_teacher_variant_path_refused(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: distill\n    teacher: {variant: ../../etc/passwd}\n"
    )
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert lines == [
        f"{path}:8: techniques[0].teacher.variant: '../../etc/passwd' is not a variant id "
        "(no paths in submissions)"
    ]


def test_training_task_must_exist(tmp_path, capsys):
    text = HUB_BASE.format(id="v") + (
        "techniques:\n  - kind: qlora\n    train: {task: ../secret}\n"
    )
    path = write(tmp_path, "v", text)
    rc, lines = validate(capsys, path)
    assert rc == 2
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:8: techniques[0].train.task: ")


def test_every_problem_of_several_files(tmp_path, capsys):
    a = write(tmp_path, "a", "id: a\nbase: {model: org/x}\n")
    b = write(tmp_path, "b", HUB_BASE.format(id="b") + "extra: 1\n")
    rc, lines = validate(capsys, a, b)
    assert rc == 2
    assert [line.split(":")[0] for line in lines] == [str(a), str(b)]
