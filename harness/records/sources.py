"""Where records are read from: a folder, or a Hub dataset (`hf://datasets/ORG/NAME[@REV]`).

A Hub dataset is read through huggingface_hub's `HfFileSystem`: each run's files (record,
samples, predictions) are copied into a local staging folder, so that everything after this
point reads plain files.

Layout of a source (a folder or a dataset), the run folders anywhere under it:

    [records/][<contributor>/]<task>/<variant>/seed-<n>[-…]/record.json

A run folder with one more level above its task is a contributor's (the results dataset keeps
pull-requested records under `records/<contributor>/`); one without is the source owner's own.
Records are keyed by (task, variant, seed, hardware, contributor): nothing of one source or
contributor can overwrite another's.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.records.layout import PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE

HF_PREFIX = "hf://"
HF_DATASET = re.compile(
    r"hf://datasets/(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})"
    r"(?:@(?P<rev>refs/pr/\d+|[\w.-]{1,128}))?(?P<sub>/.*)?"
)
RUN_FILES = (RECORD_FILE, SAMPLES_FILE, PREDICTIONS_FILE)


class SourceError(ValueError):
    """A source that cannot be read: one line naming it."""


@dataclass(frozen=True)
class RecordFile:
    """One record file found in a source."""

    source: str  # the source as given (folder or hf:// URI)
    root: Path  # local folder the record's path is relative to
    rel: str  # posix path of record.json under root
    contributor: str  # "" for the source owner's own runs

    @property
    def path(self) -> Path:
        return self.root / self.rel

    @property
    def label(self) -> str:
        """Where the record lives, for messages: the source and the path inside it."""
        source = self.source.rstrip("/")
        return source if source.endswith(self.rel) else f"{source}/{self.rel}"


def contributor_of(rel: str) -> str:
    """The contributor folder of a record path (see the module's note), or ""."""
    parts = list(PurePosixPath(rel).parts[:-1])  # the run folder's parts
    if parts and parts[0] == "records":
        parts = parts[1:]
    return "/".join(parts[:-3]) if len(parts) > 3 else ""


def _hf_fs(endpoint: str | None) -> object:
    from huggingface_hub import HfFileSystem

    return HfFileSystem(endpoint=endpoint, skip_instance_cache=True)


def stage_hf(source: str, dest: Path, *, endpoint: str | None = None) -> Path:
    """Copy every run of the Hub dataset `source` into `dest`; return `dest`."""
    m = HF_DATASET.fullmatch(source.rstrip("/"))
    if m is None:
        raise SourceError(f"{source}: expected hf://datasets/ORG/NAME[@REVISION][/FOLDER]")
    repo, rev, sub = m.group("repo"), m.group("rev"), (m.group("sub") or "").strip("/")
    fs = _hf_fs(endpoint)
    from huggingface_hub.errors import HfHubHTTPError

    # a pull request's ref is written URL-encoded inside an HfFileSystem path
    base = f"datasets/{repo}" + (f"@{rev.replace('/', '%2F')}" if rev else "")
    top = f"{base}/{sub}" if sub else base
    try:
        found = sorted(fs.glob(f"{top}/**/{RECORD_FILE}"))  # type: ignore[attr-defined]
    except (OSError, ValueError, HfHubHTTPError) as err:  # not found, private, offline
        raise SourceError(
            f"{source}: cannot list the dataset ({type(err).__name__}: {err})"
        ) from None
    prefix = f"{base}/"
    for remote in found:
        rel_dir = PurePosixPath(remote.removeprefix(prefix)).parent
        if ".." in rel_dir.parts:
            continue
        for name in RUN_FILES:
            src = f"{prefix}{rel_dir}/{name}"
            if not fs.exists(src):  # type: ignore[attr-defined]
                continue
            target = dest / rel_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(src, str(target))  # type: ignore[attr-defined]
            except (OSError, HfHubHTTPError) as err:
                raise SourceError(f"{source}: cannot read {src} ({type(err).__name__})") from None
    return dest


def find_record_files(root: Path, source: str) -> list[RecordFile]:
    out = []
    for path in sorted(root.rglob(RECORD_FILE)):
        rel = path.relative_to(root).as_posix()
        out.append(RecordFile(source, root, rel, contributor_of(rel)))
    return out


@dataclass
class Sources:
    """Several sources read into local folders; `close()` removes the staged copies."""

    files: list[RecordFile]
    roots: dict[str, Path]
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_sources(sources: Sequence[str], *, endpoint: str | None = None) -> Sources:
    """Read each source (a folder, a record file, or an hf:// dataset) into local folders."""
    files: list[RecordFile] = []
    roots: dict[str, Path] = {}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    try:
        for n, source in enumerate(sources):
            if source in roots:
                continue  # the same source twice reads once
            if source.startswith(HF_PREFIX):
                if tmp is None:
                    tmp = tempfile.TemporaryDirectory(prefix="rocobench-sources-")
                root = stage_hf(source, Path(tmp.name) / str(n), endpoint=endpoint)
            else:
                path = Path(source)
                if path.is_file() and path.name == RECORD_FILE:
                    roots[source] = path.parent
                    files.append(RecordFile(source, path.parent, RECORD_FILE, ""))
                    continue
                if not path.is_dir():
                    raise SourceError(f"{source}: no such folder")
                root = path
            roots[source] = root
            files += find_record_files(root, source)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    return Sources(files, roots, tmp)
