"""Atomic storage of records and their files: readers never see half a file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from harness.records.layout import RECORD_FILE
from harness.records.record import RunRecord


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(out: Path, marker: str = "config.json") -> Iterator[Path]:
    """A temp folder beside `out`, renamed to `out` when the block succeeds: readers never see a
    half-written model. A concurrent builder of the same folder wins or loses (the loser's copy,
    identical by construction, is dropped when `out/marker` already exists)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
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
