"""`prune`: structured pruning of the language model — attention heads and FFN neurons removed,
modules physically smaller, saved and loaded as an ordinary model folder.

What is pruned
    Only the decoder layers at `family.language_model + ".layers"`; the vision tower, the
    projector, the embeddings, the final norm and `lm_head` are untouched. In every layer the
    query heads of the self-attention and the neurons of the gated FFN (gate/up rows, down
    columns) are removed, keeping the original order of what stays.

Mllama's cross-attention layers
    Their attention (q/k/v/o over the vision states, with q_norm/k_norm) is the only path by
    which image features reach the text, and there are few of them (8 of 40 layers in
    Llama-3.2-11B-Vision): it is kept whole. Their gated FFN works on text hidden states like any
    other and is pruned. The layout marks such layers `cross_attention: true`.

Heads (GQA-aware)
    Query head h reads KV head h // (heads per group), as in transformers' `repeat_kv`.
    - Grouped-query attention (KV heads < query heads): every KV head is kept, and each group
      keeps the same number of query heads, k = max(1, round_half_up((1 - heads) × per_group)).
      Qwen2-VL-2B 12 q / 2 kv at 0.3: 6 per group → 4, 12 → 8. Llama-3.2-11B 32/8: 4 → 3,
      32 → 24. A group of two heads cannot lose 30 %: 1.4 rounds to 1, so the tiny twins
      (2 q / 1 kv) lose 50 % of their query heads; a group of one head is never emptied.
    - Plain multi-head attention (KV heads = query heads, LLaVA's Vicuna): a head goes with its
      K and V, k = max(1, round_half_up((1 - heads) × heads)): 32 → 22, the 2-head twin → 1.
    The fraction actually removed is recorded in the layout (`removed_heads`, `removed_ffn`).

FFN widths
    round_half_up((1 - ffn) × intermediate / round_to) × round_to, clamped to
    [round_to, intermediate]; `ffn: 0` keeps every neuron. Qwen2-VL-2B 8960 → 6272; the twins'
    128 → 88 with `round_to: 8`.

Importance (per layer; ties go to the lower index)
    `l2` / `l1`: the norm of every weight and bias that leaves with the unit.
    - Query head, GQA: its head_dim rows of q_proj (and of q_proj's bias) and its head_dim
      columns of o_proj. Plain multi-head: also its rows of k_proj and v_proj (and biases).
    - FFN neuron: its row of gate_proj and of up_proj (and their biases) and its column of
      down_proj.
    `l2` is the Euclidean norm of those values taken together, `l1` the sum of their absolute
    values, computed in float32. `random`: uniform scores from a generator seeded with `seed`
    (a baseline). Heads are selected within each KV group, neurons over the whole layer.

Storage and loading
    The layout goes into the text config under `rocobench_pruning` (see `PrunedLayout`), so
    `save_pretrained` carries it. The stock configs cannot express fewer heads (head_dim is
    hidden ÷ heads), so the head counts of the config stay the original ones and
    `load_pruned` builds the model through a subclass that shrinks the modules to the layout
    before the weights load. That subclass gets the checkpoint key renaming of the class it
    extends registered for it (transformers skips the renaming for classes defined outside the
    library, and the language model would load randomly initialised with no exception), and
    the loader raises on any missing, unexpected or mismatched key. A plain `from_pretrained`
    of a pruned folder fails on the shape mismatch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from harness.models.families import Family, family_for_model_type
from harness.specs.common import Frozen, Seed
from harness.specs.variant import TechniqueSpec
from harness.techniques import TECHNIQUES, Technique
from harness.techniques.lazy_torch import no_grad

if TYPE_CHECKING:
    import torch
    from torch import nn

CONFIG_KEY = "rocobench_pruning"
LAYOUT_FORMAT = 1
_EPS = 1e-9  # keeps (1 - 0.3) * 5 = 3.4999… from rounding the wrong way


class PruneError(RuntimeError):
    """A model cannot be pruned, or a pruned folder does not load exactly as saved."""


class PruneSpec(TechniqueSpec):
    kind: Literal["prune"] = "prune"
    heads: float = Field(0.3, ge=0, lt=1)  # fraction of query heads removed per layer
    ffn: float = Field(0.3, ge=0, lt=1)  # fraction of FFN neurons removed per layer
    criterion: Literal["l2", "l1", "random"] = "l2"
    round_to: int = Field(64, ge=1, le=4096)  # FFN widths rounded to a multiple (8: tiny twins)
    seed: Seed = 0


class LayerLayout(Frozen):
    """One decoder layer after pruning; head indices are the original ones, ascending."""

    q_heads: tuple[int, ...] = Field(min_length=1)
    kv_heads: tuple[int, ...] = Field(min_length=1)
    intermediate_size: int = Field(gt=0)
    cross_attention: bool = False  # Mllama cross-attention layer: attention kept whole
    # The kept FFN neurons are known to the process that planned them only: up to 14k indices
    # per layer would bloat config.json, and loading needs the width alone.
    ffn_neurons: tuple[int, ...] | None = Field(None, exclude=True)


class PrunedLayout(Frozen):
    """Which heads and neurons every decoder layer keeps, and the sizes they were cut from."""

    format: Literal[1] = LAYOUT_FORMAT
    spec: PruneSpec
    hidden_size: int
    head_dim: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    biased: tuple[str, ...]  # which of q/k/v/gate/up projections carry a bias (shrinks too)
    layers: tuple[LayerLayout, ...]
    removed_heads: float  # fraction of query heads removed over the pruned attention layers
    removed_ffn: float  # fraction of FFN neurons removed over all layers

    @model_validator(mode="after")
    def _consistent(self) -> PrunedLayout:
        n_q, n_kv = self.num_attention_heads, self.num_key_value_heads
        if n_q % n_kv:
            raise ValueError(f"{n_q} query heads do not split into {n_kv} KV groups")
        per_group = n_q // n_kv
        for i, layer in enumerate(self.layers):
            where = f"layers[{i}]"
            for name, kept, total in (
                ("q_heads", layer.q_heads, n_q),
                ("kv_heads", layer.kv_heads, n_kv),
            ):
                if list(kept) != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= total:
                    raise ValueError(f"{where}.{name}: want distinct ascending indices < {total}")
            if layer.intermediate_size > self.intermediate_size:
                raise ValueError(f"{where}.intermediate_size exceeds {self.intermediate_size}")
            if per_group == 1:  # plain multi-head: a head goes with its K and V
                if layer.kv_heads != layer.q_heads:
                    raise ValueError(f"{where}: multi-head attention keeps q and kv heads alike")
            else:
                if len(layer.kv_heads) != n_kv:
                    raise ValueError(f"{where}.kv_heads: grouped-query attention keeps them all")
                counts = [0] * n_kv
                for h in layer.q_heads:
                    counts[h // per_group] += 1
                if len(set(counts)) != 1:
                    raise ValueError(f"{where}.q_heads: unequal heads per KV group {counts}")
            if layer.cross_attention and len(layer.q_heads) != n_q:
                raise ValueError(f"{where}: cross-attention layers keep every head")
        heads, ffn = _removed_fractions(
            self.layers, self.num_attention_heads, self.intermediate_size
        )
        if abs(heads - self.removed_heads) > 1e-6 or abs(ffn - self.removed_ffn) > 1e-6:
            raise ValueError("removed_heads / removed_ffn do not match the layers")
        return self

    def removed_parameters(self) -> int:
        """Parameters the layout removes from the base model (an exact count)."""
        hd, hidden, bias = self.head_dim, self.hidden_size, set(self.biased)
        total = 0
        for layer in self.layers:
            r_q = self.num_attention_heads - len(layer.q_heads)
            r_kv = self.num_key_value_heads - len(layer.kv_heads)
            r_ffn = self.intermediate_size - layer.intermediate_size
            total += r_q * hd * (2 * hidden + ("q" in bias))  # q rows (+ bias), o columns
            total += r_kv * hd * (2 * hidden + ("k" in bias) + ("v" in bias))
            total += r_ffn * (3 * hidden + ("gate" in bias) + ("up" in bias))
        return total

    def to_config(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _removed_fractions(
    layers: Sequence[LayerLayout], num_heads: int, intermediate: int
) -> tuple[float, float]:
    """(query heads removed over the pruned attention layers, FFN neurons removed overall)."""
    pruned = [layer for layer in layers if not layer.cross_attention]
    q_kept = sum(len(layer.q_heads) for layer in pruned)
    f_kept = sum(layer.intermediate_size for layer in layers)
    heads = 1 - q_kept / (num_heads * len(pruned)) if pruned else 0.0
    return round(heads, 6), round(1 - f_kept / (intermediate * len(layers)), 6)


# ------------------------------------------------------------------------------------ planning


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + _EPS)  # Python's round() would round halves to even


def heads_kept(num_heads: int, num_kv_heads: int, fraction: float) -> int:
    """Query heads a layer keeps (see the module docstring for the rule)."""
    per_group = num_heads // num_kv_heads
    if per_group == 1:
        return max(1, _round_half_up((1 - fraction) * num_heads))
    return num_kv_heads * max(1, _round_half_up((1 - fraction) * per_group))


def ffn_kept(intermediate: int, fraction: float, round_to: int) -> int:
    if fraction == 0:
        return intermediate
    width = _round_half_up((1 - fraction) * intermediate / round_to) * round_to
    return min(intermediate, max(round_to, width))


def _decoder_layers(model: Any, family: Family) -> nn.ModuleList:
    return model.get_submodule(f"{family.language_model}.layers")


def _attention(layer: nn.Module) -> tuple[nn.Module, bool]:
    """(attention module, whether it is a cross-attention)."""
    if hasattr(layer, "self_attn"):
        return layer.self_attn, False
    if hasattr(layer, "cross_attn"):
        return layer.cross_attn, True
    raise PruneError(f"{type(layer).__name__} has neither self_attn nor cross_attn")


_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def _check_plain(layer: nn.Module) -> None:
    from torch import nn

    attn, _ = _attention(layer)
    for owner, names in ((attn, _ATTN), (layer.mlp, _MLP)):
        for name in names:
            module = getattr(owner, name)
            if type(module) is not nn.Linear:  # a 4-bit or LoRA-wrapped layer
                raise PruneError(
                    f"prune needs plain full-precision nn.Linear layers, found "
                    f"{type(module).__name__} at {name}: prune before quantizing or adding LoRA"
                )


def _score(parts: Sequence[torch.Tensor], criterion: str) -> torch.Tensor:
    """Per-unit norm of `parts` taken together, each shaped (units, …)."""
    import torch

    flat = torch.cat([p.detach().float().reshape(p.shape[0], -1) for p in parts], dim=1)
    return flat.abs().sum(dim=1) if criterion == "l1" else flat.norm(dim=1)


def _unit_rows(linear: nn.Linear, units: int) -> list[torch.Tensor]:
    """Rows of an output-side projection grouped per unit (weight, then bias if any)."""
    parts = [linear.weight.reshape(units, -1)]
    if linear.bias is not None:
        parts.append(linear.bias.reshape(units, -1))
    return parts


def _unit_columns(linear: nn.Linear, units: int) -> torch.Tensor:
    w = linear.weight
    return w.reshape(w.shape[0], units, -1).transpose(0, 1)


def head_scores(attn: nn.Module, criterion: str) -> torch.Tensor:
    """Importance of each query head (see the module docstring)."""
    hd = attn.head_dim
    n_q, n_kv = attn.q_proj.out_features // hd, attn.k_proj.out_features // hd
    parts = [*_unit_rows(attn.q_proj, n_q), _unit_columns(attn.o_proj, n_q)]
    if n_q == n_kv:
        parts += [*_unit_rows(attn.k_proj, n_kv), *_unit_rows(attn.v_proj, n_kv)]
    return _score(parts, criterion)


def neuron_scores(mlp: nn.Module, criterion: str) -> torch.Tensor:
    """Importance of each FFN neuron (see the module docstring)."""
    n = mlp.gate_proj.out_features
    parts = [
        *_unit_rows(mlp.gate_proj, n),
        *_unit_rows(mlp.up_proj, n),
        _unit_columns(mlp.down_proj, n),
    ]
    return _score(parts, criterion)


def _top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k highest scores, ascending; ties go to the lower index."""
    import torch

    order = torch.sort(scores.cpu(), descending=True, stable=True).indices
    return sorted(order[:k].tolist())


