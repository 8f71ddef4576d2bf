"""Loading a task's split: the bundled folder, the Hub call's arguments, cleaning, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.data.dataset import DatasetError, ids_hash, load_split, local_revision
from harness.specs.task import load_task


def test_bundled_test_split(sample_task) -> None:
    evalset = load_split(sample_task)
    assert len(evalset) == 64
    assert evalset.ids[0] == "ROCOv2_2023_test_000001"
    assert evalset.revision.startswith("sha256:")
    assert evalset.ids_sha256 == ids_hash(evalset.ids)
    image = evalset.image_loader(0)()
    assert image.size == (224, 224)
    # References are cleaned as the task says: no leading/trailing or doubled whitespace.
    assert all(r == " ".join(r.split()) for r in evalset.references)


def test_limit_selects_the_first_rows(sample_task) -> None:
    assert load_split(sample_task, limit=5).ids == load_split(sample_task).ids[:5]


def test_hub_dataset_is_loaded_at_its_pinned_revision(repo_root, sample_task, monkeypatch) -> None:
    import datasets

    calls = []
    bundled = datasets.load_dataset(str(sample_task.local_dataset_dir), split="test")

    def fake_load_dataset(path, name=None, *, split, revision):
        calls.append((path, name, split, revision))
        return bundled

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = load_task(repo_root / "tasks/rocov2_paper327.yaml")
    evalset = load_split(task)
    assert calls == [("unsloth/Radiology_mini", None, "test", task.dataset_kwargs.revision)]
    assert evalset.revision == task.dataset_kwargs.revision
    assert all(r == r.lower() for r in evalset.references)  # the paper task lowercases


def test_local_revision_follows_content(tmp_path: Path, sample_task) -> None:
    copy = tmp_path / "sample"
    shutil.copytree(sample_task.local_dataset_dir / "data", copy / "data")
    before = local_revision(copy)
    assert before == local_revision(copy)
    (copy / "data" / "test-00000-of-00001.parquet").write_bytes(b"changed")
    assert local_revision(copy) != before


def test_missing_column_is_a_clear_error(tmp_path: Path, repo_root: Path) -> None:
    text = (repo_root / "tasks/rocov2_sample.yaml").read_text()
    text = text.replace("./data/rocov2_sample", str(repo_root / "tasks/data/rocov2_sample"))
    path = tmp_path / "t.yaml"
    path.write_text(text.replace("doc_to_target: caption", "doc_to_target: report"))
    with pytest.raises(DatasetError, match="has no column"):
        load_split(load_task(path))


def test_missing_folder_is_a_clear_error(tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text((repo_root / "tasks/rocov2_sample.yaml").read_text())
    with pytest.raises(DatasetError, match="does not exist"):
        load_split(load_task(path))
