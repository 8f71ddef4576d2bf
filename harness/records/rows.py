"""The typed rows of a run's JSONL files: what `samples.jsonl`, `predictions.jsonl` and the
generation checkpoint hold, one model each, written and read by the same code.

Rows are written key by key in a fixed order, optional keys only when set, so the files are
byte-stable across versions. Reading is strict: a line that does not fit its model is an error
naming the file and line (the leaderboard turns it into a note on the page).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class RowError(ValueError):
    """A line that is not a row of its file; str() is one line with file and line number."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """Fields in declaration order; an optional field only when it was given (a null
        given explicitly stays), as the files have always had them."""
        return self.model_dump(mode="json", exclude_unset=True)


class PredictionRow(_Row):
    """One generated caption (`predictions.jsonl`, and each line of a checkpoint after its
    header): the cleaned text scored, the raw text, and how it was made."""

    id: str
    prediction: str
    raw: str
    new_tokens: int
    sample_seed: int
    error: str | None = None  # the image could not be loaded: no caption was generated


class CheckpointHeader(_Row):
    """The first line of a checkpoint: the key a resumed run must match (see
    `harness.pipeline.checkpoint.checkpoint_key`)."""

    checkpoint: dict[str, Any]


class SampleRow(_Row):
    """One scored sample (`samples.jsonl`): reference, prediction, per-sample scores, and the
    dataset's reference concepts where the task has them, so `score` and `compare` can rescore."""

    id: str
    reference: str
    prediction: str
    new_tokens: int
    error: str | None = None
    scores: dict[str, float]
    concepts: list[str] | None = None


R = TypeVar("R", bound=_Row)


def dumps(row: _Row) -> str:
    return json.dumps(row.to_json(), ensure_ascii=False)


def iter_rows(path: Path, model: type[R]) -> Iterator[R]:
    """The rows of a JSONL file; RowError with file and line on the first bad one."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate_json(line)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise RowError(f"{path}:{number}: {where}: {first['msg']}") from None


def read_samples(path: Path) -> list[SampleRow]:
    return list(iter_rows(path, SampleRow))
