"""`quantize`: load the weights with bitsandbytes (NF4 / FP4 4-bit, or 8-bit) from here on.

Quantization happens at load time (transformers' `BitsAndBytesConfig`), so this step only
changes how the current weights are loaded. The vision tower, the projector and `lm_head` stay in
full precision by default; transformers 5 needs their full module paths in the skip list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.models.families import Family
from harness.specs.variant import TechniqueSpec
from harness.techniques import TECHNIQUES, Technique


class QuantizeSpec(TechniqueSpec):
    kind: Literal["quantize"] = "quantize"
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    skip_modules: tuple[str, ...] | None = Field(
        None, description="module paths kept unquantized; default: vision modules and lm_head"
    )


def quantization_kwargs(spec: QuantizeSpec, family: Family, device: str) -> dict[str, Any]:
    skip = list(spec.skip_modules or (*family.vision_modules, "lm_head"))
    if spec.bits == 8:
        return {"load_in_8bit": True, "llm_int8_skip_modules": skip}
    compute = spec.compute_dtype
    if compute == "auto":
        compute = "bfloat16" if device == "cuda" else "float32"
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": spec.quant_type,
        "bnb_4bit_use_double_quant": spec.double_quant,
        "bnb_4bit_compute_dtype": compute,
        "llm_int8_skip_modules": skip,
    }


def apply(ctx: Any, spec: QuantizeSpec) -> None:
    if ctx.state.pruned:
        raise ValueError("quantize: loading pruned weights in 4/8-bit is not supported")
    ctx.state.quantization = quantization_kwargs(spec, ctx.family, ctx.device)
    ctx.record("quantize", ctx.state.quantization)


TECHNIQUES.add(
    "quantize",
    Technique(
        kind="quantize",
        spec=QuantizeSpec,
        description="bitsandbytes NF4/FP4 4-bit or 8-bit loading of the language model",
        apply=apply,
    ),
)
