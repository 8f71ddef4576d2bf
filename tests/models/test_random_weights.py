"""`--random-weights`: the published architectures, built without their checkpoints.

Full size is checked on the meta device (parameter counts); everything that runs does so on
reduced copies of the published configurations (same keys, a few layers of width 64), through
the real path: config file -> random base folder -> technique chain -> `from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.models import random_weights as rw
from harness.paths import REPO_ROOT
from harness.records.layout import RECORD_FILE
from harness.records.store import read_record
from harness.specs.task import GenerationKwargs, load_task
from harness.specs.variant import load_variant

# Exact counts of the published configs: the checkpoints' published sizes 2.21 B, 7.06 B, 10.67 B.
PUBLISHED = {
    "Qwen/Qwen2-VL-2B-Instruct": (2_208_985_600, "Qwen2VLForConditionalGeneration"),
    "llava-hf/llava-1.5-7b-hf": (7_063_427_072, "LlavaForConditionalGeneration"),
    "meta-llama/Llama-3.2-11B-Vision-Instruct": (10_670_220_835, "MllamaForConditionalGeneration"),
}
VARIANTS = {"qwen2_vl": "qwen2-vl-2b", "llava": "llava-1.5-7b", "mllama": "llama-3.2-11b-vision"}


def _reduce(data: dict) -> dict:
    """A published config at width 64: every other key (vocabulary, token layout, LLaVA's image
    size) as published; Mllama's 560-pixel tiles shrink to 112 (its vision attention spans all
    four tiles: 6,404 positions a picture at full size)."""
    small = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
    if data["model_type"] == "qwen2_vl":
        data |= small | {"num_hidden_layers": 2, "num_key_value_heads": 2, "max_window_layers": 2}
        data["rope_scaling"]["mrope_section"] = [2, 3, 3]
        data["vision_config"] |= {"depth": 2, "embed_dim": 64, "num_heads": 4, "hidden_size": 64}
    elif data["model_type"] == "llava":
        data["text_config"] |= small | {"num_hidden_layers": 2}
        data["vision_config"] |= small | {"num_hidden_layers": 2, "projection_dim": 64}
    else:
        data["text_config"] |= small | {
            "num_hidden_layers": 3, "num_key_value_heads": 2, "cross_attention_layers": [1]
        }  # fmt: skip
        data["vision_config"] |= {
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_global_layers": 1, "attention_heads": 4, "intermediate_layers_indices": [0],
            "vision_output_dim": 128, "image_size": 112,
        }  # fmt: skip
    return data


@pytest.fixture(scope="module")
def reduced_configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("configs")
    for path in rw.CONFIGS_DIR.glob("*.json"):
        (folder / path.name).write_text(json.dumps(_reduce(json.loads(path.read_text()))))
    return folder


@pytest.fixture
def reduced(monkeypatch, reduced_configs) -> Path:
    monkeypatch.setattr(rw, "CONFIGS_DIR", reduced_configs)
    return reduced_configs


@pytest.mark.parametrize("model_id", sorted(PUBLISHED))
def test_published_configs_have_the_published_sizes(model_id: str) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText

    from harness.models.twins import build_twin

    expected, cls = PUBLISHED[model_id]
    family = rw.family_for_model_type(rw.published_config(model_id)["model_type"])
    config = rw.random_config(model_id, build_twin(family.name))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert type(model).__name__ == cls
    assert sum(p.numel() for p in model.parameters()) == expected
    # Token ids are the twin's (its tokenizer is the one there is); dimensions are published.
    twin = AutoConfig.from_pretrained(build_twin(family.name))
    assert config.get_text_config().vocab_size > twin.get_text_config().vocab_size
    assert config.get_text_config().eos_token_id == twin.get_text_config().eos_token_id


def test_every_real_base_has_a_published_config() -> None:
    bases = {load_variant(p).base.model for p in (REPO_ROOT / "variants").glob("*.yaml")}
    bases.discard(None)
    assert {b for b in bases if not rw.config_path(b).exists()} == set()


@pytest.mark.parametrize("family", sorted(VARIANTS))
def test_random_base_generates_through_the_real_path(reduced, family) -> None:
    from harness.data.synthetic_images import draw
    from harness.pipeline.generate import generate_batch

    spec = load_variant(REPO_ROOT / "variants" / f"{VARIANTS[family]}.yaml")
    loaded = rw.load_variant_random(spec, "cpu", log=lambda _: None)
    assert loaded.random_weights and loaded.revision is None
    assert loaded.base == f"random:{spec.base.model}"
    assert loaded.family.name == family
    images = [draw("ct", "a"), draw("mri", "b")]
    preds = generate_batch(
        loaded.model, loaded.processor, loaded.family, ["a", "b"], images, "Describe.",
        GenerationKwargs(max_new_tokens=3, min_new_tokens=3), 0, (224, 224),
    )  # fmt: skip
    assert [p.new_tokens for p in preds] == [3, 3]
    if family != "qwen2_vl":  # the processor follows the config (Qwen2-VL: the task's budget)
        side = loaded.model.config.vision_config.image_size
        size = loaded.processor.image_processor.size
        assert side in (size.height, size.shortest_edge)
    folder = Path(loaded.built.state.location)
    assert json.loads((folder / "rocobench_random.json").read_text())["model"] == spec.base.model


def test_processor_gets_the_published_image_size(reduced) -> None:
    """LLaVA-1.5 sees 336 x 336 pictures: 576 image tokens, not the twin's 256."""
    from harness.data.synthetic_images import draw
    from harness.models.inputs import build_prompt, preprocess_image
    from harness.specs.task import ImagePreprocessing

    spec = load_variant(REPO_ROOT / "variants/llava-1.5-7b.yaml")
    loaded = rw.load_variant_random(spec, "cpu", log=lambda _: None)
    text, add = build_prompt(loaded.processor, "Describe.")
    image = preprocess_image(draw("ct", "x"), ImagePreprocessing())
    inputs = loaded.processor(text=[text], images=[[image]], return_tensors="pt",
                              add_special_tokens=add)  # fmt: skip
    assert tuple(inputs["pixel_values"].shape[-2:]) == (336, 336)
    image_id = loaded.model.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == 576


