"""Atomic storage of records and their files: readers never see half a file."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from harness.records.layout import RECORD_FILE
from harness.records.record import RunRecord

_ADDRESS = re.compile(r"\s*\bat 0x[0-9a-fA-F]+|\b0x[0-9a-fA-F]{6,}\b")


def stable_error(err: BaseException) -> str:
    """One line naming an error, the same on every run: object reprs carry memory addresses
    (`<_io.BytesIO object at 0x7f…>`), which would make records of one run differ byte-wise."""
    text = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
    return _ADDRESS.sub("", text)[:300]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(*, directory: bool = False) -> int:
    """The mode `open()` / `mkdir()` would give: temp files are 0600 whatever the umask, so a
    web server running as another user could not read a rendered site or a record."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file.

    An OSError (a read-only folder, a full disk) leaves no temp file and names `path`."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err  # write(): no path
        raise


@contextmanager
def atomic_folder(out: Path, marker: str = "config.json") -> Iterator[Path]:
    """A temp folder beside `out`, renamed to `out` when the block succeeds: readers never see a
    half-written model. A concurrent builder of the same folder wins or loses (the loser's copy,
    identical by construction, is dropped when `out/marker` already exists)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, default_mode(directory=True))  # mkdtemp makes 0700
    try:
        yield tmp
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    with atomic_writer(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=False, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_record(directory: Path, record: RunRecord) -> Path:
    path = directory / RECORD_FILE
    write_json(path, record.model_dump(mode="json"))
    return path


def read_record(path: Path) -> RunRecord:
    return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))


def find_records(results: Path) -> list[tuple[Path, RunRecord]]:
    """Every record under `results`, sorted by (task, variant, seed)."""
    found = [(p, read_record(p)) for p in results.rglob(RECORD_FILE)]
    return sorted(found, key=lambda pr: pr[1].run_key)