def plan_layout(model: Any, family: Family, spec: PruneSpec) -> PrunedLayout:
    """Which heads and neurons every decoder layer keeps, by importance; changes nothing."""
    import torch

    if pruned_layout(model.config) is not None:
        raise PruneError("the model is already pruned; prune once with the combined fractions")
    text = model.config.get_text_config()
    layers = _decoder_layers(model, family)
    generator = torch.Generator().manual_seed(spec.seed)

    def scores(n: int, norms: Any) -> torch.Tensor:
        if spec.criterion == "random":
            return torch.rand(n, generator=generator)
        return norms(spec.criterion)

    first_attn, _ = _attention(layers[0])
    hd = first_attn.head_dim
    n_q = first_attn.q_proj.out_features // hd
    n_kv = first_attn.k_proj.out_features // hd
    intermediate = layers[0].mlp.gate_proj.out_features
    per_group = n_q // n_kv
    biased = tuple(
        name
        for name, module in (
            ("q", first_attn.q_proj),
            ("k", first_attn.k_proj),
            ("v", first_attn.v_proj),
            ("gate", layers[0].mlp.gate_proj),
            ("up", layers[0].mlp.up_proj),
        )
        if module.bias is not None
    )

    out: list[LayerLayout] = []
    for layer in layers:
        _check_plain(layer)
        attn, cross = _attention(layer)
        if (attn.q_proj.out_features, attn.k_proj.out_features) != (n_q * hd, n_kv * hd):
            raise PruneError("decoder layers differ in attention shape; expected a uniform stack")
        q_keep, kv_keep = list(range(n_q)), list(range(n_kv))
        if not cross and spec.heads > 0:
            s = scores(n_q, lambda c, a=attn: head_scores(a, c))
            k = heads_kept(n_q, n_kv, spec.heads)
            if per_group == 1:
                q_keep = kv_keep = _top(s, k)
            else:
                per = k // n_kv
                q_keep = [
                    g * per_group + h
                    for g in range(n_kv)
                    for h in _top(s[g * per_group : (g + 1) * per_group], per)
                ]
        width = ffn_kept(intermediate, spec.ffn, spec.round_to)
        s = scores(intermediate, lambda c, m=layer.mlp: neuron_scores(m, c))
        neurons = _top(s, width)
        out.append(
            LayerLayout(
                q_heads=tuple(q_keep),
                kv_heads=tuple(kv_keep),
                intermediate_size=width,
                cross_attention=cross,
                ffn_neurons=tuple(neurons),
            )
        )

    heads, ffn = _removed_fractions(out, n_q, intermediate)
    return PrunedLayout(
        spec=spec,
        hidden_size=text.hidden_size,
        head_dim=hd,
        num_attention_heads=n_q,
        num_key_value_heads=n_kv,
        intermediate_size=intermediate,
        biased=biased,
        layers=tuple(out),
        removed_heads=heads,
        removed_ffn=ffn,
    )


