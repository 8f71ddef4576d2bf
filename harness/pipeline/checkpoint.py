"""Crash safety of one seed's run: its lock, and the checkpoint generation appends to.

A seed's run holds `<run dir>/.lock` (fcntl.flock) while it works, so a second process on the
same run fails fast. Generation appends each finished batch to `predictions.partial.jsonl` (a
header with the run's key, then one `PredictionRow` per sample, fsynced per batch); a rerun whose
key matches skips the samples already there. Per-sample seeding makes the resumed captions
identical to an uninterrupted run's.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from harness.data.dataset import EvalSet
from harness.pipeline.prediction import Prediction
from harness.records.rows import CheckpointHeader, PredictionRow, dumps
from harness.records.store import write_jsonl
from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec

PARTIAL_FILE = "predictions.partial.jsonl"
SHARD_GLOB = "predictions.partial*.jsonl"  # the single-process checkpoint and every shard's
LOCK_FILE = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold `out_dir/.lock` (exclusive, non-blocking flock); RunLocked if another process has it.

    The lock dies with its process, kill -9 included. The file stays behind once the run has
    written something; a run that wrote nothing (e.g. its model failed to load) removes the lock
    file and the folders it created, so a failed run leaves no trace.
    """
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunLocked(f"{out_dir} is being written by another run (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            if created and [p.name for p in out_dir.iterdir()] == [LOCK_FILE]:
                path.unlink(missing_ok=True)  # still held: no other run can have it now
                for d in created:  # innermost first
                    try:
                        d.rmdir()
                    except OSError:
                        break
    finally:
        os.close(fd)  # closing releases the lock


def checkpoint_key(
    task: TaskSpec,
    variant: VariantSpec,
    evalset: EvalSet,
    seed: int,
    fixed_new_tokens: int | None,
    backend: str = "hf",
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: anything that changes a caption."""
    engine = {} if backend == "hf" else {"backend": backend}  # hf keys stay as they were
    return engine | {
        "task_sha256": spec_hash(task),
        "manifest_sha256": spec_hash(variant),
        "seed": seed,
        "ids_sha256": evalset.ids_sha256,
        "dataset_revision": evalset.revision,
        "generation": task.generation_kwargs.model_dump(mode="json"),
        "fixed_new_tokens": fixed_new_tokens,
    }


def prediction_row(p: Prediction, text: str) -> PredictionRow:
    """A generated caption as its row: `text` is the cleaned caption, `p.text` the raw one."""
    fields: dict[str, Any] = {
        "id": p.id,
        "prediction": text,
        "raw": p.text,
        "new_tokens": p.new_tokens,
        "sample_seed": p.sample_seed,
    }
    return PredictionRow(**fields, **({} if p.error is None else {"error": p.error}))


def read_checkpoint(path: Path, key: Mapping[str, Any]) -> list[Prediction]:
    """The predictions of a matching checkpoint; [] if none, another run's, or unreadable.

    Lines after the header that do not parse (a torn last line from a kill mid-write) end the
    read: everything before them was fsynced whole.
    """
    if not path.exists():
        return []
    done: list[Prediction] = []
    with path.open(encoding="utf-8") as fh:
        try:
            header = CheckpointHeader.model_validate_json(fh.readline())
        except ValidationError:
            return []
        if header.checkpoint != dict(key):
            return []
        for line in fh:
            try:
                row = PredictionRow.model_validate_json(line)
            except ValidationError:
                break
            done.append(Prediction(row.id, row.raw, row.new_tokens, row.sample_seed, row.error))
    return done


def open_checkpoint(
    path: Path, key: Mapping[str, Any], done: Sequence[Prediction], clean: Callable[[str], str]
) -> IO[str]:
    """Rewrite the checkpoint (header + `done`, torn tail dropped) atomically; open it to append."""
    rows = [
        CheckpointHeader(checkpoint=dict(key)),
        *(prediction_row(p, clean(p.text)) for p in done),
    ]
    write_jsonl(path, (row.to_json() for row in rows))
    return path.open("a", encoding="utf-8")


def append_batch(fh: IO[str], preds: Sequence[Prediction], clean: Callable[[str], str]) -> None:
    for p in preds:
        fh.write(dumps(prediction_row(p, clean(p.text))) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def remove_checkpoints(out_dir: Path) -> None:
    """Every checkpoint in a run folder: the single-process one and every shard's."""
    for path in out_dir.glob(SHARD_GLOB):
        path.unlink(missing_ok=True)
