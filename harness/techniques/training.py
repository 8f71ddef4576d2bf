"""Supervised caption training shared by QLoRA, distillation and pruning recovery.

Each example is the task's prompt (through the model's chat template, with its image) followed
by the reference caption and the end-of-turn token; the loss covers the caption tokens only.
The loop is small on purpose: AdamW, gradient accumulation, evaluation loss after every epoch,
early stopping with patience, the best state restored at the end, everything seeded.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field

from harness.data.dataset import EvalSet, load_split
from harness.models.families import Family
from harness.models.inputs import build_prompt, preprocess_image
from harness.spans import span
from harness.specs.common import Frozen, Seed
from harness.specs.limits import MAX_BATCH, MAX_LIMIT
from harness.specs.task import TaskSpec
from harness.techniques.lazy_torch import no_grad

if TYPE_CHECKING:
    import torch

IGNORE = -100


class TrainSpec(Frozen):
    """How to train; the defaults are the study's settings."""

    task: str = "rocov2_sample"  # whose training split, prompt and preprocessing are used
    lr: float = Field(1e-5, gt=0, le=1)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)  # effective: micro_batch_size × accumulation
    micro_batch_size: int | None = Field(None, gt=0, le=MAX_BATCH)  # None: no accumulation
    epochs: int = Field(3, gt=0, le=1000)
    patience: int = Field(3, ge=1, le=1000)  # early stopping on evaluation loss
    weight_decay: float = Field(0.0, ge=0, le=10)
    max_train_samples: int | None = Field(None, gt=0, le=MAX_LIMIT)
    max_eval_samples: int | None = Field(None, gt=0, le=MAX_LIMIT)
    eval_fraction: float = Field(0.1, gt=0, lt=1)  # held out of train when no validation split
    seed: Seed = 0


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    eval_losses: list[float]
    train_losses: list[float]
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_eval_loss(self) -> float:
        return self.eval_losses[self.best_epoch - 1] if self.eval_losses else math.nan


def training_splits(task: TaskSpec, spec: TrainSpec) -> tuple[EvalSet, EvalSet]:
    """(train, eval): the task's train and validation splits, or a seeded hold-out of train."""
    import torch

    if task.training_split is None:
        raise ValueError(f"task {task.task} has no training_split to train on")
    train = load_split(task, split=task.training_split, limit=None)
    if task.validation_split is not None:
        evalset = load_split(task, split=task.validation_split, limit=None)
        train_idx = list(range(len(train)))
        eval_idx = list(range(len(evalset)))
    else:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(spec.seed))
        n_eval = max(1, int(len(train) * spec.eval_fraction))
        eval_idx, train_idx = sorted(order[:n_eval].tolist()), sorted(order[n_eval:].tolist())
        evalset = train
    if spec.max_train_samples:
        train_idx = train_idx[: spec.max_train_samples]
    if spec.max_eval_samples:
        eval_idx = eval_idx[: spec.max_eval_samples]
    return _subset(train, train_idx), _subset(evalset, eval_idx)


def _subset(es: EvalSet, idx: Sequence[int]) -> EvalSet:
    rows = es._rows.select(list(idx))
    return EvalSet(
        path=es.path,
        name=es.name,
        revision=es.revision,
        split=es.split,
        ids=[es.ids[i] for i in idx],
        references=[es.references[i] for i in idx],
        _rows=rows,
        _image_column=es._image_column,
        concepts=None if es.concepts is None else [es.concepts[i] for i in idx],
    )


