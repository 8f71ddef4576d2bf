"""Hostile or careless spec files: each test reproduces a probe that once got through.

Spec checks only: nothing here loads a model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.models.sources import resolve
from harness.specs import yamlio
from harness.specs.policy import check_manifests
from harness.specs.refs import check_ref, is_local
from harness.specs.task import load_task
from harness.specs.variant import load_variant
from harness.specs.yamlio import MAX_SPEC_BYTES, SpecError, load_spec, load_yaml

REV = "a" * 40
TWIN = "id: v\nbase: {twin: qwen2_vl}\n"


def write(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / f"{name}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_variant(path)
    return exc.value.problems


# ---------------------------------------------------------------------------- one safe loader

BOMB = "".join(
    f"{name}: &{name} [{', '.join([prev] * 9)}]\n"
    for name, prev in zip("bcdefgh", ["*a", "*b", "*c", "*d", "*e", "*f", "*g"], strict=True)
)


@pytest.mark.parametrize("where", ["description", "tags", "version"])
def test_alias_bomb_is_refused_fast_with_a_short_message(tmp_path: Path, where: str) -> None:
    text = "id: v\nbase: {twin: qwen2_vl}\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    path = write(tmp_path, "v", text + BOMB + f"{where}: *h\n")
    assert path.stat().st_size < 2500
    start = time.perf_counter()
    found = problems(path)
    assert time.perf_counter() - start < 5  # was minutes and gigabytes
    assert len(found) == 1 and "aliases expand the document beyond" in found[0]
    assert len(found[0]) < 300


def test_small_alias_reuse_still_works(tmp_path: Path) -> None:
    text = "id: v\nbase: {twin: qwen2_vl}\nx: &t [a, b]\n"
    data, _ = load_yaml(write(tmp_path, "v", text + "tags: *t\n"))
    assert data["tags"] == ["a", "b"]


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "v", TWIN + "tags: &t [a, *t]\n"))
    assert found == [f"{tmp_path / 'v.yaml'}:3: tags[1]: recursive alias"]


def test_error_messages_never_expand_values(tmp_path: Path) -> None:
    # 500 aliases of a 1,000-character string: within the bound, but 500 kB once expanded
    text = TWIN + f"x: &s {'y' * 1000}\ndescription: [{', '.join(['*s'] * 500)}]\n"
    path = write(tmp_path, "v", text)
    assert f"{path}:4: description: Input should be a valid string (got a list of 500 item(s))" in (
        problems(path)
    )
    long = problems(write(tmp_path, "v", TWIN + f"techniques: {'z' * 5000}\n"))
    assert all(len(p) < 400 for p in long)


def test_duplicate_keys_are_refused_at_the_second(tmp_path: Path) -> None:
    text = "id: v\nbase: {twin: qwen2_vl}\ndescription: shown\nbase:\n  model: x/y\n"
    path = write(tmp_path, "v", text)
    assert problems(path) == [f"{path}:4: base: duplicate key (first given on line 2)"]
    nested = write(tmp_path, "v", "id: v\nbase:\n  twin: qwen2_vl\n  twin: llava\n")
    assert problems(nested) == [f"{nested}:4: base.twin: duplicate key (first given on line 3)"]


def test_size_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.yaml"
    with path.open("wb") as fh:
        fh.truncate(2**40)  # sparse: a terabyte that costs nothing on disk
    monkeypatch.setattr(yamlio.os, "read", lambda *a: pytest.fail("read an oversized file"))
    found = problems(path)
    assert found == [f"{path}: file is {2**40} bytes; specs are limited to {MAX_SPEC_BYTES}"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_only_regular_files_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "v.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    code = (
        "import sys; from harness.specs.yamlio import load_yaml, SpecError\n"
        "try: load_yaml(__import__('pathlib').Path(sys.argv[1]))\n"
        "except SpecError as e: print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert (
        done.stdout.strip() == f"{fifo}: not a regular file; specs are read from plain files only"
    )
    for other in (tmp_path, Path("/dev/zero")):
        with pytest.raises(SpecError, match="not a regular file"):
            load_yaml(other)


def test_non_utf8_is_reported_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, "v", b"id: v\nbase: {twin: qwen2_vl}\ndescription: caf\xe9\n")
    assert problems(path) == [
        f"{path}:3: <document>: not UTF-8 text (invalid continuation byte at column 17)"
    ]


def test_a_chain_error_points_at_its_own_entry(tmp_path: Path) -> None:
    text = TWIN + "techniques:\n  - kind: quantize\n  - kind: qlra\n  - {r: 4}\n"
    path = write(tmp_path, "v", text)
    found = problems(path)
    assert found[0].startswith(f"{path}:5: techniques[1].kind: unknown technique 'qlra'")
    assert found[1] == f"{path}:6: techniques[2]: a technique needs a `kind`"


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "v", TWIN + "tags: " + "[" * 5000 + "]" * 5000 + "\n")
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}")


# ------------------------------------------------------------------ unambiguous model references


def test_a_hub_id_is_never_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    shadow = tmp_path / "work" / "someorg" / "somemodel"
    shadow.mkdir(parents=True)
    (shadow / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not is_local("someorg/somemodel")
    with pytest.raises(OSError):  # not in the cache: refused, the folder is not used
        resolve("someorg/somemodel", REV)
    # the Hub cache is where a Hub id resolves
    snapshot = tmp_path / "empty-cache" / "models--someorg--somemodel" / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert Path(resolve("someorg/somemodel", REV)) == snapshot
    # a folder must be written as a path
    assert resolve("./someorg/somemodel", None) == "./someorg/somemodel"
    with pytest.raises(ValueError, match="needs a pinned revision"):
        resolve("someorg/somemodel", None)


def test_run_never_loads_a_folder_named_like_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe: a pinned Hub id, and a real model folder of that name in the working
    directory. `run` used to load the folder and record the Hub model."""
    from huggingface_hub import constants

    from harness.models.twins import build_twin

    (tmp_path / "someorg").mkdir()
    (tmp_path / "someorg" / "somemodel").symlink_to(build_twin("qwen2_vl"))
    manifest = write(tmp_path, "v", f"id: v\nbase: {{model: someorg/somemodel, revision: {REV}}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    results = tmp_path / "results"
    args = ["run", "--task", "rocov2_sample", "--variant", str(manifest), "--limit", "1"]
    assert main([*args, "--seeds", "0", "--results", str(results), "--no-progress"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"rocobench: cannot load someorg/somemodel at revision {REV}")
    assert not list(results.rglob("record.json"))


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("Qwen/Qwen2-VL-2B-Instruct", True),
        ("./models/mine", True),
        ("/srv/models/mine", True),
        ("../mine", True),
        ("someorg/some/model", False),
        (".hidden", False),
        ("~/models/mine", False),
        ("https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct", False),
        ("C:\\models\\mine", False),
    ],
)
def test_references_are_a_hub_id_or_a_path(ref: str, ok: bool) -> None:
    if ok:
        assert check_ref(ref) == ref
    else:
        with pytest.raises(ValueError):
            check_ref(ref)


