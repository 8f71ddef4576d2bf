"""Structured pruning on the tiny twins: sizes, GQA invariants, importance, save → load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.data.synthetic_images import draw
from harness.models.families import FAMILIES, Family
from harness.models.inputs import build_prompt
from harness.pipeline.generate import generate_batch
from harness.specs.task import GenerationKwargs
from harness.specs.variant import VariantSpec
from harness.techniques.prune import (
    CONFIG_KEY,
    PruneError,
    PruneSpec,
    apply_layout,
    expected_parameters,
    ffn_kept,
    head_scores,
    heads_kept,
    load_pruned,
    neuron_scores,
    plan_layout,
    prune_model,
    pruned_layout,
)

NAMES = ["qwen2_vl", "mllama", "llava"]
TINY = PruneSpec(round_to=8)  # defaults otherwise: 30 % of heads and of FFN neurons
IMAGE_SIZE = (224, 224)


def load_twin(name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from harness.models.twins import build_twin

    folder = build_twin(name)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), AutoProcessor.from_pretrained(folder)


def n_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def vision_state(model: Any, family: Family) -> dict[str, torch.Tensor]:
    return {
        f"{path}.{key}": value.clone()
        for path in family.vision_modules
        for key, value in model.get_submodule(path).state_dict().items()
    }


def fixed_inputs(model: Any, processor: Any, family: Family) -> Any:
    text, add_special = build_prompt(processor, "Describe the image.")
    return processor(
        text=[text],
        images=[[draw("ct", "x")]],
        return_tensors="pt",
        add_special_tokens=add_special,
        **family.processor_kwargs(IMAGE_SIZE),
    )


@torch.no_grad()
def logits(model: Any, inputs: Any) -> torch.Tensor:
    return model(**inputs).logits


@dataclass
class Pruned:
    family: Family
    base: Any  # the unpruned model
    model: Any  # the same weights, pruned in place
    processor: Any
    layout: Any
    folder: Path  # model.save_pretrained(folder)


@pytest.fixture(scope="module", params=NAMES)
def pruned(request, tmp_path_factory) -> Pruned:
    family = FAMILIES.get(request.param)
    base, processor = load_twin(request.param)
    model, _ = load_twin(request.param)
    layout = prune_model(model, family, TINY)
    folder = tmp_path_factory.mktemp(f"pruned-{request.param}")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Pruned(family, base, model, processor, layout, folder)


# --------------------------------------------------------------------------------- the rules


def test_rounding_rules_at_full_size() -> None:
    assert heads_kept(12, 2, 0.3) == 8  # Qwen2-VL-2B: 6 per group -> 4
    assert heads_kept(32, 8, 0.3) == 24  # Llama-3.2-11B: 4 per group -> 3
    assert heads_kept(32, 32, 0.3) == 22  # Vicuna-7B, plain multi-head
    assert heads_kept(4, 2, 0.3) == 2  # GQA groups of 2: 1.4 per group -> 1 (50 %)
    assert heads_kept(4, 4, 0.3) == 3  # 4-head multi-head: 2.8 -> 3 (25 %)
    assert heads_kept(2, 1, 0.3) == 1  # the twins' GQA (Qwen2-VL, Mllama): 2 -> 1, not 0
    assert heads_kept(2, 2, 0.3) == 1  # the LLaVA twin: 1.4 -> 1, neither 0 nor both
    assert heads_kept(4, 4, 0.9) == 1  # never empty
    assert heads_kept(12, 2, 0.0) == 12
    assert ffn_kept(8960, 0.3, 64) == 6272  # Qwen2-VL-2B
    assert ffn_kept(14336, 0.3, 64) == 10048  # Llama-3.2-11B
    assert ffn_kept(128, 0.3, 8) == 88  # the twins
    assert ffn_kept(128, 0.3, 64) == 64
    assert ffn_kept(100, 0.0, 64) == 100  # nothing asked, nothing removed


def test_spec_is_a_registered_technique() -> None:
    spec = VariantSpec.model_validate(
        {"id": "p", "base": {"twin": "llava"}, "techniques": [{"kind": "prune", "ffn": 0.5}]}
    )
    assert spec.techniques == (PruneSpec(ffn=0.5),)
    with pytest.raises(ValueError):
        PruneSpec(heads=1.0)


# ------------------------------------------------------------------------------- on the twins


def test_parameters_drop_exactly_as_the_layout_predicts(pruned: Pruned) -> None:
    before, after = n_params(pruned.base), n_params(pruned.model)
    assert after < before
    assert after == expected_parameters(pruned.model.config)
    assert before - after == pruned.layout.removed_parameters()
    assert expected_parameters(pruned.base.config) == before  # unpruned: the plain count

    # Independent estimate: each layer's removed fractions times its projection weights'
    # sizes, measured on the base model; biases and norms ignored, so within 1 point.
    layers = pruned.base.get_submodule(f"{pruned.family.language_model}.layers")
    lay = pruned.layout
    estimate = 0.0
    for layer, plan in zip(layers, lay.layers, strict=True):
        attn = layer.self_attn if hasattr(layer, "self_attn") else layer.cross_attn
        q_o = attn.q_proj.weight.numel() + attn.o_proj.weight.numel()
        k_v = attn.k_proj.weight.numel() + attn.v_proj.weight.numel()
        ffn = sum(getattr(layer.mlp, n).weight.numel() for n in ("gate_proj", "up_proj"))
        ffn += layer.mlp.down_proj.weight.numel()
        estimate += (1 - len(plan.q_heads) / lay.num_attention_heads) * q_o
        estimate += (1 - len(plan.kv_heads) / lay.num_key_value_heads) * k_v
        estimate += (1 - plan.intermediate_size / lay.intermediate_size) * ffn
    decoder_before = n_params(layers)
    decoder_after = n_params(pruned.model.get_submodule(f"{pruned.family.language_model}.layers"))
    actual = 1 - decoder_after / decoder_before
    assert abs(actual - estimate / decoder_before) < 0.01


def test_layout_is_stored_and_sizes_follow_it(pruned: Pruned) -> None:
    text = json.loads((pruned.folder / "config.json").read_text())["text_config"]
    stored = text[CONFIG_KEY]
    assert stored["spec"] == TINY.model_dump(mode="json")
    assert stored["removed_ffn"] == pytest.approx(40 / 128)  # 128 -> 88
    assert pruned_layout(pruned.model.config).model_dump() == pruned.layout.model_dump()
    assert pruned_layout(pruned.base.config) is None
    assert text["num_attention_heads"] == 2  # the stock field keeps the original count

    hd = pruned.layout.head_dim
    layers = pruned.model.get_submodule(f"{pruned.family.language_model}.layers")
    for layer, plan in zip(layers, pruned.layout.layers, strict=True):
        attn = layer.self_attn if hasattr(layer, "self_attn") else layer.cross_attn
        assert attn.q_proj.out_features == attn.o_proj.in_features == len(plan.q_heads) * hd
        assert attn.k_proj.out_features == attn.v_proj.out_features == len(plan.kv_heads) * hd
        assert attn.num_key_value_groups == len(plan.q_heads) // len(plan.kv_heads)
        assert layer.mlp.down_proj.in_features == plan.intermediate_size == 88


def test_gqa_invariants(pruned: Pruned) -> None:
    lay = pruned.layout
    per_group = lay.num_attention_heads // lay.num_key_value_heads
    for plan in lay.layers:
        if plan.cross_attention:
            continue
        if per_group == 1:  # LLaVA: heads leave with their K and V
            assert plan.kv_heads == plan.q_heads
            assert len(plan.q_heads) == 1  # 2 * 0.7 = 1.4 -> 1
        else:
            assert plan.kv_heads == tuple(range(lay.num_key_value_heads))
            groups = [h // per_group for h in plan.q_heads]
            assert groups == sorted(groups)
            assert all(groups.count(g) == 1 for g in range(lay.num_key_value_heads))  # 2 -> 1
    assert lay.removed_heads == pytest.approx(0.5)  # two heads per layer: one stays


def test_mllama_cross_attention_keeps_its_heads_and_prunes_its_ffn() -> None:
    family = FAMILIES.get("mllama")
    model, _ = load_twin("mllama")
    layout = plan_layout(model, family, TINY)
    assert [p.cross_attention for p in layout.layers] == [False, True, False]
    cross = layout.layers[1]
    assert cross.q_heads == (0, 1) and cross.intermediate_size == 88
    apply_layout(model, family, layout)
    attn = model.model.language_model.layers[1].cross_attn
    assert attn.q_proj.out_features == 64 and attn.num_heads == 2


def test_vision_tower_is_untouched(pruned: Pruned) -> None:
    before = vision_state(pruned.base, pruned.family)
    after = vision_state(pruned.model, pruned.family)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_generates_after_pruning(pruned: Pruned) -> None:
    preds = generate_batch(
        pruned.model,
        pruned.processor,
        pruned.family,
        ["a", "b"],
        [draw("ct", "x"), draw("mri", "y")],
        "Describe the image.",
        GenerationKwargs(max_new_tokens=4),
        0,
        IMAGE_SIZE,
    )
    assert [p.id for p in preds] == ["a", "b"]
    assert all(1 <= p.new_tokens <= 4 for p in preds)


def test_save_load_gives_identical_logits(pruned: Pruned) -> None:
    loaded = load_pruned(pruned.folder, dtype=torch.float32, device_map="cpu")
    assert type(loaded) is type(pruned.model)  # the ordinary class: save / peft as usual
    assert n_params(loaded) == n_params(pruned.model)
    inputs = fixed_inputs(pruned.model, pruned.processor, pruned.family)
    reference = logits(pruned.model, inputs)
    assert torch.equal(logits(loaded, inputs), reference)
    assert not torch.allclose(logits(pruned.base, inputs), reference)
    # The eager attention path reads the modules' own head counts too (SDPA is the default).
    eager = load_pruned(pruned.folder, dtype=torch.float32, attn_implementation="eager")
    assert torch.allclose(logits(eager, inputs), reference, atol=1e-4)
    assert (
        vision_state(loaded, pruned.family).keys()
        == vision_state(pruned.base, pruned.family).keys()
    )


def test_plain_from_pretrained_refuses_a_pruned_folder(pruned: Pruned) -> None:
    from transformers import AutoModelForImageTextToText

    with pytest.raises(RuntimeError, match="mismatch"):
        AutoModelForImageTextToText.from_pretrained(pruned.folder)


# ------------------------------------------------------------------------- importance order


def _group_norms(model: Any, family: Family, layer: int) -> torch.Tensor:
    """L2 norm per query head: q rows (and bias), o columns, and for MHA k/v rows."""
    attn = model.get_submodule(f"{family.language_model}.layers.{layer}.self_attn")
    hd = attn.head_dim
    n = attn.q_proj.out_features // hd
    mha = attn.k_proj.out_features == attn.q_proj.out_features
    total = torch.zeros(n)
    for h in range(n):
        rows = slice(h * hd, (h + 1) * hd)
        projections = [attn.q_proj, attn.k_proj, attn.v_proj] if mha else [attn.q_proj]
        for proj in projections:
            total[h] += proj.weight[rows].pow(2).sum()
            if proj.bias is not None:
                total[h] += proj.bias[rows].pow(2).sum()
        total[h] += attn.o_proj.weight[:, rows].pow(2).sum()
    return total.sqrt()


@pytest.mark.parametrize("name", ["qwen2_vl", "llava"])
def test_importance_keeps_the_strongest_heads_and_neurons(name: str) -> None:
    family = FAMILIES.get(name)
    model, _ = load_twin(name)
    with torch.no_grad():  # make the order unmistakable: head 0 silent, head 1 strong
        attn = model.get_submodule(f"{family.language_model}.layers.0.self_attn")
        hd = attn.head_dim
        attn.q_proj.weight[0 * hd : 1 * hd] *= 0.01
        attn.o_proj.weight[:, 0 * hd : 1 * hd] *= 0.01
        attn.q_proj.weight[1 * hd : 2 * hd] *= 5
    norms = _group_norms(model, family, 0)
    assert torch.allclose(head_scores(attn, "l2"), norms, rtol=1e-5)
    layout = plan_layout(model, family, TINY)
    kept = layout.layers[0].q_heads
    assert kept == (1,) and int(norms.argmax()) == 1 and int(norms.argmin()) == 0
    for lay_idx, plan in enumerate(layout.layers):  # every layer: top norm kept, bottom removed
        n = _group_norms(model, family, lay_idx)
        assert int(n.argmax()) in plan.q_heads and int(n.argmin()) not in plan.q_heads

    mlp = model.get_submodule(f"{family.language_model}.layers.0.mlp")
    neuron_norm = (
        mlp.gate_proj.weight.pow(2).sum(1)
        + mlp.up_proj.weight.pow(2).sum(1)
        + mlp.down_proj.weight.pow(2).sum(0)
    ).sqrt()
    assert torch.allclose(neuron_scores(mlp, "l2"), neuron_norm, rtol=1e-5)
    top = sorted(torch.topk(neuron_norm, 88).indices.tolist())
    assert list(layout.layers[0].ffn_neurons) == top

    # The pruned q_proj holds exactly the kept heads' rows, in the original order.
    before = attn.q_proj.weight.detach().clone()
    apply_layout(model, family, layout)
    after = model.get_submodule(f"{family.language_model}.layers.0.self_attn").q_proj.weight
    rows = [h * hd + i for h in kept for i in range(hd)]
    assert torch.equal(after, before[rows])


def test_criteria_differ_and_random_is_seeded() -> None:
    family = FAMILIES.get("llava")
    model, _ = load_twin("llava")

    def neurons(**kw: Any) -> list[tuple[int, ...] | None]:
        lay = plan_layout(model, family, PruneSpec(round_to=8, **kw))
        return [p.ffn_neurons for p in lay.layers]

    assert neurons(criterion="random", seed=1) == neurons(criterion="random", seed=1)
    assert neurons(criterion="random", seed=1) != neurons(criterion="random", seed=2)
    assert neurons(criterion="random") != neurons(criterion="l2")
    assert neurons(criterion="l1") != neurons(criterion="random")


# ------------------------------------------------------------------------------ loud failures


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _edit_layout(folder: Path, edit: Any) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config["text_config"][CONFIG_KEY])
    path.write_text(json.dumps(config))


def test_corrupted_layout_fails_loudly(pruned: Pruned, tmp_path: Path) -> None:
    # A consistent layout that does not describe the weights: one layer's FFN 88 -> 80.
    def narrower(layout: dict[str, Any]) -> None:
        layout["layers"][0]["intermediate_size"] = 80
        n = len(layout["layers"])
        layout["removed_ffn"] = round(1 - (88 * (n - 1) + 80) / (128 * n), 6)

    folder = _copy(pruned.folder, tmp_path / "narrower")
    _edit_layout(folder, narrower)
    with pytest.raises(PruneError, match="do not fit the stored layout"):
        load_pruned(folder, dtype=torch.float32)

    # An inconsistent one (unequal heads per KV group, or a lying summary) never loads.
    folder = _copy(pruned.folder, tmp_path / "inconsistent")
    _edit_layout(folder, lambda layout: layout.update(removed_ffn=0.1))
    with pytest.raises(PruneError, match="removed_heads / removed_ffn"):
        load_pruned(folder, dtype=torch.float32)


def _rewrite_weights(folder: Path, edit: Any) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_missing_unexpected_or_renamed_keys_fail_loudly(tmp_path: Path) -> None:
    family = FAMILIES.get("llava")
    model, _ = load_twin("llava")
    prune_model(model, family, TINY)
    good = tmp_path / "good"
    model.save_pretrained(good)

    def drop(t: dict[str, torch.Tensor]) -> None:
        del t["language_model.model.layers.1.mlp.up_proj.weight"]

    def extra(t: dict[str, torch.Tensor]) -> None:
        t["language_model.model.layers.1.mlp.extra.weight"] = torch.zeros(2)

    def renamed(t: dict[str, torch.Tensor]) -> None:  # keys the renaming does not know
        for key in [k for k in t if k.startswith("language_model.model.")]:
            t[key.replace("language_model.model.", "decoder.", 1)] = t.pop(key)

    for name, edit, problem in [
        (("drop", drop, "missing_keys")),
        (("extra", extra, "unexpected_keys")),
        (("renamed", renamed, "missing_keys")),
    ]:
        folder = _copy(good, tmp_path / name)
        _rewrite_weights(folder, edit)
        with pytest.raises(PruneError, match=problem):
            load_pruned(folder, dtype=torch.float32)


def test_refuses_to_prune_twice_or_wrapped_layers(pruned: Pruned) -> None:
    from harness.models.twins import build_twin

    with pytest.raises(PruneError, match="already pruned"):
        prune_model(pruned.model, pruned.family, TINY)
    with pytest.raises(PruneError, match="no pruned model"):
        load_pruned(build_twin(pruned.family.name), dtype=torch.float32)

    class Wrapped(torch.nn.Linear):  # stands in for a 4-bit or LoRA layer
        pass

    model, _ = load_twin(pruned.family.name)
    mlp = model.get_submodule(f"{pruned.family.language_model}.layers.0.mlp")
    mlp.up_proj = Wrapped(mlp.up_proj.in_features, mlp.up_proj.out_features, bias=False)
    with pytest.raises(PruneError, match="plain full-precision"):
        prune_model(model, pruned.family, TINY)


def test_build_step_saves_a_pruned_stage(tmp_path: Path) -> None:
    from harness.models.twins import build_twin
    from harness.techniques import TECHNIQUES
    from harness.techniques.context import BuildContext, ModelState

    family = FAMILIES.get("qwen2_vl")
    base, processor = load_twin("qwen2_vl")
    ctx = BuildContext(
        state=ModelState(location=str(build_twin("qwen2_vl"))),
        family=family,
        processor=processor,
        workdir=tmp_path,
        device="cpu",
        dtype=torch.float32,
        progress=False,
        log=lambda msg: None,
    )
    TECHNIQUES.get("prune").apply(ctx, TINY)
    assert ctx.state.pruned
    model = ctx.load()
    assert n_params(model) == expected_parameters(model.config) < n_params(base)
    assert ctx.notes["prune"]["removed_heads"] == 0.5
