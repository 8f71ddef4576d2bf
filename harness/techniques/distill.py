"""`distill`: knowledge distillation from a teacher into the current model (the student).

Loss on caption tokens only: alpha · CE(student, reference) + (1 − alpha) · T² · KL(teacher_T ‖
student_T), where _T are the softmaxes at temperature T over the real tokenizer's vocabulary
(checkpoints pad their embeddings differently: Qwen2-VL-7B has 152,064 rows, 2B 151,936).
Teacher and student must share the tokenizer and the input processing; the teacher is a
variant id (built first if needed) or a Hub model, optionally loaded in 4-bit. TRL's trainers do
not fit (GKDTrainer drops the images; both refuse differing vocabulary sizes), hence this loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from harness.models.sources import resolve
from harness.specs.common import COMMIT, Frozen
from harness.specs.refs import check_ref, is_local
from harness.specs.variant import Dependencies, TechniqueSpec
from harness.techniques import TECHNIQUES, Technique
from harness.techniques.training import IGNORE, TrainSpec, caption_loss, train_captions

if TYPE_CHECKING:
    import torch


class TeacherRef(Frozen):
    variant: str | None = None  # a variant id from variants/
    model: str | None = None  # or a Hub id / folder
    revision: str | None = None
    load_in_4bit: bool = False

    @model_validator(mode="after")
    def _one(self) -> TeacherRef:
        if (self.variant is None) == (self.model is None):
            raise ValueError("teacher: give exactly one of `variant` or `model`")
        if self.model is not None:
            check_ref(self.model)
        hub = self.model is not None and not is_local(self.model)
        if hub and (self.revision is None or not COMMIT.match(self.revision)):
            raise ValueError("teacher.revision: a Hub model must be pinned to a 40-hex commit")
        return self


class DistillSpec(TechniqueSpec):
    kind: Literal["distill"] = "distill"
    teacher: TeacherRef
    temperature: float = Field(2.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the caption loss
    train: TrainSpec = TrainSpec()
    trainable: Literal["language_model", "all"] = "language_model"

    def dependencies(self) -> Dependencies:
        teachers = () if self.teacher.variant is None else (self.teacher.variant,)
        return Dependencies(tasks=(self.train.task,), teachers=teachers)


class TokenizerMismatch(ValueError):
    pass


def check_same_tokenizer(teacher_processor: Any, student_processor: Any) -> None:
    t, s = teacher_processor.tokenizer, student_processor.tokenizer
    if t.get_vocab() != s.get_vocab():
        only_t = len(set(t.get_vocab()) - set(s.get_vocab()))
        only_s = len(set(s.get_vocab()) - set(t.get_vocab()))
        raise TokenizerMismatch(
            f"distill: teacher and student tokenizers differ ({len(t)} vs {len(s)} tokens; "
            f"{only_t} only in the teacher, {only_s} only in the student): soft targets need "
            "one vocabulary"
        )


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    vocab: int,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    import torch

    ce = caption_loss(student_logits, labels, vocab)
    mask = labels[:, 1:] != IGNORE
    s = torch.log_softmax(student_logits[:, :-1, :vocab].float() / temperature, dim=-1)[mask]
    t = torch.log_softmax(teacher_logits[:, :-1, :vocab].float() / temperature, dim=-1)[mask]
    kl = torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean")
    return alpha * ce + (1 - alpha) * temperature**2 * kl


def _load_teacher(ctx: Any, ref: TeacherRef) -> tuple[Any, Any]:
    from transformers import AutoProcessor

    from harness.techniques.context import ModelState, load_model
    from harness.techniques.quantize import QuantizeSpec, quantization_kwargs

    if ref.variant is not None:
        from harness.models.build import ensure_built
        from harness.specs import catalog

        teacher_spec = catalog.variant(ref.variant)
        built = ensure_built(teacher_spec, device=ctx.device, progress=ctx.progress)
        state = built.state
    else:
        assert ref.model is not None
        if is_local(ref.model):  # relative to the manifest, like every local folder
            folder = ((ctx.manifest_dir or Path.cwd()) / ref.model).resolve()
            state = ModelState(location=str(folder))
        else:
            state = ModelState(location=ref.model, revision=ref.revision)
    if ref.load_in_4bit and not state.quantization:
        state.quantization = quantization_kwargs(QuantizeSpec(), ctx.family, ctx.device)
    processor = AutoProcessor.from_pretrained(resolve(state.location, state.revision))
    teacher = load_model(state, dtype=ctx.dtype, device=ctx.device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, processor


def apply(ctx: Any, spec: DistillSpec) -> None:
    import torch

    from harness.specs import catalog

    teacher, teacher_processor = _load_teacher(ctx, spec.teacher)
    check_same_tokenizer(teacher_processor, ctx.processor)
    student = ctx.materialise("student")
    for name, p in student.named_parameters():
        p.requires_grad_(spec.trainable == "all" or name.startswith(ctx.family.language_model))
    vocab = len(ctx.processor.tokenizer)

    def loss_fn(model: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(**inputs).logits
        return kd_loss(model(**inputs).logits, teacher_logits, labels, vocab,
                       spec.temperature, spec.alpha)  # fmt: skip

    task = catalog.task(spec.train.task)
    result = train_captions(
        student,
        ctx.processor,
        ctx.family,
        task,
        spec.train,
        loss_fn=loss_fn,
        progress=ctx.progress,
        log=ctx.log,
    )
    ctx.save_full(student, "distilled")
    ctx.record(
        "distill",
        {
            "teacher": spec.teacher.model_dump(),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "eval_loss_before": result.history[0]["eval_loss"],
            "eval_losses": result.eval_losses,
        },
    )


TECHNIQUES.add(
    "distill",
    Technique(
        kind="distill",
        spec=DistillSpec,
        description="knowledge distillation (soft-target KL at temperature T + caption loss)",
        apply=apply,
    ),
)