def test_submissions_refuse_local_folders(tmp_path: Path) -> None:
    path = write(tmp_path, "v", "id: v\nbase: {model: ./someorg/somemodel}\n")
    assert load_variant(path).base.is_local
    assert check_manifests([path]) == [
        f"{path}:2: base.model: a submission may not name a local path; use a Hub id"
    ]


def test_hub_dataset_id_never_loads_a_local_folder(
    tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.data.dataset import DatasetError, load_split

    text = (repo_root / "tasks" / "rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", "someorg/someds")
    task_file = tmp_path / "t.yaml"
    task_file.write_text(text + f"dataset_kwargs:\n  revision: {REV}\n")
    task = load_task(task_file)
    assert not task.is_local
    (tmp_path / "someorg" / "someds").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="is a Hub id, but a folder of that name exists"):
        load_split(task)


# ----------------------------------------------------------------------- URLs with credentials

SECRET = "hf_s3cr3tT0k3n"


@pytest.mark.parametrize(
    "body",
    [
        f"id: v\nbase: {{model: 'https://user:{SECRET}@example.com/m', revision: {REV}}}\n",
        f"id: v\nbase: {{twin: qwen2_vl}}\ntechniques:\n  - kind: source\n"
        f"    repo: https://{SECRET}@example.com/a\n    type: adapter\n",
        f"id: v\nbase: {{twin: qwen2_vl}}\ndescription: see https://u:{SECRET}@example.com\n",
    ],
)
def test_urls_with_credentials_are_refused_and_never_echoed(
    tmp_path: Path, body: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "v", body)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "a URL with credentials is refused (value not shown)" in err
    assert SECRET not in err