# ----------------------------------------------------------------------------------- shrinking


def _index(idx: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.tensor(list(idx), dtype=torch.long, device=like.device)


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Linear) -> nn.Linear:
    """An nn.Linear holding exactly these tensors (created on meta: no wasted init)."""
    from torch import nn

    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    new.weight = nn.Parameter(weight, requires_grad=like.weight.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias, requires_grad=like.bias.requires_grad)
    return new


def _keep_rows(linear: nn.Linear, rows: Sequence[int]) -> nn.Linear:
    idx = _index(rows, linear.weight)
    bias = linear.bias.index_select(0, idx) if linear.bias is not None else None
    return _linear(linear.weight.index_select(0, idx), bias, linear)


def _keep_columns(linear: nn.Linear, cols: Sequence[int]) -> nn.Linear:
    idx = _index(cols, linear.weight)
    bias = linear.bias.clone() if linear.bias is not None else None
    return _linear(linear.weight.index_select(1, idx), bias, linear)


def _head_rows(heads: Sequence[int], hd: int) -> list[int]:
    return [h * hd + i for h in heads for i in range(hd)]


@no_grad
def apply_layout(model: Any, family: Family, layout: PrunedLayout) -> None:
    """Shrink the decoder layers to `layout`, copying the kept weights.

    Used on real weights by `prune_model` and on the freshly built skeleton by `load_pruned`
    (where the kept FFN neurons are unknown and irrelevant: the weights are overwritten).
    """
    layers = _decoder_layers(model, family)
    if len(layers) != len(layout.layers):
        raise PruneError(f"layout has {len(layout.layers)} layers, the model {len(layers)}")
    hd = layout.head_dim
    for i, (layer, plan) in enumerate(zip(layers, layout.layers, strict=True)):
        attn, cross = _attention(layer)
        if cross != plan.cross_attention or attn.head_dim != hd:
            raise PruneError(f"layer {i} does not match the layout")
        n_q, n_kv = len(plan.q_heads), len(plan.kv_heads)
        if n_q != layout.num_attention_heads:
            attn.q_proj = _keep_rows(attn.q_proj, _head_rows(plan.q_heads, hd))
            attn.o_proj = _keep_columns(attn.o_proj, _head_rows(plan.q_heads, hd))
        if n_kv != layout.num_key_value_heads:
            attn.k_proj = _keep_rows(attn.k_proj, _head_rows(plan.kv_heads, hd))
            attn.v_proj = _keep_rows(attn.v_proj, _head_rows(plan.kv_heads, hd))
        # Forwards reshape with these (Mllama with num_heads, all with num_key_value_groups for
        # repeat_kv / SDPA's GQA); head_dim stays, so `-1` reshapes follow the weights.
        if hasattr(attn, "num_heads"):
            attn.num_heads = n_q
        if hasattr(attn, "num_key_value_heads"):
            attn.num_key_value_heads = n_kv
        attn.num_key_value_groups = n_q // n_kv

        mlp = layer.mlp
        width = plan.intermediate_size
        if width != layout.intermediate_size:
            neurons = plan.ffn_neurons or range(width)
            mlp.gate_proj = _keep_rows(mlp.gate_proj, neurons)
            mlp.up_proj = _keep_rows(mlp.up_proj, neurons)
            mlp.down_proj = _keep_columns(mlp.down_proj, neurons)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = width


