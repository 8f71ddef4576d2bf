"""Per-sample data for the sample browser: the JSONL beside each record, and image thumbnails.

Records hold no images. Thumbnails are made at render time from the evaluated dataset when it is
on this machine — a local folder whose content hash equals the record's revision, or the Hub
dataset's snapshot at the recorded commit in the Hugging Face cache — and are left out otherwise.
Nothing is downloaded. Record fields are untrusted: they never become file names, and a path in a
record is only followed inside the folders we search.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from harness.records.record import DatasetRef, RunRecord
from harness.records.rows import SampleRow

THUMB_PX = 128  # stored size; shown smaller, so that they stay sharp on dense screens
THUMB_QUALITY = 80
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")
COMMIT = re.compile(r"[0-9a-f]{40}")
DEFAULT_COLUMNS = ("image_id", "image")  # the ROCOv2 layout, when no task file says otherwise


@dataclass
class SampleSet:
    """The first `limit` samples of one run, and why there are none when there are none."""

    samples: list[SampleRow] = field(default_factory=list)
    total: int = 0
    problem: str | None = None


def read_samples(record_path: Path, record: RunRecord, limit: int) -> SampleSet:
    """One run's samples in evaluation order; a missing or bad file is a note, not a crash."""
    name = record.samples_file
    # The file name comes from the record: only a plain name beside the record is followed.
    if Path(name).name != name or name in ("", ".", ".."):
        return SampleSet(problem=f"per-sample file name {name!r} is not a plain file name")
    path = record_path.parent / name
    if not path.is_file():
        return SampleSet(problem=f"no per-sample file ({name}) beside the record")
    found = SampleSet()
    bad = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                sample = SampleRow.model_validate_json(line)
            except ValidationError:
                bad += 1
                continue
            found.total += 1
            if len(found.samples) < limit:
                found.samples.append(sample)
    if bad:
        found.problem = f"{bad} malformed line(s) in {name} skipped"
    return found


# --------------------------------------------------------------------------- thumbnails


def thumbnail_name(dataset: DatasetRef, sample_id: str) -> str:
    """A file name from a hash: ids are untrusted, and the revision keeps stale images out."""
    key = f"{dataset.path}\0{dataset.revision}\0{dataset.split}\0{sample_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:20] + ".jpg"


def _within(path: Path, bases: Sequence[Path]) -> bool:
    return any(path.is_relative_to(base) for base in bases)


def locate_dataset(dataset: DatasetRef, bases: Sequence[Path]) -> tuple[Path | None, str]:
    """The local folder holding exactly the evaluated data, or None and the reason."""
    revision = dataset.revision or ""
    if revision.startswith("sha256:"):
        from harness.data.dataset import local_revision

        raw = Path(dataset.path)
        bases = [b.resolve() for b in bases]
        candidates = [raw] if raw.is_absolute() else [b / raw for b in bases]
        for candidate in candidates:
            folder = candidate.resolve()
            # Only folders under the repository, the results or the working directory are read.
            if not folder.is_dir() or not _within(folder, bases):
                continue
            if local_revision(folder) != revision:
                return None, f"{dataset.path} has changed since the run (content hash differs)"
            return folder, ""
        return None, f"dataset folder {dataset.path} is not on this machine"
    if HUB_ID.fullmatch(dataset.path) and COMMIT.fullmatch(revision):
        from huggingface_hub import constants

        repo = "datasets--" + dataset.path.replace("/", "--")
        folder = Path(constants.HF_HUB_CACHE) / repo / "snapshots" / revision
        if folder.is_dir():
            return folder, ""
        return None, f"{dataset.path}@{revision[:8]} is not in the local Hugging Face cache"
    return None, "the record names no pinned dataset revision"


def _columns(task: str) -> tuple[str, str]:
    """The id and image columns from the task file when there is one, else ROCOv2's."""
    from harness.paths import TASKS_DIR

    path = TASKS_DIR / f"{task}.yaml"
    if re.fullmatch(r"[\w.-]+", task) and path.is_file():
        try:
            from harness.specs.task import load_task

            spec = load_task(path)
            return spec.doc_to_id, spec.doc_to_image
        except Exception:  # a broken task file only costs the thumbnails
            pass
    return DEFAULT_COLUMNS


def make_thumbnails(
    task: str,
    dataset: DatasetRef,
    ids: Sequence[str],
    out_dir: Path,
    bases: Sequence[Path],
) -> tuple[dict[str, str], str | None]:
    """Write thumbnails of `ids` into `out_dir`; return {id: file name} and a note if any failed.

    Existing files are reused: their names include the dataset revision.
    """
    wanted = list(dict.fromkeys(ids))
    names = {i: thumbnail_name(dataset, i) for i in wanted}
    missing = [i for i in wanted if not (out_dir / names[i]).is_file()]
    if not missing:
        return names, None
    folder, why = locate_dataset(dataset, bases)
    if folder is None:
        present = {i: n for i, n in names.items() if (out_dir / n).is_file()}
        return present, f"no thumbnails: {why}"
    try:
        import datasets

        rows = datasets.load_dataset(str(folder), dataset.name, split=dataset.split)
        id_column, image_column = _columns(task)
        index = {str(v): n for n, v in enumerate(rows.select_columns([id_column])[id_column])}
    except Exception as err:  # degrade: the page is still useful without pictures
        return {}, f"no thumbnails: cannot read {dataset.path} ({type(err).__name__})"
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {i: n for i, n in names.items() if (out_dir / n).is_file()}
    for sample_id in missing:
        if sample_id not in index:
            continue
        try:
            image = rows[index[sample_id]][image_column].convert("RGB")
            image.thumbnail((THUMB_PX, THUMB_PX))
            tmp = out_dir / f".{names[sample_id]}.tmp"
            image.save(tmp, format="JPEG", quality=THUMB_QUALITY, optimize=True)
            tmp.replace(out_dir / names[sample_id])
        except Exception:
            continue
        made[sample_id] = names[sample_id]
    lost = len(wanted) - len(made)
    return made, (f"{lost} image(s) not found in {dataset.path}" if lost else None)
