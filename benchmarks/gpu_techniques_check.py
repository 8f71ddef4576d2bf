"""GPU check of the techniques at full size: Qwen2-VL-2B in bf16, NF4 + LoRA, and 30 % pruned.

The architecture is Qwen2-VL-2B-Instruct's published configuration with random weights (see
gpu_metering_check.py); the tokenizer and processor are the tiny twin's. The three variants are
built the way the technique chain builds them — the bf16 model saved as a folder, loaded in NF4
with a rank-16 LoRA adapter on the language model (`harness.techniques.qlora.add_lora`), and
pruned with `harness.techniques.prune.prune_model` (30 % of heads and FFN neurons, GQA-aware),
saved and reloaded with `load_pruned` — then each generates exactly `--tokens` new tokens per
image over the same synthetic images. Printed per variant: parameters, weight bytes, peak
allocated and reserved GPU memory, ms per decode step and images/s; ratios against bf16.
Without a CUDA device it says so and exits 0.

    .venv/bin/python benchmarks/gpu_techniques_check.py [--images 64] [--batch-size 16]
        [--tokens 128] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_metering_check import full_size_config

MIB = 2**20


def weight_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def n_parameters(model: Any) -> int:
    total = 0
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        total += qs.shape.numel() if qs is not None else p.numel()
    return total


def measure(name: str, model: Any, processor: Any, family: Any, args: argparse.Namespace) -> dict:
    import torch

    from harness.data.synthetic_images import MODALITIES, draw
    from harness.pipeline.generate import generate_batch
    from harness.specs.task import GenerationKwargs

    images = [draw(MODALITIES[i % 5], f"gpu-{i}") for i in range(args.images)]
    gen = GenerationKwargs(do_sample=False, max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    one = GenerationKwargs(do_sample=False, max_new_tokens=1, min_new_tokens=1)
    ids = [f"i{i}" for i in range(args.batch_size)]
    generate_batch(
        model, processor, family, ids, images[: args.batch_size], "Describe.", one, 0, (224, 224)
    )  # fmt: skip  (warm-up)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    steps = []
    for b in range(0, args.images, args.batch_size):
        batch = images[b : b + args.batch_size]
        bids = [f"i{b + i}" for i in range(len(batch))]
        t0 = time.perf_counter()
        generate_batch(model, processor, family, bids, batch, "Describe.", one, 0, (224, 224))
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        generate_batch(model, processor, family, bids, batch, "Describe.", gen, 0, (224, 224))
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        steps.append(((t2 - t1) - (t1 - t0)) / (args.tokens - 1))
    total = time.perf_counter() - start
    return {
        "variant": name,
        "parameters": n_parameters(model),
        "weight_mib": weight_bytes(model) / MIB,
        "peak_allocated_mib": torch.cuda.max_memory_allocated() / MIB,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / MIB,
        "ms_per_decode_step": 1000 * statistics.median(steps),
        "images_per_s": args.images / total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from harness.models.families import FAMILIES
    from harness.models.twins import build_twin
    from harness.pipeline.runner import quiet_libraries
    from harness.techniques.context import bnb_config
    from harness.techniques.prune import PruneSpec, load_pruned, prune_model
    from harness.techniques.qlora import QLoraSpec, add_lora
    from harness.techniques.quantize import QuantizeSpec, quantization_kwargs

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (this check needs a GPU)")
        return 0
    quiet_libraries()
    family = FAMILIES.get("qwen2_vl")
    twin = build_twin("qwen2_vl")
    processor = AutoProcessor.from_pretrained(twin)
    config = full_size_config(twin)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bf16"
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        results.append(measure("bf16", model.eval(), processor, family, args))
        del model
        torch.cuda.empty_cache()

        quant = bnb_config(quantization_kwargs(QuantizeSpec(), family, "cuda"))
        nf4 = Qwen2VLForConditionalGeneration.from_pretrained(
            folder, quantization_config=quant, dtype=torch.bfloat16, device_map="cuda"
        )
        nf4 = add_lora(nf4, family, QLoraSpec())
        results.append(measure("nf4+lora", nf4.eval(), processor, family, args))
        del nf4
        torch.cuda.empty_cache()

        base = Qwen2VLForConditionalGeneration.from_pretrained(
            folder, dtype=torch.bfloat16, device_map="cuda"
        )
        prune_model(base, family, PruneSpec(heads=0.3, ffn=0.3))
        pruned_folder = Path(tmp) / "pruned"
        base.save_pretrained(pruned_folder)
        del base
        pruned = load_pruned(pruned_folder, dtype=torch.bfloat16, device_map="cuda")
        results.append(measure("pruned-30%", pruned.eval(), processor, family, args))

    ref = results[0]
    print(f"{torch.cuda.get_device_name(0)}, {args.images} images × {args.tokens} tokens, "
          f"batch {args.batch_size}")  # fmt: skip
    for r in results:
        print(
            f"{r['variant']:<11} {r['parameters'] / 1e9:6.3f} B params  {r['weight_mib']:8.0f} MiB "
            f"weights  peak {r['peak_allocated_mib']:8.0f} MiB alloc / "
            f"{r['peak_reserved_mib']:8.0f} reserved  {r['ms_per_decode_step']:6.2f} ms/step "
            f"({r['ms_per_decode_step'] / ref['ms_per_decode_step']:.2f}× bf16)  "
            f"{r['images_per_s']:6.2f} img/s"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
