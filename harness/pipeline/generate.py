"""Batched, seeded caption generation.

Determinism: each sample draws its tokens from its own random stream, seeded from
(run seed, sample id). Sampling is done here (Gumbel-max over the warped logits, one stream per
row) and handed to `generate` as a one-hot choice, so an output does not depend on batch size,
order or subset — which transformers' own sampling, one global stream for the batch, cannot give.

The model's shipped generation config is replaced for the call: instruct checkpoints carry
defaults (top_k, repetition penalty, …) that would otherwise leak into a task that did not ask.

Timing (for `harness.metering`): given a `timings` list, each batch appends a BatchTiming; a
streamer that only notes when each step's tokens reach the host splits `generate` into time to
first token (prefill) and decode. Fixed-length mode (`fixed_new_tokens`) forces exactly N new
tokens (EOS suppressed, as `min_new_tokens` does) for speed comparisons independent of caption
length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from harness.metering.clock import BatchClock, BatchTiming
from harness.models.families import Family
from harness.models.inputs import build_prompt, preprocess_image
from harness.pipeline.prediction import Prediction, batches, sample_seed
from harness.records.store import stable_error
from harness.specs.task import GenerationKwargs, ImagePreprocessing

GUMBEL_EPS = 1e-20


class SeededSampler:
    """Logits processor: temperature, top-k, top-p, then a per-row Gumbel-max draw.

    Returns logits that are 0 at the drawn token and -inf elsewhere, so greedy decoding inside
    `generate` takes exactly the token drawn from that row's own stream.
    """

    def __init__(self, seeds: Sequence[int], gen: GenerationKwargs, device: torch.device) -> None:
        self.gen = gen
        self.generators = []
        for seed in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(seed)
            self.generators.append(g)

    def warp(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.gen.temperature
        if self.gen.top_k > 0:
            k = min(self.gen.top_k, scores.shape[-1])
            kth = torch.topk(scores, k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.gen.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
            cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - sorted_scores.softmax(dim=-1) >= self.gen.top_p  # keep >= 1 token
            scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return scores

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        warped = self.warp(scores)
        uniform = torch.stack(
            [
                torch.rand(warped.shape[-1], generator=g, device=warped.device)
                for g in self.generators
            ]
        )
        exponential = -torch.log(uniform.clamp_min(GUMBEL_EPS))  # > 0
        gumbel = -torch.log(exponential.clamp_min(GUMBEL_EPS))
        choice = (warped + gumbel).argmax(dim=-1, keepdim=True)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, choice, 0.0)


def _eos_ids(model: Any, processor: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


def pinned_generation_config(
    model: Any, processor: Any, gen: GenerationKwargs, fixed_new_tokens: int | None = None
) -> Any:
    """A fresh GenerationConfig: all parameters from the task, only token ids from the model.

    With `fixed_new_tokens` N, min = max = N new tokens: EOS is masked until N, so every caption
    is exactly N tokens long.
    """
    from transformers import GenerationConfig

    eos = _eos_ids(model, processor)
    return GenerationConfig(
        do_sample=False,  # sampling happens in SeededSampler; generate takes its one-hot choice
        num_beams=1,
        max_new_tokens=fixed_new_tokens or gen.max_new_tokens,
        min_new_tokens=fixed_new_tokens or gen.min_new_tokens,
        repetition_penalty=gen.repetition_penalty,
        no_repeat_ngram_size=gen.no_repeat_ngram_size,
        temperature=1.0,
        top_k=None,  # unset: no top-k filtering (sampling itself happens in SeededSampler)
        top_p=1.0,
        eos_token_id=eos,
        pad_token_id=eos[0],  # pad = eos, as the study does
        bos_token_id=model.generation_config.bos_token_id,
    )


def batch_inputs(
    model: Any,
    processor: Any,
    family: Family,
    images: Sequence[Image.Image],
    prompt: str,
    image_size: tuple[int, int],
) -> Any:
    """The processor's batch for one prompt over `images`, on the model's device and dtype.

    Padding is on the left (decoder-only generation). Every row holds the same prompt and an
    image of the task's one size, so rows have equal lengths and no padding: sorting a run by
    prompt length, as servers do with mixed requests, would change nothing here
    (tests/pipeline/test_generation_perf.py checks it for each family).
    """
    text, add_special = build_prompt(processor, prompt)
    processor.tokenizer.padding_side = "left"
    inputs = processor(
        text=[text] * len(images),
        images=[[im] for im in images],
        return_tensors="pt",
        padding=True,
        add_special_tokens=add_special,
        **family.processor_kwargs(image_size),
    ).to(model.device)
    for key, value in inputs.items():  # pixel inputs follow the model's dtype
        if torch.is_floating_point(value):
            inputs[key] = value.to(model.dtype)
    return inputs


@torch.inference_mode()
def generate_batch(
    model: Any,
    processor: Any,
    family: Family,
    ids: Sequence[str],
    images: Sequence[Image.Image],
    prompt: str,
    gen: GenerationKwargs,
    run_seed: int,
    image_size: tuple[int, int],
    fixed_new_tokens: int | None = None,
    clock: BatchClock | None = None,
    generate_options: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """`generate_options` set further GenerationConfig fields (benchmarks try
    `cache_implementation` with them; a run passes none)."""
    inputs = batch_inputs(model, processor, family, images, prompt, image_size)
    config = pinned_generation_config(model, processor, gen, fixed_new_tokens)
    if generate_options:
        unknown = config.update(**generate_options)
        if unknown:
            raise TypeError(f"not generation options: {', '.join(sorted(unknown))}")
    seeds = [sample_seed(run_seed, i) for i in ids]
    processors = [SeededSampler(seeds, gen, model.device)] if gen.do_sample else []

    shipped = model.generation_config
    from transformers import GenerationConfig

    # Nothing from the checkpoint's generation_config.json may fill our unset fields.
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
    )
    try:
        if clock is None:
            out = model.generate(**inputs, generation_config=config, logits_processor=processors)
        else:
            clock.generate_start = time.perf_counter()
            out = model.generate(
                **inputs, generation_config=config, logits_processor=processors, streamer=clock
            )
            clock.generate_end = time.perf_counter()
    finally:
        model.generation_config = shipped
    new = out[:, inputs["input_ids"].shape[1] :]
    eos = set(config.eos_token_id)
    preds = []
    for row, sample_id, seed in zip(new.tolist(), ids, seeds, strict=True):
        n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        body = [t for t in row[:n] if t not in eos]
        preds.append(
            Prediction(
                id=sample_id,
                text=processor.tokenizer.decode(body, skip_special_tokens=True),
                new_tokens=n,
                sample_seed=seed,
            )
        )
    return preds


def generate_all(
    model: Any,
    processor: Any,
    family: Family,
    samples: Sequence[tuple[str, Callable[[], Image.Image]]],
    prompt: str,
    gen: GenerationKwargs,
    run_seed: int,
    batch_size: int,
    image_spec: ImagePreprocessing,
    on_batch: Callable[[list[Prediction]], None] | None = None,
    *,
    fixed_new_tokens: int | None = None,
    timings: list[BatchTiming] | None = None,
    generate_options: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """Generate one caption per (id, image loader), `batch_size` at a time.

    `timings`, when given, receives one BatchTiming per batch; `fixed_new_tokens` N makes every
    caption exactly N tokens long. An image that fails to load or decode gives that sample a
    Prediction with an empty text and `error` set; the rest of its batch is generated as usual
    (per-sample seeding: the other captions do not depend on the batch's composition).
    """
    out: list[Prediction] = []
    for batch in batches(samples, batch_size):
        clock = BatchClock() if timings is not None else None
        good: list[tuple[str, Image.Image]] = []
        failed: dict[str, str] = {}
        for sample_id, load in batch:
            try:
                good.append((sample_id, preprocess_image(load(), image_spec)))
            except Exception as err:  # a corrupt or missing image: that sample only
                failed[sample_id] = stable_error(err)
        made: dict[str, Prediction] = {}
        if good:
            preds = generate_batch(
                model,
                processor,
                family,
                [i for i, _ in good],
                [im for _, im in good],
                prompt,
                gen,
                run_seed,
                image_spec.size,
                fixed_new_tokens,
                clock,
                generate_options,
            )
            if clock is not None and timings is not None:
                timings.append(clock.timing(len(preds), sum(p.new_tokens for p in preds)))
            made = {p.id: p for p in preds}
        done = [
            made[i]
            if i in made
            else Prediction(i, "", 0, sample_seed(run_seed, i), error=failed[i])
            for i, _ in batch
        ]
        out.extend(done)
        if on_batch is not None:
            on_batch(done)
    return out
