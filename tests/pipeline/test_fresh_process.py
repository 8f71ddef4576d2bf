"""Memory per variant: each variant's generation runs in a fresh process, so its figures do not
depend on what ran before it, and a variant with half the weights shows less memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.pipeline.fresh_process import FRESH, run_variant_in_fresh_process
from harness.records.record import RunRecord
from harness.records.store import read_record
from harness.specs.task import TaskSpec, load_task
from harness.specs.variant import VariantSpec

IMAGES = 2  # the first images of the bundled sample: memory, not quality, is under test


def variant_mib(record: RunRecord) -> float:
    m = record.measurements
    assert m.memory_method == FRESH and m.rss_baseline_mib is not None
    return m.peak_rss_mib - m.rss_baseline_mib


def light_task(repo_root: Path) -> TaskSpec:
    """The bundled task with short captions and one cheap metric: memory is what is measured."""
    task = load_task(repo_root / "tasks" / "rocov2_sample.yaml")
    generation = task.generation_kwargs.model_copy(update={"max_new_tokens": 8})
    metrics = tuple(m for m in task.metric_list if m.metric == "rouge_l")
    return task.model_copy(update={"generation_kwargs": generation, "metric_list": metrics})


def run_fresh(repo_root: Path, variant: VariantSpec, results: Path) -> RunRecord:
    task = light_task(repo_root)
    (outcome,) = run_variant_in_fresh_process(
        task, variant, results, seeds=[0], limit=IMAGES, device="cpu", progress=False,
        carbon_country="FRA",
    )  # fmt: skip
    assert not outcome.reused
    return read_record(outcome.record)


def wide_llava(folder: Path) -> Path:
    """A LLaVA twin with a wide, deep language model: about 110 MiB of float32 weights, so that the
    weights dominate the variant's memory."""
    from transformers import AutoConfig, LlavaForConditionalGeneration

    from harness.models.twins import build_twin

    twin = build_twin("llava")
    shutil.copytree(twin, folder)
    config = AutoConfig.from_pretrained(folder)
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_hidden_layers = 512, 1536, 8
    text.num_attention_heads = text.num_key_value_heads = 8
    text.head_dim = 64
    (folder / "model.safetensors").unlink()
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def three_runs(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[RunRecord]:
    """The wide model in float32, then in bfloat16, then in float32 again: one variant run
    before and after another, and a variant with half its weights. Three fresh processes."""
    root = tmp_path_factory.mktemp("fresh")
    folder = wide_llava(root / "wide-llava")
    full = VariantSpec(id="wide-f32", base={"model": str(folder), "dtype": "float32"})
    half = VariantSpec(id="wide-bf16", base={"model": str(folder), "dtype": "bfloat16"})
    return [
        run_fresh(repo_root, full, root / "1"),
        run_fresh(repo_root, half, root / "2"),
        run_fresh(repo_root, full, root / "3"),
    ]


def test_memory_of_a_variant_does_not_depend_on_what_ran_before(
    three_runs: list[RunRecord],
) -> None:
    before, other, after = three_runs
    # Tolerance: allocator and page noise of a few MiB on figures of a few hundred MiB.
    tolerance = max(8.0, 0.15 * variant_mib(before))
    assert variant_mib(after) == pytest.approx(variant_mib(before), abs=tolerance)
    # Every worker starts from the same runtime.
    assert after.measurements.rss_baseline_mib == pytest.approx(
        before.measurements.rss_baseline_mib, abs=tolerance
    )
    assert variant_mib(other) > 0


def test_half_the_weights_shows_less_memory(three_runs: list[RunRecord]) -> None:
    full, half, _ = three_runs
    assert half.model.size_bytes < 0.55 * full.model.size_bytes
    # bfloat16 weights; buffers (position ids, rotary frequencies) keep their own dtypes
    assert half.model.weight_storage["bfloat16"] > 0.99 * half.model.size_bytes
    saved = full.model.size_bytes - half.model.size_bytes
    # At least half of the weights' saving shows in the measured memory.
    assert variant_mib(full) - variant_mib(half) > 0.5 * saved / 2**20
    # The counted tensor memory holds all of it (activations are in bfloat16 too).
    tensors_full = full.measurements.peak_tensor_mib
    tensors_half = half.measurements.peak_tensor_mib
    assert tensors_full is not None and tensors_half is not None
    assert tensors_full - tensors_half >= saved / 2**20


def test_a_seed_does_not_carry_the_scorers_of_the_seed_before(
    repo_root: Path, tmp_path: Path
) -> None:
    """Seeds are generated before any is scored: BERTScore's backbone (about 100 MiB resident)
    is not in the process while seed 1 generates, so both seeds show the variant's memory."""
    from harness.specs.variant import load_variant

    task = light_task(repo_root)
    scorers = tuple(m for m in load_task(repo_root / "tasks/rocov2_sample.yaml").metric_list)
    task = task.model_copy(
        update={"metric_list": tuple(m for m in scorers if m.metric == "bertscore_f1")}
    )
    variant = load_variant(repo_root / "variants" / "tiny-llava.yaml")
    outcomes = run_variant_in_fresh_process(
        task, variant, tmp_path, seeds=[0, 1], limit=IMAGES, device="cpu", progress=False,
        carbon_country="FRA",
    )  # fmt: skip
    first, second = (read_record(o.record) for o in outcomes)
    assert "bertscore_f1" in first.metrics
    scored = first.measurements.phases["score"].peak_rss_mib
    assert scored is not None and scored > first.measurements.peak_rss_mib + 50  # the backbone
    assert variant_mib(second) == pytest.approx(variant_mib(first), abs=25.0)
