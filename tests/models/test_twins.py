"""The embedded twins: one recipe that both backends serve (head size 32, Hub weight names,
sharpened logits)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.data.synthetic_images import draw
from harness.models.families import FAMILIES
from harness.models.inputs import build_prompt
from harness.models.twins import LOGIT_SCALE, build_twin, twin_dir

NAMES = ["qwen2_vl", "mllama", "llava"]


def _vision_head_size(vision: dict) -> int:
    width = vision.get("embed_dim") or vision["hidden_size"]
    heads = vision.get("num_heads") or vision.get("attention_heads")
    return width // (heads or vision["num_attention_heads"])


@pytest.mark.parametrize("name", NAMES)
def test_heads_are_32_wide_in_both_towers(name: str) -> None:
    """vLLM's CPU attention kernels take no head narrower than 32."""
    config = json.loads((build_twin(name) / "config.json").read_text())
    text = config["text_config"]
    assert text["hidden_size"] // text["num_attention_heads"] == 32
    assert _vision_head_size(config["vision_config"]) == 32
    assert build_twin(name) == twin_dir(name)


def test_llava_weights_carry_the_hub_names_and_all_load() -> None:
    from safetensors import safe_open
    from transformers import AutoModelForImageTextToText

    folder = build_twin("llava")
    with safe_open(str(folder / "model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
        saved = fh.get_tensor("vision_tower.vision_model.embeddings.patch_embedding.weight")
    assert any(k.startswith("vision_tower.vision_model.") for k in keys)
    assert not any(k.startswith("vision_tower.embeddings") for k in keys)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    loaded = model.model.vision_tower.embeddings.patch_embedding.weight
    assert torch.equal(loaded, saved)  # read from the file, not initialised afresh


@pytest.mark.parametrize("name", ["qwen2_vl", "llava"])
def test_logits_are_sharp_enough_for_sampling_to_choose(name: str) -> None:
    """At the task's temperature the next token is one of a few likely ones (perplexity of the
    distribution far below the vocabulary); without the scale it would be near uniform."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = build_twin(name)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(folder)
    family = FAMILIES.get(name)
    text, add_special = build_prompt(processor, "Describe the image.")
    inputs = processor(
        text=[text],
        images=[[draw("ct", "x")]],
        return_tensors="pt",
        add_special_tokens=add_special,
        **family.processor_kwargs((224, 224)),
    )
    with torch.no_grad():
        logits = model(**inputs).logits[0, -32:, : len(processor.tokenizer)]

    def choices(scale: float) -> float:
        probs = torch.softmax(logits * scale / 0.7, dim=-1)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)
        return float(entropy.exp().median())

    vocab = len(processor.tokenizer)
    assert choices(1.0) < 40 < vocab / 2 < choices(1 / LOGIT_SCALE)