def test_techniques_apply_without_training(reduced) -> None:
    log: list[str] = []
    pruned = rw.load_variant_random(
        load_variant(REPO_ROOT / "variants/qwen2-vl-2b-pruned.yaml"), "cpu", log=log.append
    )
    base = rw.load_variant_random(load_variant(REPO_ROOT / "variants/qwen2-vl-2b.yaml"), "cpu")
    assert pruned.n_parameters < base.n_parameters
    assert pruned.built.notes["prune"]["parameters_after"] == pruned.n_parameters

    chain = load_variant(REPO_ROOT / "variants/llava-1.5-7b-kd-qlora-pruned.yaml")
    built = rw.ensure_built_random(chain, device="cpu", log=log.append)
    assert "skipped" in built.notes["distill"]["training"]
    assert "skipped" in built.notes["qlora"]["training"]
    assert built.notes["prune"]["parameters_after"] < built.notes["prune"]["parameters_before"]
    assert built.folder.name.startswith("llava-1.5-7b-kd-qlora-pruned-random-")
    assert any("distill skipped" in line for line in log)


def test_source_step_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "v.yaml"
    manifest.write_text(
        "id: v\ndescription: d\nbase: {model: Qwen/Qwen2-VL-2B-Instruct, revision: "
        + "a" * 40
        + "}\ntechniques:\n  - {kind: source, type: adapter, repo: org/adapter, revision: "
        + "b" * 40
        + "}\n"
    )
    with pytest.raises(rw.RandomWeightsError, match="must be downloaded"):
        rw.ensure_built_random(load_variant(manifest), device="cpu")


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(rw.RandomWeightsError, match="no published configuration"):
        rw.published_config("org/unknown-model")


