"""Hostile environments for what rocobench writes: full disks, read-only folders, umasks,
interrupted renders, and error text that must not change from run to run."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.site_records import fixture_records, write_all
from PIL import Image

from harness.cli import main
from harness.records import store
from harness.records.store import stable_error, write_json
from leaderboard import render as render_module
from leaderboard import render_site
from leaderboard.swap import SiteFolderError


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_error_text_holds_no_memory_address() -> None:
    with pytest.raises(Exception) as exc:
        Image.open(io.BytesIO(b"not an image"))
    assert " at 0x" in str(exc.value)  # what PIL says: differs on every run
    text = stable_error(exc.value)
    assert text == "UnidentifiedImageError: cannot identify image file <_io.BytesIO object>"


def test_a_full_disk_leaves_no_torn_or_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record.json"
    write_json(path, {"old": True})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError) as exc:
        write_json(path, {"new": True})
    assert exc.value.filename == str(path)  # write() errors carry no path of their own
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_io_errors_are_one_line_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_all(tmp_path / "results", fixture_records())
    site = tmp_path / "site"
    assert main(["render", str(tmp_path / "results"), "-o", str(site)]) == 0
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    capsys.readouterr()

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(kwargs.get("dir", "")))

    monkeypatch.setattr(store.tempfile, "mkstemp", read_only)
    assert main(["render", str(tmp_path / "results"), "-o", str(site)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("rocobench: ") and err[0].endswith(": Read-only file system")
    assert str(tmp_path) in err[0]
    # the old site is whole, and nothing is left beside it
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "site"]


@pytest.mark.usefixtures("umask")
def test_records_and_site_files_honour_the_umask(tmp_path: Path) -> None:
    write_json(tmp_path / "r.json", {})
    assert _mode(tmp_path / "r.json") == 0o644  # was 0600 from mkstemp
    write_all(tmp_path / "results", fixture_records())
    render_site(tmp_path / "results", tmp_path / "site")
    site = tmp_path / "site"
    assert _mode(site) == 0o755
    for p in site.rglob("*"):
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p
    os.umask(0o077)
    write_json(tmp_path / "private.json", {})
    assert _mode(tmp_path / "private.json") == 0o600


def test_an_interrupted_render_leaves_the_old_site_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_all(tmp_path / "results", fixture_records())
    site = tmp_path / "site"
    render_site(tmp_path / "results", site)
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    real, calls = render_module.atomic_writer, []

    def writer(path: Path, mode: str = "w") -> object:
        calls.append(path)
        if len(calls) == 2:  # the new index.html is written: interrupted before the rest
            raise KeyboardInterrupt
        return real(path, mode)

    monkeypatch.setattr(render_module, "atomic_writer", writer)
    write_all(tmp_path / "fewer", fixture_records()[:3])  # a changed result set
    with pytest.raises(KeyboardInterrupt):
        render_site(tmp_path / "fewer", site)
    assert calls[0].name == "index.html"
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fewer", "results", "site"]
    monkeypatch.setattr(render_module, "atomic_writer", real)
    render_site(tmp_path / "fewer", site)
    assert (site / "results.csv").read_bytes() != before[site / "results.csv"]


def test_stray_temporary_files_are_cleaned(tmp_path: Path) -> None:
    write_all(tmp_path / "results", fixture_records())
    site = tmp_path / "site"
    render_site(tmp_path / "results", site)
    # what a render killed with SIGKILL leaves: a half-written new site and temp files
    (tmp_path / ".site.new-abc123" / "v").mkdir(parents=True)
    (tmp_path / ".site.old-def456").mkdir()
    (site / ".index.html.x1y2.tmp").write_text("half")
    (site / "v" / ".page.html.z9.tmp").write_text("half")
    render_site(tmp_path / "results", site)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "site"]
    assert not list(site.rglob("*.tmp"))


def test_render_never_replaces_a_folder_that_is_not_a_site(tmp_path: Path) -> None:
    write_all(tmp_path / "results", fixture_records())
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(SiteFolderError, match="not part of a rendered site"):
        render_site(tmp_path / "results", precious)
    assert (precious / "thesis.tex").read_text() == "years of work"
