"""`qlora`: LoRA adapters trained on a 4-bit base (Dettmers et al., 2023), the study's settings.

Defaults: NF4 with double quantization, LoRA r=16, alpha 16, dropout 0.1, rank-stabilised
scaling, on the q/k/v/o and MLP projections of the language model only (for Mllama that includes
its cross-attention layers, which live in the language model); the vision encoder stays frozen.
Trained on the task's train split with the task's prompt, loss on caption tokens only. The result
is the adapter, unmerged, over the 4-bit base; `merge: true` reloads the base in full precision
and merges there — never into the 4-bit weights.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from harness.models.families import Family
from harness.specs.variant import Dependencies, TechniqueSpec
from harness.techniques import TECHNIQUES, Technique
from harness.techniques.quantize import QuantizeSpec, quantization_kwargs
from harness.techniques.training import TrainSpec, train_captions


class QLoraSpec(TechniqueSpec):
    kind: Literal["qlora"] = "qlora"
    r: int = Field(16, gt=0, le=1024)
    lora_alpha: float = Field(16, gt=0, le=65536)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    use_rslora: bool = True
    quantize: QuantizeSpec = QuantizeSpec()  # used unless an earlier `quantize` step set one
    train: TrainSpec = TrainSpec()
    merge: bool = False
    gradient_checkpointing: bool = False
    # Modules trained in full beside the adapter (peft's modules_to_save). Empty in the study;
    # the random-weight twins need `lm_head`: an adapter alone barely moves a random output head.
    modules_to_save: tuple[str, ...] = ()

    def dependencies(self) -> Dependencies:
        return Dependencies(tasks=(self.train.task,))


def lora_targets(family: Family) -> str:
    """Regex over full module names: the language model's attention and MLP projections only
    (a plain name list would also hit the vision towers of LLaVA and Mllama)."""
    lm = re.escape(family.language_model)
    return rf"{lm}\.layers\.\d+\.((self_attn|cross_attn)\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def add_lora(model: Any, family: Family, spec: QLoraSpec) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        use_rslora=spec.use_rslora,
        target_modules=lora_targets(family),
        modules_to_save=list(spec.modules_to_save) or None,
        bias="none",
    )
    return get_peft_model(model, config)


def load_quantized_base(ctx: Any, spec: QLoraSpec) -> Any:
    """The chain's model so far, loaded in 4-bit: an earlier adapter merged first."""
    if ctx.state.adapter is not None:
        ctx.materialise("merged-before-qlora")
    if ctx.state.pruned:
        raise ValueError("qlora: a pruned model cannot be loaded in 4-bit; prune after qlora")
    if not ctx.state.quantization:
        ctx.state.quantization = quantization_kwargs(spec.quantize, ctx.family, ctx.device)
    return ctx.load()


def apply(ctx: Any, spec: QLoraSpec) -> None:
    from peft import prepare_model_for_kbit_training

    from harness.specs import catalog

    model = load_quantized_base(ctx, spec)
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=spec.gradient_checkpointing
    )
    model = add_lora(model, ctx.family, spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    ctx.log(f"qlora   {trainable:,} trainable parameters of {total:,} (LoRA r={spec.r})")
    task = catalog.task(spec.train.task)
    result = train_captions(
        model, ctx.processor, ctx.family, task, spec.train, progress=ctx.progress, log=ctx.log
    )
    folder = ctx.new_stage("qlora-adapter")
    model.save_pretrained(folder)  # a PeftModel saves the adapter only
    ctx.state.adapter = str(folder)
    ctx.record(
        "qlora",
        {
            "trainable_parameters": trainable,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "eval_losses": result.eval_losses,
            "train_losses": result.train_losses,
            "eval_loss_before": result.history[0]["eval_loss"],
        },
    )
    if spec.merge:
        ctx.materialise("qlora-merged")


TECHNIQUES.add(
    "qlora",
    Technique(
        kind="qlora",
        spec=QLoraSpec,
        description="LoRA adapters trained on a 4-bit base, language model only",
        apply=apply,
    ),
)
