"""What the harness's generation loop costs, and what batching buys, on a tiny twin on the CPU.

1. Harness against a bare loop: `harness.pipeline.generate.generate_all` against a plain loop
  over the
   same batches (the processor, then `model.generate` with transformers' own sampling, then
   `batch_decode`), on the same tiny Qwen2-VL twin, the same decoded images, prompt and batch
   size. Captions sampled differently stop at different lengths, so both sides generate exactly
   `--tokens` new tokens per image (EOS masked until then: the harness's fixed-length mode,
   `min_new_tokens` in the bare loop). What the harness adds — per-image seeded sampling (one
   random stream per row), the pinned generation config, prediction bookkeeping — is in the
   ratio. Goal: <= 1.10.
2. Batched against one image at a time: `generate_all` at `--batch-size` and at 1 over the same
   images with the task's real settings (sampling, natural lengths). Per-image seeding makes the
   captions identical (checked), so both sides write the same tokens. Goal: >= 3x.

The two sides of each comparison alternate (ABBA) after one discarded warm-up each, and medians
over `--repeats` are reported. torch runs `--threads` threads (default 1: a shared 2-core
machine's noise hides less that way).

    .venv/bin/python benchmarks/generation_overhead.py [--repeats 5] [--images 64]
        [--batch-size 16] [--tokens 128] [--batch1-images 16] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OVERHEAD_GOAL = 1.10
BATCH_GOAL = 3.0


def alternate(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[list, list]:
    """Wall times of `a` and `b`, ABBA order, one discarded warm-up each."""
    a(), b()
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(repeats):
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, sink in order:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return times_a, times_b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="tiny-qwen2-vl", help="an embedded twin variant")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images for the overhead test")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per image (fixed)")
    parser.add_argument("--batch1-images", type=int, default=16, help="images for batched vs 1")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from harness.data.dataset import load_split
    from harness.models.inputs import build_prompt, preprocess_image
    from harness.models.load import load_variant
    from harness.paths import REPO_ROOT
    from harness.pipeline.generate import generate_all
    from harness.pipeline.runner import quiet_libraries
    from harness.specs.task import load_task
    from harness.specs.variant import load_variant as load_manifest

    quiet_libraries()
    torch.set_num_threads(args.threads)
    loaded = load_variant(
        load_manifest(REPO_ROOT / "variants" / f"{args.variant}.yaml"), "cpu", log=lambda _: None
    )
    model, processor, family = loaded.model, loaded.processor, loaded.family
    task = load_task(REPO_ROOT / "tasks" / "rocov2_sample.yaml")
    evalset = load_split(task)
    n = max(args.images, args.batch1_images)
    decoded = [(i, load()) for i, load in evalset.items()[:n]]  # decoded once, outside timing
    gen, spec, prompt = task.generation_kwargs, task.preprocessing.image, task.doc_to_text

    def items(count: int) -> list:
        return [(i, (lambda im=im: im)) for i, im in decoded[:count]]

    def harness_fixed() -> None:
        generate_all(model, processor, family, items(args.images), prompt, gen, 0,
                     args.batch_size, spec, fixed_new_tokens=args.tokens)  # fmt: skip

    text, add_special = build_prompt(processor, prompt)
    eos = model.generation_config.eos_token_id
    pad = eos[0] if isinstance(eos, list) else eos

    @torch.inference_mode()
    def bare_fixed() -> None:
        torch.manual_seed(0)
        processor.tokenizer.padding_side = "left"
        for b in range(0, args.images, args.batch_size):
            images = [preprocess_image(im, spec) for _, im in decoded[b : b + args.batch_size]]
            inputs = processor(
                text=[text] * len(images), images=[[im] for im in images], return_tensors="pt",
                padding=True, add_special_tokens=add_special, **family.processor_kwargs(spec.size),
            )  # fmt: skip
            out = model.generate(
                **inputs, do_sample=True, temperature=gen.temperature, top_p=1.0, top_k=0,
                max_new_tokens=args.tokens, min_new_tokens=args.tokens, pad_token_id=pad,
            )  # fmt: skip
            processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    print(
        f"{args.variant} on the CPU, {args.threads} thread(s), {loaded.n_parameters:,} parameters",
        file=sys.stderr,
    )
    h, b = alternate(harness_fixed, bare_fixed, args.repeats)
    overhead = statistics.median(h) / statistics.median(b)
    print(
        f"harness vs bare generate: {args.images} images, batch {args.batch_size}, exactly "
        f"{args.tokens} new tokens each: median {statistics.median(h):.3f} s vs "
        f"{statistics.median(b):.3f} s over {args.repeats} repeats -> ratio {overhead:.3f} "
        f"(goal <= {OVERHEAD_GOAL}); pair ratios "
        + ", ".join(f"{x / y:.3f}" for x, y in zip(h, b, strict=True))
    )

    captions: dict[int, list[str]] = {}

    def natural(batch_size: int) -> Callable[[], None]:
        def run() -> None:
            preds = generate_all(model, processor, family, items(args.batch1_images), prompt,
                                 gen, 0, batch_size, spec)  # fmt: skip
            captions[batch_size] = [p.text for p in preds]

        return run

    batched, single = alternate(natural(args.batch_size), natural(1), args.repeats)
    if captions[args.batch_size] != captions[1]:
        print("FAIL: batched and one-at-a-time captions differ", file=sys.stderr)
        return 1
    speedup = statistics.median(single) / statistics.median(batched)
    print(
        f"batched vs one image at a time: {args.batch1_images} images, task settings (sampling, "
        f"natural lengths, identical captions): batch {args.batch_size} median "
        f"{statistics.median(batched):.3f} s, batch 1 median {statistics.median(single):.3f} s "
        f"-> {speedup:.2f}x (goal >= {BATCH_GOAL})"
    )
    if args.json:
        figures = {
            "variant": args.variant,
            "threads": args.threads,
            "overhead": {"harness_s": h, "bare_s": b, "ratio_of_medians": overhead},
            "batching": {"batched_s": batched, "batch1_s": single, "speedup": speedup},
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
