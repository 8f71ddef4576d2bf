"""Load a task's evaluation split: a Hub dataset at a pinned revision or a local folder.

Both go through `datasets.load_dataset`, so the bundled sample is read by exactly the code that
reads ROCOv2 from the Hub. Images are decoded lazily, one batch at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from harness.paths import REPO_ROOT
from harness.specs.task import TaskSpec

DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv")


class DatasetError(RuntimeError):
    """The dataset cannot be read as the task declares it."""


@dataclass(frozen=True)
class EvalSet:
    path: str
    name: str | None
    revision: str | None
    split: str
    ids: list[str]
    references: list[str]  # cleaned as the task says
    _rows: Any  # the datasets.Dataset, for lazy image access
    _image_column: str
    # per image, the dataset's reference CUIs (task.doc_to_concepts); None: the task has none
    concepts: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ids_sha256(self) -> str:
        return ids_hash(self.ids)

    def image_loader(self, index: int) -> Callable[[], Image.Image]:
        return lambda: self._rows[index][self._image_column]

    def items(self) -> list[tuple[str, Callable[[], Image.Image]]]:
        return [(sample_id, self.image_loader(i)) for i, sample_id in enumerate(self.ids)]


def ids_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def local_revision(folder: Path) -> str:
    """For a local dataset, the content hash of its data files stands in for a Hub commit."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file()):
        if "source" in f.relative_to(folder).parts:
            continue  # provenance copies, not what is loaded
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def load_split(task: TaskSpec, split: str | None = None, limit: int | None = None) -> EvalSet:
    """Load `split` (default: the task's test split), first `limit` rows (default: task.limit)."""
    import datasets

    split = split or task.test_split
    local = task.local_dataset_dir
    if local is not None:
        if not local.is_dir():
            raise DatasetError(f"{task.source}: dataset_path: folder {local} does not exist")
        path, revision = str(local), local_revision(local)
        # Recorded relative to the repository when inside it: records travel between machines.
        shown = local.relative_to(REPO_ROOT).as_posix() if local.is_relative_to(REPO_ROOT) else path
    else:
        path, revision = task.dataset_path, task.dataset_kwargs.revision
        shown = path
        if Path(path).exists():  # `datasets` would load the folder in place of the Hub dataset
            raise DatasetError(
                f"{task.source}: dataset_path: {path!r} is a Hub id, but a folder of that name "
                f"exists in {Path.cwd()}; write a local folder as ./{path}"
            )
    try:
        rows = datasets.load_dataset(
            path,
            task.dataset_name,
            split=split,
            revision=None if local is not None else revision,
        )
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        hint = "" if local is not None else " (Hub datasets need internet or a filled HF cache)"
        raise DatasetError(f"cannot load {path} split {split!r}{hint}: {err}") from err

    limit = limit or task.limit
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    wanted = {task.doc_to_id, task.doc_to_image, task.doc_to_target}
    if task.doc_to_concepts is not None:
        wanted.add(task.doc_to_concepts)
    missing = wanted - set(rows.column_names)
    if missing:
        raise DatasetError(
            f"{task.source}: dataset {path} split {split!r} has no column(s) "
            f"{', '.join(sorted(missing))} (has: {', '.join(rows.column_names)})"
        )
    text_only = rows.select_columns([task.doc_to_id, task.doc_to_target])
    ids = [str(i) for i in text_only[task.doc_to_id]]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"dataset {path} split {split!r}: {task.doc_to_id} values repeat")
    clean = task.preprocessing.target.apply
    references = [clean(str(t)) for t in text_only[task.doc_to_target]]
    concepts = None
    if task.doc_to_concepts is not None:
        concepts = [[str(c) for c in row or ()] for row in rows[task.doc_to_concepts]]
    return EvalSet(
        path=shown,
        name=task.dataset_name,
        revision=revision,
        split=split,
        ids=ids,
        references=references,
        _rows=rows,
        _image_column=task.doc_to_image,
        concepts=concepts,
    )