def test_synthetic_images_in_the_tasks_count_and_size() -> None:
    paper = load_task(REPO_ROOT / "tasks/rocov2_paper327.yaml")
    full = rw.synthetic_evalset(paper)  # no download: the split size is known
    assert len(full) == 327 and full.references == [""] * 327
    few = rw.synthetic_evalset(paper, limit=5)
    assert few.ids == full.ids[:5] and few.ids_sha256 != full.ids_sha256
    image = few.image_loader(3)()
    assert image.size == tuple(paper.preprocessing.image.size)
    assert list(image.getdata()) == list(few.image_loader(3)().getdata())  # deterministic
    sample = load_task(REPO_ROOT / "tasks/rocov2_sample.yaml")
    assert len(rw.synthetic_evalset(sample)) == 64  # a local task: its own count
    unknown = paper.model_copy(update={"dataset_path": "org/other"})
    with pytest.raises(rw.RandomWeightsError, match="--limit"):
        rw.synthetic_evalset(unknown)
    assert len(rw.synthetic_evalset(unknown, limit=7)) == 7


def test_run_on_a_real_variant_is_recorded_apart(reduced, tmp_path: Path) -> None:
    """A Hub variant on the Hub task, offline: synthetic images, no scores, its own folder."""
    from harness.pipeline.modes import RANDOM_WEIGHTS
    from harness.pipeline.runner import run_variant

    task = load_task(REPO_ROOT / "tasks/rocov2_paper327.yaml")
    variant = load_variant(REPO_ROOT / "variants/qwen2-vl-2b.yaml")
    results = tmp_path / "results"
    outcomes = run_variant(
        task, variant, results, seeds=[0], device="cpu", limit=3, progress=False,
        fixed_new_tokens=2, mode=RANDOM_WEIGHTS, log=lambda _: None,
    )  # fmt: skip
    folder = outcomes[0].record.parent
    assert folder.name == "seed-0-fixed-2-random"
    record = read_record(folder / RECORD_FILE)
    assert record.model.random_weights and record.model.base == "random:Qwen/Qwen2-VL-2B-Instruct"
    assert record.metrics == {}
    assert (record.dataset.path, record.dataset.n_samples) == ("synthetic", 3)
    assert record.measurements.new_tokens_total == 6
    again = run_variant(
        task, variant, results, seeds=[0], device="cpu", limit=3, progress=False,
        fixed_new_tokens=2, mode=RANDOM_WEIGHTS, log=lambda _: None,
    )  # fmt: skip
    assert again[0].reused


def test_cli_flag_and_the_leaderboard_leaves_such_runs_out(tmp_path: Path) -> None:
    from harness.cli import main
    from harness.records.layout import run_dir
    from harness.records.store import write_record
    from leaderboard.view import load_site

    results = tmp_path / "results"
    assert main(["run", "--task", "rocov2_sample", "--variant", "tiny-qwen2-vl", "--seeds", "0",
                 "--limit", "2", "--results", str(results), "--no-progress",
                 "--fixed-new-tokens", "2", "--random-weights"]) == 0  # fmt: skip
    folder = results / "rocov2_sample/tiny-qwen2-vl/seed-0-fixed-2-random"
    record = read_record(folder / RECORD_FILE)
    assert record.model.random_weights and record.model.base == "random:twin:qwen2_vl"
    with pytest.raises(ValueError, match="no run records"):
        load_site(results)  # random-weight records only: nothing for the leaderboard
    # The same record as if made with real weights is shown: only the flag keeps it out.
    real = record.model_copy(update={"model": record.model.model_copy(
        update={"random_weights": False, "base": "twin:qwen2_vl"})})  # fmt: skip
    write_record(run_dir(results, "rocov2_sample", "tiny-qwen2-vl", 0), real)
    site = load_site(results)
    rows = [row for table in site.tables for row in table.rows]
    assert [[r.model.random_weights for r in row.records] for row in rows] == [[False]]
