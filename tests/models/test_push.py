"""`rocobench push-variant` against the fake Hub: a tiny twin pushed as a full checkpoint and its
QLoRA variant as a PEFT adapter naming that base, both downloaded again with huggingface_hub's
`snapshot_download` and loaded by plain transformers / peft, generating the same tokens as
rocobench's own load of the cached build. Weight names are mapped onto the base checkpoint's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.fake_hub import ENDPOINT, TOKEN, FakeHub, serving

from harness.cli import main
from harness.models.push import PushError, check_keys
from harness.paths import REPO_ROOT

BASE_REPO = "rocobench/tiny-qwen2-vl"
ADAPTER_REPO = "rocobench/tiny-qwen2-vl-qlora"
# The embedded QLoRA twin with a few training steps, so that the build fits a unit test.
MINI_QLORA = """id: tiny-qwen2-vl-qlora-mini
description: Tiny Qwen2-VL twin, NF4 base with a briefly trained LoRA adapter.
base:
  twin: qwen2_vl
techniques:
  - kind: qlora
    r: 16
    modules_to_save: [lm_head]
    train: {task: rocov2_sample, lr: 3.0e-3, batch_size: 8, epochs: 1,
            max_train_samples: 16, max_eval_samples: 8}
"""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    with serving(FakeHub()) as fake:
        yield fake


LLAVA_HUB = {
    "language_model.model.layers.0.self_attn.q_proj.weight",
    "language_model.model.embed_tokens.weight",
    "language_model.lm_head.weight",
    "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
    "multi_modal_projector.linear_1.weight",
}


def test_transformers_5_names_are_mapped_onto_the_hub_checkpoints() -> None:
    saved = [
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.language_model.embed_tokens.weight",
        "lm_head.weight",
        "model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        "model.multi_modal_projector.linear_1.weight",
    ]
    keys = check_keys(saved, LLAVA_HUB, "llava", adapter=False, base_source="hub")
    assert keys.ok and set(keys.renamed.values()) == LLAVA_HUB
    adapter = [
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_B.weight",
    ]
    keys = check_keys(adapter, LLAVA_HUB, "llava", adapter=True, base_source="hub")
    assert keys.renamed == {
        a: a.replace("model.model.language_model.", "model.language_model.model.") for a in adapter
    }
    # Names already in the base's convention stay; a name in neither is reported.
    same = check_keys(sorted(LLAVA_HUB), LLAVA_HUB, "llava", adapter=False, base_source="hub")
    assert same.ok and not same.renamed
    odd = check_keys(["model.extra.weight"], LLAVA_HUB, "llava", adapter=False, base_source="x")
    assert odd.unmatched == ("model.extra.weight",)


def test_a_full_checkpoint_is_pushed_under_the_base_checkpoints_names(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load, save_file

    from harness.models.push import _full_files, check_keys

    saved = {
        "model.language_model.embed_tokens.weight": torch.ones(2, 2),
        "lm_head.weight": torch.zeros(2, 2),
    }
    save_file(saved, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "build.json").write_text("{}", encoding="utf-8")
    base = {"language_model.model.embed_tokens.weight", "language_model.lm_head.weight"}
    keys = check_keys(saved, base, "llava", adapter=False, base_source="hub")
    files = _full_files(tmp_path, keys.renamed)
    assert set(files) == {"model.safetensors", "config.json"}  # build notes stay home
    tensors = load(files["model.safetensors"])
    assert set(tensors) == base
    assert torch.equal(tensors["language_model.model.embed_tokens.weight"], torch.ones(2, 2))


def test_a_pruned_variant_is_refused(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.models.build import BuiltVariant
    from harness.models.push import plan_push
    from harness.specs.variant import load_variant
    from harness.techniques.context import ModelState

    spec = load_variant(REPO_ROOT / "variants" / "tiny-qwen2-vl-pruned.yaml")
    built = BuiltVariant(spec, ModelState("/nowhere", pruned=True), "k", None)
    with pytest.raises(PushError, match="rocobench's loader only"):
        plan_push(spec, built, repo_id="a/b", family="qwen2_vl")


def _greedy(model, processor, image) -> list[int]:  # type: ignore[no-untyped-def]
    import torch

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_round_trip_full_and_adapter_load_back_without_rocobench(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import snapshot_download
    from PIL import Image

    mini = tmp_path / "tiny-qwen2-vl-qlora-mini.yaml"
    mini.write_text(MINI_QLORA, encoding="utf-8")
    common = ["--endpoint", ENDPOINT, "--results", str(tmp_path / "none")]
    assert main(["push-variant", "tiny-qwen2-vl", "--repo", BASE_REPO, *common]) == 0
    assert main(["push-variant", str(mini), "--repo", ADAPTER_REPO,
                 "--base-repo", BASE_REPO, "--dry-run", *common]) == 0  # fmt: skip
    assert ("model", ADAPTER_REPO) not in hub.repos
    assert main(["push-variant", str(mini), "--repo", ADAPTER_REPO,
                 "--base-repo", BASE_REPO, *common]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "weight names checked against" in out

    base_files = hub.repo("model", BASE_REPO).files
    assert {"config.json", "model.safetensors", "README.md"} <= set(base_files)
    adapter_files = hub.repo("model", ADAPTER_REPO).files
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(adapter_files)
    config = json.loads(adapter_files["adapter_config.json"])
    assert config["base_model_name_or_path"] == BASE_REPO
    card = adapter_files["README.md"].decode()
    assert "base_model: rocobench/tiny-qwen2-vl" in card and "library_name: peft" in card
    assert "qlora" in card and "rocov2_sample" in card and "BitsAndBytesConfig(" in card

    # Plain huggingface_hub + transformers + peft, from snapshots of the fake repositories.
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    base_dir = snapshot_download(BASE_REPO, local_dir=tmp_path / "base")
    adapter_dir = snapshot_download(ADAPTER_REPO, local_dir=tmp_path / "adapter")
    processor = AutoProcessor.from_pretrained(base_dir)
    image = Image.new("RGB", (224, 224), (120, 80, 40))

    from harness.models.load import load_variant
    from harness.specs.variant import load_variant as load_manifest

    ours = load_variant(load_manifest(REPO_ROOT / "variants" / "tiny-qwen2-vl.yaml"), "cpu")
    plain = AutoModelForImageTextToText.from_pretrained(base_dir).eval()
    assert _greedy(plain, processor, image) == _greedy(ours.model, ours.processor, image)

    ours = load_variant(load_manifest(mini), "cpu")
    assert ours.built is not None and ours.built.state.quantization
    quant = dict(ours.built.state.quantization)
    if "bnb_4bit_compute_dtype" in quant:
        import torch

        quant["bnb_4bit_compute_dtype"] = getattr(torch, quant["bnb_4bit_compute_dtype"])
    base = AutoModelForImageTextToText.from_pretrained(
        base_dir, quantization_config=BitsAndBytesConfig(**quant)
    )
    plain = PeftModel.from_pretrained(base, adapter_dir).eval()
    tokens = _greedy(plain, processor, image)
    assert tokens == _greedy(ours.model, ours.processor, image)
    # The adapter changes the outputs: it did load (a silent no-op would match the base).
    assert tokens != _greedy(
        AutoModelForImageTextToText.from_pretrained(base_dir), processor, image
    )

    # A manifest names the pushed adapter as a prebuilt variant (the `source` technique).
    head = hub.repo("model", ADAPTER_REPO).head
    assert f"repo: {ADAPTER_REPO}\n    revision: {head}\n    type: adapter" in out
    snippet = out.split("prebuilt variant with:\n")[-1].strip()
    sourced = tmp_path / "tiny-qwen2-vl-sourced.yaml"
    sourced.write_text(
        f"id: tiny-qwen2-vl-sourced\nbase:\n  twin: qwen2_vl\n{snippet}\n", encoding="utf-8"
    )
    loaded = load_variant(load_manifest(sourced), "cpu")
    plain = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base_dir), adapter_dir
    ).eval()
    assert _greedy(loaded.model, loaded.processor, image) == _greedy(plain, processor, image)
    assert not list(Path(adapter_dir).glob("build.json"))
    assert all(TOKEN.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
