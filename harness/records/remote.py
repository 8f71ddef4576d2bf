"""Where records land: a folder, or any fsspec URI (`s3://…`, `gs://…`, `file://…`, `memory://…`).

A run always works in a local folder (its lock and checkpoint need a local file system). For a
URI, its finished folder is then copied there file by file: each file under a unique temporary
name, then moved onto its final name; the old `record.json` is removed first and the new one
written last. A reader that finds a `record.json` finds the whole run, and machines that write
the same run at once leave one complete copy, never a mix of half files. Run folders are unique
per (task, variant, seed), so runs from many machines share one location without clobbering.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from harness.records.layout import RECORD_FILE, RUN_FILES

# record.json last: its presence marks a finished run


def is_remote(location: str) -> bool:
    """A URI other than `file://`: runs write locally first, then copy."""
    return "://" in location and not location.startswith(("file://", "local://"))


def local_path(location: str) -> Path:
    """The folder of a plain path or a `file://` URI."""
    for prefix in ("file://", "local://"):
        location = location.removeprefix(prefix)
    return Path(location)


def _filesystem(location: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(location)
    return fs, root.rstrip("/")


def join(location: str, rel: str) -> str:
    return f"{location.rstrip('/')}/{rel}"


def fetch_record(location: str, rel: str, folder: Path) -> bool:
    """Make `folder/record.json` the location's record of run `rel` (task/variant/seed-N), or
    remove it when the location has none; True if there was one. The runner's reuse check
    then decides on the location's record."""
    fs, root = _filesystem(location)
    target = folder / RECORD_FILE
    target.unlink(missing_ok=True)
    remote = f"{root}/{rel}/{RECORD_FILE}"
    if not fs.exists(remote):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RECORD_FILE}.{uuid.uuid4().hex}.tmp"
    fs.get_file(remote, str(tmp))
    tmp.replace(target)
    return True


def publish_run(folder: Path, location: str, rel: str) -> str:
    """Copy a finished run folder to `location/rel` (see the module's note); its address."""
    fs, root = _filesystem(location)
    dest = f"{root}/{rel}"
    fs.makedirs(dest, exist_ok=True)
    if fs.exists(f"{dest}/{RECORD_FILE}"):
        fs.rm(f"{dest}/{RECORD_FILE}")  # from here until the new one lands: an unfinished run
    for name in RUN_FILES:
        if not (folder / name).exists():
            continue
        tmp = f"{dest}/.{name}.{uuid.uuid4().hex}.tmp"
        fs.put_file(str(folder / name), tmp)
        fs.mv(tmp, f"{dest}/{name}")
    return join(location, rel)


def read_text(address: str) -> str:
    """A file at a path or URI."""
    fs, path = _filesystem(address)
    return fs.cat_file(path).decode("utf-8")
