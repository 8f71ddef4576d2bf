"""Technique chains on the tiny twins: QLoRA, distillation, pruning, sourcing, and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.models.build import BUILD_FILE, build_key, ensure_built
from harness.models.load import load_variant
from harness.models.sources import BuildError
from harness.specs.variant import load_variant as load_manifest
from harness.techniques.context import ModelState, load_model

SMALL_TRAIN = (
    "{task: rocov2_sample, lr: 2.0e-2, batch_size: 8, epochs: 2, "
    "max_train_samples: 48, max_eval_samples: 16}"
)


def manifest(tmp_path: Path, vid: str, body: str) -> Path:
    path = tmp_path / f"{vid}.yaml"
    path.write_text(f"id: {vid}\n{body}")
    return path


@pytest.fixture(scope="module")
def qlora_built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qlora")
    path = manifest(
        tmp,
        "t-qlora",
        f"base: {{twin: qwen2_vl}}\ntechniques:\n  - kind: qlora\n    train: {SMALL_TRAIN}\n",
    )
    spec = load_manifest(path)
    return spec, ensure_built(spec, progress=False)


def test_qlora_trains_only_the_adapter_and_lowers_eval_loss(qlora_built) -> None:
    import bitsandbytes as bnb

    _spec, built = qlora_built
    notes = built.notes["qlora"]
    assert notes["eval_losses"][-1] < notes["eval_loss_before"]
    assert built.state.adapter is not None and built.state.quantization["load_in_4bit"]
    model = load_model(built.state, dtype=torch.float32, device="cpu")
    four_bit = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and all("language_model" in n for n in four_bit)  # vision tower kept
    lora = {n for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(".language_model.layers." in n for n in lora)
    assert notes["trainable_parameters"] == sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n
    )


def test_qlora_adapter_changes_outputs(qlora_built, sample_task) -> None:
    from transformers import AutoProcessor

    from harness.data.dataset import load_split
    from harness.models.families import FAMILIES
    from harness.pipeline.generate import generate_all
    from harness.specs.task import GenerationKwargs

    _, built = qlora_built
    processor = AutoProcessor.from_pretrained(built.state.location)
    items = load_split(sample_task, limit=4).items()
    gen = GenerationKwargs(do_sample=False, max_new_tokens=8)

    def captions(state: ModelState) -> list[str]:
        model = load_model(state, dtype=torch.float32, device="cpu")
        preds = generate_all(model, processor, FAMILIES.get("qwen2_vl"), items, "Describe.", gen,
                             0, 4, sample_task.preprocessing.image)  # fmt: skip
        return [p.text for p in preds]

    without = ModelState(**{**built.state.to_json(), "adapter": None})
    assert captions(built.state) != captions(without)


def test_cache_reuses_and_rebuilds_only_when_the_key_changes(qlora_built, tmp_path) -> None:
    spec, built = qlora_built
    again = ensure_built(spec, progress=False)
    assert again.folder == built.folder
    assert json.loads((built.folder / BUILD_FILE).read_text())["key"] == built.key
    original = spec.source.read_text().split("\n", 1)[1]  # the manifest after its `id:` line
    changed = load_manifest(
        manifest(tmp_path, "t-qlora", original.replace("epochs: 2", "epochs: 1"))
    )
    assert build_key(changed) != built.key
    (tmp_path / "c").mkdir()
    comment = load_manifest(manifest(tmp_path / "c", "t-qlora", "# a comment\n" + original))
    assert build_key(comment) == built.key


def test_distillation_lowers_the_students_loss(qlora_built, tmp_path) -> None:
    spec, _ = qlora_built
    path = manifest(
        tmp_path,
        "t-kd",
        "base: {twin: qwen2_vl}\ntechniques:\n  - kind: distill\n"
        f"    teacher: {{variant: {spec.source}}}\n    train: {SMALL_TRAIN}\n",
    )
    built = ensure_built(load_manifest(path), progress=False)
    notes = built.notes["distill"]
    assert notes["eval_losses"][-1] < notes["eval_loss_before"]
    assert built.state.adapter is None and built.state.quantization is None


def test_tokenizer_mismatch_is_a_clear_error(tmp_path) -> None:
    path = manifest(
        tmp_path,
        "t-kd-bad",
        "base: {twin: llava}\ntechniques:\n  - kind: distill\n"
        f"    teacher: {{variant: tiny-qwen2-vl}}\n    train: {SMALL_TRAIN}\n",
    )
    with pytest.raises(BuildError, match="teacher and student tokenizers differ"):
        ensure_built(load_manifest(path), progress=False)


def test_the_study_chain_distill_qlora_prune_builds_and_runs(tmp_path, sample_task) -> None:
    from harness.data.dataset import load_split
    from harness.pipeline.generate import generate_all
    from harness.specs.task import GenerationKwargs

    path = manifest(
        tmp_path,
        "t-kd-qlora-pruned",
        "base: {twin: llava}\ntechniques:\n"
        f"  - kind: distill\n    teacher: {{variant: tiny-llava}}\n    train: {SMALL_TRAIN}\n"
        f"  - kind: qlora\n    train: {SMALL_TRAIN}\n"
        "  - kind: prune\n    round_to: 8\n",
    )
    spec = load_manifest(path)
    built = ensure_built(spec, progress=False)
    assert set(built.notes) == {"distill", "qlora", "prune"}
    assert built.state.pruned and built.state.adapter is None and built.state.quantization is None
    loaded = load_variant(spec, device="cpu", progress=False)
    assert loaded.n_parameters < built.notes["prune"]["parameters_before"]
    preds = generate_all(
        loaded.model,
        loaded.processor,
        loaded.family,
        load_split(sample_task, limit=2).items(),
        "Describe.",
        GenerationKwargs(max_new_tokens=4),
        0,
        2,
        sample_task.preprocessing.image,
    )
    assert len(preds) == 2


def _old_layout(adapter: Path, out: Path) -> None:
    """Rewrite a current Qwen2-VL adapter into the module names of transformers < 4.52."""
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(adapter / "adapter_model.safetensors"))
    old = {k.replace("model.language_model.layers", "model.layers"): v for k, v in tensors.items()}
    out.mkdir()
    safetensors.torch.save_file(old, str(out / "adapter_model.safetensors"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    (out / "adapter_config.json").write_text(json.dumps(config))


def test_sourced_legacy_adapter_is_migrated_not_ignored(qlora_built, tmp_path) -> None:
    _, built = qlora_built
    legacy = tmp_path / "legacy-adapter"
    _old_layout(Path(built.state.adapter), legacy)
    path = manifest(
        tmp_path,
        "t-sourced",
        f"base: {{twin: qwen2_vl}}\ntechniques:\n  - kind: quantize\n"
        f"  - kind: source\n    repo: {legacy}\n    type: adapter\n",
    )
    sourced = ensure_built(load_manifest(path), progress=False)
    assert sourced.notes["source"]["migrated"] == sourced.notes["source"]["keys"] > 0
    a = load_model(sourced.state, dtype=torch.float32, device="cpu")
    b = load_model(built.state, dtype=torch.float32, device="cpu")
    lora_a = {n: p for n, p in a.named_parameters() if "lora_" in n}
    lora_b = {n: p for n, p in b.named_parameters() if "lora_" in n and "lm_head" not in n}
    assert lora_a.keys() <= lora_b.keys()
    assert all(torch.equal(lora_a[n], lora_b[n]) for n in lora_a)


def test_adapter_matching_no_module_is_refused(qlora_built, tmp_path) -> None:
    import safetensors.torch

    _, built = qlora_built
    bad = tmp_path / "bad-adapter"
    _old_layout(Path(built.state.adapter), bad)
    tensors = safetensors.torch.load_file(str(bad / "adapter_model.safetensors"))
    renamed = {k.replace("self_attn", "attention_block"): v for k, v in tensors.items()}
    safetensors.torch.save_file(renamed, str(bad / "adapter_model.safetensors"))
    path = manifest(
        tmp_path,
        "t-bad",
        f"base: {{twin: qwen2_vl}}\ntechniques:\n  - kind: source\n    repo: {bad}\n"
        "    type: adapter\n",
    )
    with pytest.raises(BuildError, match="match no module of the model"):
        ensure_built(load_manifest(path), progress=False)


def test_qlora_twin_beats_its_untuned_base_on_rouge_l(repo_root, sample_task) -> None:
    """The shipped manifest, trained on the bundled train split, scored on its test split."""
    from harness.data.dataset import load_split
    from harness.metrics import METRICS
    from harness.pipeline.generate import generate_all

    evalset = load_split(sample_task)
    rouge = {}
    for vid in ("tiny-qwen2-vl", "tiny-qwen2-vl-qlora"):
        spec = load_manifest(repo_root / "variants" / f"{vid}.yaml")
        loaded = load_variant(spec, device="cpu", progress=False)
        preds = generate_all(
            loaded.model,
            loaded.processor,
            loaded.family,
            evalset.items(),
            sample_task.doc_to_text,
            sample_task.generation_kwargs,
            0,
            16,
            sample_task.preprocessing.image,
        )
        texts = [sample_task.preprocessing.prediction.apply(p.text) for p in preds]
        rouge[vid] = METRICS.get("rouge_l").score(texts, evalset.references).value
    assert rouge["tiny-qwen2-vl-qlora"] > 1.5 * rouge["tiny-qwen2-vl"], rouge


def test_build_command_builds_and_reuses(capsys, tmp_path, monkeypatch) -> None:
    from harness.cli import main

    monkeypatch.setenv("ROCOBENCH_CACHE", str(tmp_path / "cache"))  # whatever ran before
    assert main(["build", "tiny-qwen2-vl-pruned", "--no-progress"]) == 0
    first = capsys.readouterr()
    assert "tiny-qwen2-vl-pruned:" in first.out and "built" in first.err
    assert main(["build", "tiny-qwen2-vl-pruned", "--no-progress"]) == 0
    assert "cached" in capsys.readouterr().err