def test_cli_arguments_with_credentials_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", f"s3://key:{SECRET}@bucket/results"])
    err = capsys.readouterr().err
    assert code == 2 and "credentials (not shown)" in err and SECRET not in err


# ------------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("technique", "field"),
    [
        ("{kind: qlora, r: 1.0e+29}", "techniques[0].r"),
        ("{kind: qlora, train: {lr: .inf}}", "techniques[0].train.lr"),
        ("{kind: qlora, train: {lr: .nan}}", "techniques[0].train.lr"),
        ("{kind: qlora, train: {epochs: 1.0e+20}}", "techniques[0].train.epochs"),
        ("{kind: qlora, train: {seed: -1}}", "techniques[0].train.seed"),
        ("{kind: distill, teacher: {variant: x}, temperature: .inf}", "techniques[0].temperature"),
        ("{kind: prune, round_to: 100000}", "techniques[0].round_to"),
    ],
)
def test_numbers_out_of_range_are_refused(tmp_path: Path, technique: str, field: str) -> None:
    path = write(tmp_path, "v", TWIN + f"techniques:\n  - {technique}\n")
    found = problems(path)
    assert any(p.startswith(f"{path}:4: {field}: ") for p in found), found


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("seeds: [0, 4294967296]", "seeds[1]"),
        ("batch_size: 0", "batch_size"),
        ("limit: 100000000000", "limit"),
        ("generation_kwargs: {temperature: .inf}", "generation_kwargs.temperature"),
        ("generation_kwargs: {min_new_tokens: 200}", "generation_kwargs"),
    ],
)
def test_task_numbers_out_of_range_are_refused(
    tmp_path: Path, repo_root: Path, line: str, field: str
) -> None:
    from harness.specs.task import TaskSpec

    text = (repo_root / "tasks" / "rocov2_sample.yaml").read_text()
    key = line.split(":")[0]
    kept = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
    path = write(tmp_path, "t", "\n".join(kept) + f"\n{line}\n")
    with pytest.raises(SpecError) as exc:
        load_spec(TaskSpec, path)
    assert any(f": {field}: " in p for p in exc.value.problems), exc.value.problems


@pytest.mark.parametrize(
    "option",
    [
        ["--limit", "0"],
        ["--limit", "-3"],
        ["--batch-size", "0"],
        ["--batch-size", "-1"],
        ["--fixed-new-tokens", "100000"],
    ],
)
def test_cli_numbers_out_of_range_exit_2_before_anything(
    tmp_path: Path, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    args = ["run", "--task", "rocov2_sample", "--variant", "tiny-qwen2-vl", "--results"]
    with pytest.raises(SystemExit) as exc:
        main([*args, str(results), *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"rocobench run: argument {option[0]}: ")
    assert not results.exists()


@pytest.mark.parametrize(
    ("seeds", "message"),
    [("", "expected comma-separated integers"), ("0,0", "0 given more than once"),
     ("0,-1", "each seed must be in"), ("1,x", "expected comma-separated integers")],
)  # fmt: skip
def test_bad_seed_lists_exit_2(
    tmp_path: Path, seeds: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    args = ["run", "--task", "rocov2_sample", "--variant", "tiny-qwen2-vl", "--seeds", seeds]
    assert main([*args, "--results", str(results)]) == 2
    assert message in capsys.readouterr().err
    assert not results.exists()


def test_missing_task_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["run", "--task", str(missing), "--variant", "tiny-qwen2-vl"]) == 2
    assert capsys.readouterr().err.strip() == f"{missing}: task file does not exist"


# ---------------------------------------------------------------------- validate: one pass


def test_validate_reports_schema_and_rules_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "v", "id: v\nbase:\n  model: ./local/folder\n  dtype: float8\n")
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"{path}:4: base.dtype: ")
    assert lines[1] == f"{path}:3: base.model: a submission may not name a local path; use a Hub id"
