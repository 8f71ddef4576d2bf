"""Batched generation: what makes it efficient, and the two generation benchmarks on the CPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from harness.data.synthetic_images import draw
from harness.paths import REPO_ROOT
from harness.pipeline.generate import batch_inputs, generate_all
from harness.specs.task import GenerationKwargs

FAMILIES = ["qwen2_vl", "mllama", "llava"]


@pytest.mark.parametrize("family", FAMILIES)
def test_models_attend_with_sdpa(loaded_twins, family) -> None:
    """transformers 5 picks PyTorch's fused scaled-dot-product attention for all three: no
    `attn_implementation` needs forcing (forcing it would fail a model without SDPA)."""
    config = loaded_twins[family].model.config
    assert config._attn_implementation == "sdpa"
    assert config.get_text_config()._attn_implementation == "sdpa"


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_are_left_padded_and_need_no_padding(loaded_twins, family) -> None:
    """One prompt, one image size: every row of a batch is as long as the others, so sorting
    by prompt length could not save any padding (and there is none to save)."""
    loaded = loaded_twins[family]
    images = [draw(m, f"row-{m}", (224, 224)) for m in ("ct", "xray", "ultrasound")]
    inputs = batch_inputs(loaded.model, loaded.processor, loaded.family, images, "Describe.",
                          (224, 224))  # fmt: skip
    assert loaded.processor.tokenizer.padding_side == "left"
    assert bool(inputs["attention_mask"].all())
    ids = inputs["input_ids"]
    assert all(bool((row == ids[0]).all()) for row in ids)


def test_generate_options_reach_generate(loaded_twins, sample_task) -> None:
    """A static KV cache (a benchmark option, not a run's) gives the same captions."""
    from harness.data.dataset import load_split

    loaded = loaded_twins["qwen2_vl"]
    items = load_split(sample_task, limit=2).items()

    def captions(**options: object) -> list[str]:
        preds = generate_all(
            loaded.model, loaded.processor, loaded.family, items, sample_task.doc_to_text,
            GenerationKwargs(max_new_tokens=4), 0, 2, sample_task.preprocessing.image,
            generate_options=options or None,
        )  # fmt: skip
        return [p.text for p in preds]

    assert captions(cache_implementation="static") == captions()
    with pytest.raises(ValueError):
        captions(cache_implementation="no-such-cache")


def _run_benchmark(name: str, argv: list[str], monkeypatch) -> int:
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    return module.main()


def test_gpu_generation_benchmark_runs_on_the_cpu(tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--tiny", "--images", "2", "--tokens", "3", "--batch-sizes",
            "1,2", "--json", str(out)]  # fmt: skip
    assert _run_benchmark("gpu_generation", argv, monkeypatch) == 0
    data = json.loads(out.read_text())
    assert [row["batch_size"] for row in data["sweep"]] == [1, 2]
    for row in data["sweep"]:
        assert row["measurements"]["new_tokens_total"] == 2 * 3  # exactly --tokens each
        assert row["images_per_s"] > 0 and row["ms_per_token"] > 0 and row["ratio_to_floor"] > 0
    assert data["floor_ms_per_step"] > 0
    assert "x floor" in capsys.readouterr().out
    # Without a GPU and without --tiny it refuses to start a run of hours.
    assert _run_benchmark("gpu_generation", ["--device", "cpu"], monkeypatch) == 0
    assert "nothing was measured" in capsys.readouterr().out


def test_generation_overhead_benchmark_runs(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "overhead.json"
    argv = ["--repeats", "1", "--images", "4", "--batch-size", "2", "--tokens", "3",
            "--batch1-images", "2", "--json", str(out)]  # fmt: skip
    assert _run_benchmark("generation_overhead", argv, monkeypatch) == 0
    data = json.loads(out.read_text())
    assert data["overhead"]["ratio_of_medians"] > 0 and data["batching"]["speedup"] > 0