def prune_model(model: Any, family: Family, spec: PruneSpec) -> PrunedLayout:
    """Prune in place: plan, shrink, and write the layout into the text config."""
    layout = plan_layout(model, family, spec)
    apply_layout(model, family, layout)
    setattr(model.config.get_text_config(), CONFIG_KEY, layout.to_config())
    return layout


def pruned_layout(config: Any) -> PrunedLayout | None:
    """The layout stored in a (full or text) config, or None if the model is not pruned."""
    raw = getattr(config.get_text_config(), CONFIG_KEY, None)
    if raw is None:
        return None
    try:
        return PrunedLayout.model_validate(raw)
    except ValueError as err:
        raise PruneError(f"invalid {CONFIG_KEY} in the config: {err}") from err


def _base_parameters(config: Any) -> int:
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


def expected_parameters(config: Any, layout: PrunedLayout | None = None) -> int:
    """Parameters of the model `config` describes once pruned to `layout` (default: the
    config's own): the unpruned architecture's count, built on the meta device, minus what the
    layout removes."""
    layout = layout if layout is not None else pruned_layout(config)
    removed = layout.removed_parameters() if layout is not None else 0
    return _base_parameters(config) - removed


# ------------------------------------------------------------------------------------- loading


@cache
def _pruned_class(base: type) -> type:
    """A subclass of `base` that shrinks its decoder to the config's layout on construction.

    transformers applies a class's checkpoint key renaming only to classes defined inside the
    library, or to names registered for it: register the base's own renaming under this name.
    """
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, config, *args, **kwargs)
        layout = pruned_layout(config)
        if layout is None:
            raise PruneError("the config carries no pruned layout")
        apply_layout(self, family_for_model_type(config.model_type), layout)

    cls = type(f"Pruned{base.__name__}", (base,), {"__init__": __init__})
    mapping = get_checkpoint_conversion_mapping(base.__name__)
    if mapping is None:
        mapping = get_checkpoint_conversion_mapping(base.config_class.model_type)
    if mapping is not None:
        register_checkpoint_conversion_mapping(cls.__name__, mapping, overwrite=True)
    return cls


