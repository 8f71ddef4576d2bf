"""Whether a variant can fit on a Jobs flavour's GPU: a floor on the GPU memory of each phase.

A Job that runs out of GPU memory is billed for its setup and whatever ran before. The plan
therefore adds up, for each phase of the variant's chain, what that phase must hold at once.
Activations, the KV cache, logits and the CUDA context come on top, so these are floors, not
estimates. A flavour whose GPU holds less than a floor will fail, and `dispatch` warns and names
the cheapest flavour that clears it. A `run-job` uses one GPU, so the floor is compared with one
GPU's memory.

- Weights: parameters × bytes per parameter as loaded. That is 2 for `auto`, bfloat16 and float16
  (every real base ships 16-bit weights) and 4 for float32. It is 0.5 for 4-bit and 1 for 8-bit,
  before the modules kept in 16 bits, so it is a floor too.
- `qlora` training: the base in 4-bit. Its LoRA adapters, their gradients and AdamW states are
  under 1 % of the base and are left out.
- `distill` training: the teacher as loaded, the student in 16 bits, and for each trained
  parameter a gradient and AdamW's two moments in the parameter's dtype (3 × 2 bytes). The
  trained parameters are the language model (the default) or all of them.
- `prune`: the dense model before it shrinks (an adapter or a 4-bit base is merged first); the
  pruned model stays dense. After pruning, heads and FFN neurons make up
  about 60 % of the parameters (`jobs_cost.pruned_share`, shared with the time estimate).
- Generation: the final weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.scale.jobs_cost import BASES, PriceTable, pruned_share

if TYPE_CHECKING:
    from harness.scale.jobs_cost import Flavor
    from harness.specs.variant import VariantSpec
    from harness.techniques.distill import TeacherRef

DENSE_BYTES = {"auto": 2.0, "bfloat16": 2.0, "float16": 2.0, "float32": 4.0}
QUANTIZED_BYTES = {4: 0.5, 8: 1.0}
TRAINED_STATE_BYTES = 3 * 2.0  # gradient + AdamW's two moments, in the 16-bit parameter dtype

# Parameters (billions) of each base's language model: the module `distill` trains by default
# (the family's `language_model`). Counted on the meta device from the published configs in
# harness/models/configs/; tests/scale/test_jobs_memory.py counts them again.
LANGUAGE_MODEL_PARAMS_B: dict[str, float] = {
    "Qwen/Qwen2-VL-2B-Instruct": 1.544,
    "llava-hf/llava-1.5-7b-hf": 6.608,
    "meta-llama/Llama-3.2-11B-Vision-Instruct": 9.250,
}


@dataclass(frozen=True)
class PhaseFloor:
    """What one phase must hold in GPU memory at once, in GB, part by part."""

    phase: str  # "distill", "qlora", "prune", "generation"
    parts: tuple[tuple[str, float], ...]

    @property
    def gb(self) -> float:
        return sum(gb for _, gb in self.parts)

    def describe(self) -> str:
        return " + ".join(f"{name} {gb:.1f}" for name, gb in self.parts)


def phase_floors(variant: VariantSpec) -> tuple[PhaseFloor, ...] | None:
    """The floor of every phase of the variant's chain, in chain order, then generation.

    None when the base, a teacher, or the trained language model is not of a known size: no
    floor rather than a made-up one."""
    figures = BASES.get(variant.base.model or "")  # a twin has no `model`: no figures
    if figures is None:
        return None
    params = figures[0]
    language_model = LANGUAGE_MODEL_PARAMS_B.get(variant.base.model or "")
    dense = DENSE_BYTES[variant.base.dtype]
    per_param, shrink = dense, 1.0
    floors: list[PhaseFloor] = []
    for technique in variant.techniques:
        kind = technique.kind
        if kind == "quantize":
            per_param = QUANTIZED_BYTES[technique.bits]
        elif kind == "qlora":
            if per_param == dense:  # no earlier `quantize` step: qlora's own settings apply
                per_param = QUANTIZED_BYTES[technique.quantize.bits]
            floors.append(PhaseFloor("qlora", (("base quantized", params * per_param),)))
            if technique.merge:
                per_param = dense
        elif kind == "distill":
            teacher = _teacher_gb(technique.teacher, dense)
            trained = params if technique.trainable == "all" else language_model
            if teacher is None or trained is None:
                return None
            floors.append(
                PhaseFloor(
                    "distill",
                    (
                        ("student", params * shrink * dense),
                        ("gradients and AdamW moments", trained * shrink * TRAINED_STATE_BYTES),
                        ("teacher", teacher),
                    ),
                )
            )
            per_param = dense
        elif kind == "prune":
            # Pruning works on dense weights: an adapter or 4-bit base is merged first, and the
            # pruned model is stored and loaded dense.
            per_param = dense
            floors.append(PhaseFloor("prune", (("model", params * shrink * dense),)))
            shrink *= pruned_share(technique.heads, technique.ffn)
    floors.append(PhaseFloor("generation", (("weights", params * shrink * per_param),)))
    return tuple(floors)


def _teacher_gb(ref: TeacherRef, dense: float) -> float | None:
    """The teacher's weights as `distill` loads them: in the student's dtype, or in 4-bit."""
    from harness.specs import catalog

    scale = QUANTIZED_BYTES[4] / dense if ref.load_in_4bit else 1.0
    if ref.model is not None:
        figures = BASES.get(ref.model)
        return None if figures is None else figures[0] * dense * scale
    # A variant as teacher: its own final weights (already 4-bit if it was quantized, in which
    # case scaling again only lowers the floor).
    floors = phase_floors(catalog.variant(str(ref.variant)))
    return None if floors is None else floors[-1].gb * scale


def gpu_gb(flavor: Flavor) -> float | None:
    """One GPU's memory in GB (the flavour lists all its GPUs together), None without a GPU."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(GB|TB)\s*", flavor.vram or "", re.IGNORECASE)
    if flavor.gpu is None or found is None or flavor.gpus < 1:
        return None
    scale = 1000.0 if found[2].upper() == "TB" else 1.0
    return float(found[1]) * scale / flavor.gpus


def cheapest_fit(prices: PriceTable, floor_gb: float) -> Flavor | None:
    """The cheapest flavour whose one GPU holds at least `floor_gb`."""
    fits = [f for f in prices.flavors.values() if (gpu_gb(f) or 0.0) >= floor_gb]
    return min(fits, key=lambda f: (f.usd_per_hour, f.name), default=None)