def caption_batch(
    processor: Any, family: Family, task: TaskSpec, images: Sequence[Any], captions: Sequence[str]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs for prompt + caption, and labels that are IGNORE outside the caption."""
    prompt, add_special = build_prompt(processor, task.doc_to_text)
    eos = processor.tokenizer.eos_token or ""
    processor.tokenizer.padding_side = "right"
    kwargs = family.processor_kwargs(task.preprocessing.image.size)
    nested = [[im] for im in images]
    full = processor(
        text=[prompt + c + eos for c in captions],
        images=nested,
        return_tensors="pt",
        padding=True,
        add_special_tokens=add_special,
        **kwargs,
    )
    prompt_only = processor(
        text=[prompt] * len(images),
        images=nested,
        return_tensors="pt",
        padding=True,
        add_special_tokens=add_special,
        **kwargs,
    )
    labels = full["input_ids"].clone()
    prompt_len = prompt_only["attention_mask"].sum(dim=1)
    for row, n in enumerate(prompt_len.tolist()):
        labels[row, :n] = IGNORE
    labels[full["attention_mask"] == 0] = IGNORE
    return dict(full), labels


def to_device(inputs: dict[str, torch.Tensor], model: Any) -> dict[str, torch.Tensor]:
    import torch

    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    out = {}
    for k, v in inputs.items():
        v = v.to(model.device)
        out[k] = v.to(dtype) if torch.is_floating_point(v) and k != "labels" else v
    return out


def caption_loss(logits: torch.Tensor, labels: torch.Tensor, vocab: int) -> torch.Tensor:
    """Mean cross-entropy over caption tokens (next-token shift), real vocabulary only."""
    import torch

    shift_logits = logits[:, :-1, :vocab].float()
    shift_labels = labels[:, 1:]
    return torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, vocab), shift_labels.reshape(-1), ignore_index=IGNORE
    )


LossFn = Callable[[Any, dict[str, "torch.Tensor"], "torch.Tensor"], "torch.Tensor"]


def default_loss(vocab: int) -> LossFn:

    def loss(model: Any, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return caption_loss(model(**inputs).logits, labels, vocab)

    return loss


def _batches(n: int, size: int, generator: torch.Generator | None) -> list[list[int]]:
    import torch

    order = torch.randperm(n, generator=generator).tolist() if generator else list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


@no_grad
def evaluation_loss(
    model: Any,
    processor: Any,
    family: Family,
    task: TaskSpec,
    evalset: EvalSet,
    loss_fn: LossFn,
    batch_size: int,
) -> float:
    """Token-weighted mean caption loss over the evaluation set."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    spec = task.preprocessing.image
    for idx in _batches(len(evalset), batch_size, None):
        images = [preprocess_image(evalset.image_loader(i)(), spec) for i in idx]
        inputs, labels = caption_batch(
            processor, family, task, images, [evalset.references[i] for i in idx]
        )
        n = int((labels[:, 1:] != IGNORE).sum())
        total += float(loss_fn(model, to_device(inputs, model), labels.to(model.device))) * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


def train_captions(
    model: Any,
    processor: Any,
    family: Family,
    task: TaskSpec,
    spec: TrainSpec,
    *,
    loss_fn: LossFn | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `model`'s trainable parameters on the task's captions; restore the best epoch."""
    import torch
    from tqdm.auto import tqdm

    from harness.progress import bars_wanted

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    torch.manual_seed(spec.seed)
    vocab = len(processor.tokenizer)
    loss_fn = loss_fn or default_loss(vocab)
    train, evalset = training_splits(task, spec)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    micro = spec.micro_batch_size or spec.batch_size
    accumulation = max(1, spec.batch_size // micro)
    order_gen = torch.Generator().manual_seed(spec.seed)
    image_spec = task.preprocessing.image
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if model.device.type == "cuda" and torch.cuda.is_bf16_supported()
        else torch.autocast("cpu", enabled=False)
    )

    def trainable_state() -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    result = TrainResult(epochs_run=0, best_epoch=0, eval_losses=[], train_losses=[], steps=0)
    with span("eval loss", "before"):
        first = evaluation_loss(model, processor, family, task, evalset, loss_fn, micro)
    result.history.append({"epoch": 0, "eval_loss": first})
    log(f"train   {len(train)} captions, eval {len(evalset)}; eval loss before {first:.4f}")
    best, best_state, bad_epochs = first, copy.deepcopy(trainable_state()), 0
    model.train()
    for epoch in range(1, spec.epochs + 1):
        batches = _batches(len(train), micro, order_gen)
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}",
            disable=not bars_wanted(progress),
            file=sys.stderr,
            leave=False,
        )
        running, seen = 0.0, 0
        with span("train epoch", f"epoch {epoch}"):
            for step, idx in enumerate(bar, 1):
                images = [preprocess_image(train.image_loader(i)(), image_spec) for i in idx]
                inputs, labels = caption_batch(
                    processor, family, task, images, [train.references[i] for i in idx]
                )
                with autocast:
                    loss = loss_fn(model, to_device(inputs, model), labels.to(model.device))
                (loss / accumulation).backward()
                running, seen = running + loss.detach().item(), seen + 1
                if step % accumulation == 0 or step == len(batches):
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    result.steps += 1
                bar.set_postfix(loss=f"{running / seen:.3f}")
            bar.close()
        with span("eval loss", f"epoch {epoch}"):
            eval_loss = evaluation_loss(model, processor, family, task, evalset, loss_fn, micro)
        result.train_losses.append(running / max(seen, 1))
        result.eval_losses.append(eval_loss)
        result.epochs_run = epoch
        result.history.append(
            {"epoch": epoch, "train_loss": running / max(seen, 1), "eval_loss": eval_loss}
        )
        log(f"epoch   {epoch}: train loss {running / max(seen, 1):.4f}, eval loss {eval_loss:.4f}")
        if eval_loss < best:
            best, best_state, bad_epochs = eval_loss, copy.deepcopy(trainable_state()), 0
            result.best_epoch = epoch
        else:
            bad_epochs += 1
            if bad_epochs >= spec.patience:
                log(f"stop    no better eval loss for {spec.patience} epochs")
                break
    with torch.no_grad():
        named = dict(model.named_parameters())
        for name, value in best_state.items():
            named[name].copy_(value)
    model.eval()
    return result