def _checkpoint_numel(folder: Path) -> int:
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    total = 0
    for name in files:
        with safe_open(str(folder / name), "pt") as fh:
            for key in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(fh.get_slice(key).get_shape())
    return total


_FORCED = ("output_loading_info", "ignore_mismatched_sizes", "config")


def load_pruned(
    folder: str | Path,
    *,
    dtype: Any,
    device_map: Any = None,
    **from_pretrained_kwargs: Any,
) -> Any:
    """Load a folder written by `save_pretrained` after `prune_model`.

    The model is built at the stored layout, loaded, and checked: any missing, unexpected or
    mismatched key, or a parameter total that differs from the checkpoint's, raises
    `PruneError`. The returned model is an instance of the ordinary transformers class.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    folder = Path(folder)
    clash = sorted(set(_FORCED) & set(from_pretrained_kwargs))
    if clash:
        raise TypeError(f"load_pruned sets {', '.join(clash)} itself")
    config = AutoConfig.from_pretrained(folder)
    layout = pruned_layout(config)
    if layout is None:
        raise PruneError(f"{folder} holds no pruned model ({CONFIG_KEY} missing from its config)")
    text = config.get_text_config()
    want = (text.num_attention_heads, text.num_key_value_heads, text.intermediate_size)
    have = (layout.num_attention_heads, layout.num_key_value_heads, layout.intermediate_size)
    if want != have or len(layout.layers) != text.num_hidden_layers:
        raise PruneError(f"{folder}: the layout does not match the config's architecture")

    base = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)]
    try:
        model, info = _pruned_class(base).from_pretrained(
            folder,
            config=config,
            dtype=dtype,
            device_map=device_map,
            output_loading_info=True,
            ignore_mismatched_sizes=False,
            **from_pretrained_kwargs,
        )
    except RuntimeError as err:  # transformers' size-mismatch error
        raise PruneError(f"{folder}: weights do not fit the stored layout: {err}") from err
    problems = {key: sorted(map(str, found)) for key, found in info.items() if found}
    if problems:
        raise PruneError(f"{folder}: weights do not load cleanly: {problems}")
    n_model = sum(p.numel() for p in model.parameters())
    n_file = _checkpoint_numel(folder)
    if n_model != n_file:
        raise PruneError(
            f"{folder}: the model has {n_model:,} parameters, the checkpoint {n_file:,}"
        )
    model.__class__ = base  # the subclass only shaped the skeleton; save/peft see the real class
    return model


# ----------------------------------------------------------------------------------- technique


def apply(ctx: Any, spec: PruneSpec) -> None:
    """Build step: prune the current full-precision weights and save them as a new stage."""
    model = ctx.materialise("merged-before-prune")
    before = sum(p.numel() for p in model.parameters())
    layout = prune_model(model, ctx.family, spec)
    after = sum(p.numel() for p in model.parameters())
    ctx.log(
        f"prune   {before:,} -> {after:,} parameters "
        f"(heads -{layout.removed_heads:.1%}, ffn -{layout.removed_ffn:.1%})"
    )
    ctx.save_full(model, "pruned", pruned=True)
    ctx.record(
        "prune",
        {
            "parameters_before": before,
            "parameters_after": after,
            "removed_heads": layout.removed_heads,
            "removed_ffn": layout.removed_ffn,
        },
    )


TECHNIQUES.add(
    "prune",
    Technique(
        kind="prune",
        spec=PruneSpec,
        description="structured pruning of attention heads and FFN neurons of the language model",
        apply=apply,
    ),
)
