"""Peak tensor memory on the CPU: weights plus activations, counted, so it orders variants by
their size and does not depend on what the process ran before."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.pipeline.prediction import Prediction
from harness.pipeline.runner import run_variant
from harness.pipeline.seed import heaviest_batch
from harness.records.record import RunRecord
from harness.records.store import read_record
from harness.specs.task import TaskSpec, load_task
from harness.specs.variant import load_variant

MIB = 2**20
FAMILY = ["tiny-qwen2-vl", "tiny-qwen2-vl-pruned", "tiny-qwen2-vl-qlora"]


def light_task(repo_root: Path) -> TaskSpec:
    task = load_task(repo_root / "tasks" / "rocov2_sample.yaml")
    generation = task.generation_kwargs.model_copy(update={"max_new_tokens": 8})
    metrics = tuple(m for m in task.metric_list if m.metric == "rouge_l")
    return task.model_copy(update={"generation_kwargs": generation, "metric_list": metrics})


@pytest.fixture(scope="module")
def one_process(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[RunRecord]:
    """The Qwen2-VL twin, its pruned and QLoRA variants, then the twin again, in one process:
    two seeds each."""
    task = light_task(repo_root)
    root = tmp_path_factory.mktemp("tensors")
    records = []
    for i, name in enumerate([*FAMILY, "tiny-qwen2-vl"]):
        variant = load_variant(repo_root / "variants" / f"{name}.yaml")
        outcomes = run_variant(
            task, variant, root / str(i), seeds=[0, 1], limit=4, batch_size=2, device="cpu",
            progress=False, carbon_country="FRA",
        )  # fmt: skip
        records += [read_record(o.record) for o in outcomes]
    return records


def test_tensor_memory_orders_variants_by_their_size(one_process: list[RunRecord]) -> None:
    """Pruned < base < QLoRA in weights as loaded (at twin size the adapter and the trained copy
    of the output layer outweigh what 4 bits save), and so in tensor memory."""
    first = one_process[0 : 2 * len(FAMILY) : 2]
    assert [r.variant for r in first] == FAMILY
    by_size = sorted(first, key=lambda r: r.model.size_bytes)
    by_memory = sorted(first, key=lambda r: r.measurements.peak_tensor_mib or 0.0)
    assert [r.variant for r in by_memory] == [r.variant for r in by_size]
    assert len({r.model.size_bytes for r in first}) == len(FAMILY)  # no ties to hide behind
    for r in first:  # weights plus activations
        assert (r.measurements.peak_tensor_mib or 0.0) > r.model.size_bytes / MIB


def test_tensor_memory_does_not_depend_on_what_ran_before(one_process: list[RunRecord]) -> None:
    first, first_seed1, *_, again, again_seed1 = one_process
    # counted, not sampled: the same variant gives the same figure after another one ran in
    # the same process (its resident memory does not), and the same over seeds
    assert again.measurements.peak_tensor_mib == first.measurements.peak_tensor_mib
    assert first_seed1.measurements.peak_tensor_mib == first.measurements.peak_tensor_mib
    assert again_seed1.measurements.peak_tensor_mib == first.measurements.peak_tensor_mib


def test_the_heaviest_batch_has_most_images_then_the_longest_caption() -> None:
    tokens = [3, 9, 4, 4, 12]  # batches of 2: [3, 9], [4, 4], [12]
    preds = [Prediction(f"i{n}", "", t, 0) for n, t in enumerate(tokens)]
    assert heaviest_batch(preds, 2) == [0, 1]  # 9 beats 4; the single image of 12 is smaller
    assert heaviest_batch(preds, 5) == [0, 1, 2, 3, 4]
    assert heaviest_batch([], 4) == []
