"""Atomic writes and the record contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.records.record import RunRecord
from harness.records.store import atomic_writer, write_json


def test_atomic_writer_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temp file left


def test_records_from_a_real_run_validate_and_refuse_unknown_fields(tmp_path: Path) -> None:
    schema = RunRecord.model_json_schema()
    assert schema["properties"]["schema_version"]["const"] == 1
    with pytest.raises(ValueError):
        RunRecord.model_validate({"schema_version": 2})
