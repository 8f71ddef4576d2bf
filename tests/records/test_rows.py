"""Typed JSONL rows: byte-stable writing, strict reading with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.records.rows import PredictionRow, RowError, SampleRow, dumps, read_samples


def test_optional_fields_appear_only_when_given() -> None:
    plain = SampleRow(id="a", reference="r", prediction="p", new_tokens=3, scores={"bleu4": 0.5})
    assert list(plain.to_json()) == ["id", "reference", "prediction", "new_tokens", "scores"]
    # A dataset without concepts for this image: the key stays, as null, in its place.
    given = SampleRow.model_validate(
        {"id": "a", "reference": "r", "prediction": "p", "new_tokens": 3, "error": "bad image",
         "scores": {}, "concepts": None}
    )  # fmt: skip
    assert list(given.to_json()) == [
        "id", "reference", "prediction", "new_tokens", "error", "scores", "concepts",
    ]  # fmt: skip
    assert given.to_json()["concepts"] is None


def test_a_written_line_reads_back_to_the_same_bytes(tmp_path: Path) -> None:
    row = PredictionRow(id="x", prediction="ct é", raw=" CT é ", new_tokens=4, sample_seed=7)
    line = dumps(row)
    assert line == json.dumps(
        {"id": "x", "prediction": "ct é", "raw": " CT é ", "new_tokens": 4, "sample_seed": 7},
        ensure_ascii=False,
    )
    assert dumps(PredictionRow.model_validate_json(line)) == line


def test_a_bad_line_names_the_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    good = {"id": "a", "reference": "r", "prediction": "p", "new_tokens": 1, "scores": {}}
    bad = {**good, "id": "b", "new_tokens": "many"}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(RowError, match=r"samples.jsonl:3: new_tokens: "):
        read_samples(path)
    path.write_text(json.dumps(good) + "\n")
    assert [r.id for r in read_samples(path)] == ["a"]


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    row = {"id": "a", "reference": "r", "prediction": "p", "new_tokens": 1, "scores": {}, "x": 1}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RowError, match=":1: x: "):
        read_samples(path)
