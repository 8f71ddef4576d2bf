"""Generation throughput on a GPU: a full-size architecture, a batch-size sweep, the roofline.

The model is a real variant's published architecture with random weights
(`harness.models.random_weights.random_model`, nothing downloaded; default Qwen2-VL-2B-Instruct in
bf16), captioning `--images` synthetic 224 x 224 pictures (default 327, the paper task's count)
with exactly `--tokens` new tokens each (default 128: fixed length, EOS masked, so every batch
size does the same work) through the harness's own `generate_all`. One warm-up batch per batch
size is discarded. Per batch size it prints:

- images/s and new tokens/s over the whole sweep point (preprocessing included);
- ms/token: decode time / decode steps, the inter-token latency a caption sees; a step makes one
  token for every image of the batch;
- time to first token (prefill of a batch), median over images;
- peak GPU memory (torch max_memory_allocated) and GPU energy (NVML's energy counter; whole
  device), per image;
- the ratio to the memory-bandwidth floor: a decode step has to read every weight of the
  language model (decoder, its norms and the output head) at least once, so it cannot be faster
  than those bytes / the device's copy bandwidth, measured here (a device-to-device copy of a
  1 GiB buffer moves 2 GiB). KV-cache reads are left out: the floor is a lower bound and the
  ratio an upper bound on the waste. A ratio near 1 is memory-bound and efficient; a large one
  at batch 1 says the step is dominated by kernel launches and Python.

`--cache static` passes `cache_implementation="static"` to `generate`, which on CUDA also
compiles the forward pass (transformers' auto-compile): try it against `dynamic` before making
it a harness option (on 2 CPU cores it did not pay off; README "Performance"). The warm-up
compiles the batch shape; a smaller last batch compiles again inside the timed sweep point.

On a machine without a GPU, `--device cpu --tiny` runs the same code on the tiny twin of the
family (that is how the test suite checks this script); without `--tiny` the CPU would take
hours, so it stops.

    .venv/bin/python benchmarks/gpu_generation.py [--model qwen2-vl-2b] [--images 327]
        [--tokens 128] [--batch-sizes 1,8,16,32,64] [--cache dynamic|static] [--json OUT.json]
    .venv/bin/python benchmarks/gpu_generation.py --device cpu --tiny --images 8 --tokens 8
        --batch-sizes 1,4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MIB = 2**20
MODELS = {
    "qwen2-vl-2b": "Qwen/Qwen2-VL-2B-Instruct",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf",
    "llama-3.2-11b-vision": "meta-llama/Llama-3.2-11B-Vision-Instruct",
}


def copy_bandwidth(device: str, mib: int, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy (a copy reads and writes every byte)."""
    import torch

    src = torch.empty(mib * MIB, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * src.numel() / statistics.median(times)


def decode_weight_bytes(model: Any, family: Any) -> int:
    """Bytes a decode step reads at least: every parameter but the vision modules and, when it
    is not tied to the output head, the input embedding (a step gathers a few of its rows)."""
    vision = tuple(f"{m}." for m in family.vision_modules)
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = 0
    for name, p in model.named_parameters():
        if name.startswith(vision) or (p is embed and embed is not head):
            continue
        total += p.numel() * p.element_size()
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen2-vl-2b")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="the family's tiny twin instead")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None,
                        help="default: bfloat16 on a GPU, float32 on the CPU")  # fmt: skip
    parser.add_argument("--images", type=int, default=327)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per image (fixed)")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--cache", choices=["dynamic", "static"], default="dynamic")
    parser.add_argument("--bandwidth-mib", type=int, default=None, help="copy buffer size")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads on the CPU (default 1: steadier)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from harness.data.synthetic_images import MODALITIES, draw
    from harness.metering.clock import BatchTiming
    from harness.metering.session import Metering
    from harness.metering.summary import summarise
    from harness.models.device import resolve_device
    from harness.models.families import family_for_model_type
    from harness.models.random_weights import published_config, random_model
    from harness.models.twins import build_twin
    from harness.pipeline.generate import generate_all
    from harness.pipeline.runner import quiet_libraries
    from harness.specs.task import GenerationKwargs, ImagePreprocessing

    quiet_libraries()
    device = resolve_device(args.device)
    if device == "cpu" and not args.tiny:
        print("no GPU: a full-size model would take hours on the CPU; use --tiny to check the "
              "script (nothing was measured)")  # fmt: skip
        return 0
    if device == "cpu":
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    model_id = MODELS[args.model]
    family = family_for_model_type(published_config(model_id)["model_type"])
    if args.tiny:
        twin = build_twin(family.name)
        model = AutoModelForImageTextToText.from_pretrained(twin, dtype=dtype, device_map=device)
        processor, what = AutoProcessor.from_pretrained(twin), f"tiny {family.name} twin"
    else:
        model, processor = random_model(model_id, device=device, dtype=dtype)
        what = f"{model_id} architecture, random weights"
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = decode_weight_bytes(model, family)
    bandwidth = copy_bandwidth(device, args.bandwidth_mib or (1024 if device == "cuda" else 64))
    floor_ms = 1000 * weight_bytes / bandwidth
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(
        f"{what}: {n_params:,} parameters, {dtype}, on {gpu}; a decode step reads "
        f">= {weight_bytes / MIB:,.0f} MiB of weights; copy bandwidth {bandwidth / 1e9:,.1f} GB/s "
        f"-> floor {floor_ms:.3f} ms/step; {args.images} images x {args.tokens} new tokens, "
        f"cache {args.cache}"
    )

    spec = ImagePreprocessing()
    images = [(f"img-{i:04d}", draw(MODALITIES[i % len(MODALITIES)], f"gpu-{i}", spec.size))
              for i in range(args.images)]  # fmt: skip
    gen = GenerationKwargs(max_new_tokens=args.tokens)  # the study's sampling settings
    options = {"cache_implementation": "static"} if args.cache == "static" else None
    metering = Metering.standard(device, energy=device == "cuda")

    def run(batch: int, items: list, timings: list[BatchTiming] | None = None) -> list:
        return generate_all(
            model, processor, family, [(i, (lambda im=im: im)) for i, im in items],
            "Describe this image.", gen, 0, batch, spec, fixed_new_tokens=args.tokens,
            timings=timings, generate_options=options,
        )  # fmt: skip

    rows = []
    header = (f"{'batch':>5} {'img/s':>8} {'tok/s':>9} {'ms/token':>9} {'TTFT ms':>9} "
              f"{'peak MiB':>9} {'J/img':>8} {'x floor':>8}")  # fmt: skip
    print(header)
    for batch in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
        run(batch, images[:batch])  # warm-up: kernels, allocator, compilation
        if device == "cuda":
            torch.cuda.synchronize()
        timings: list[BatchTiming] = []
        with metering.phase("generate") as phase:
            preds = run(batch, images, timings)
            if device == "cuda":
                torch.cuda.synchronize()
        m = summarise({"generate": phase.result}, timings, [p.new_tokens for p in preds],
                      fixed_new_tokens=args.tokens, energy=metering.energy)  # fmt: skip
        peak = m.peak_gpu_allocated_mib if device == "cuda" else m.peak_rss_mib
        joules = m.gpu_energy_j / m.n_images if m.gpu_energy_j else None
        ratio = m.decode_ms_per_token / floor_ms if m.decode_ms_per_token else None
        row = {
            "batch_size": batch,
            "images_per_s": m.images_per_s,
            "tokens_per_s": m.tokens_per_s,
            "ms_per_token": m.decode_ms_per_token,
            "ttft_p50_ms": m.ttft_p50_ms,
            "peak_mib": peak,
            "gpu_energy_per_image_j": joules,
            "ratio_to_floor": ratio,
            "measurements": m.model_dump(mode="json"),
        }
        rows.append(row)

        def fmt(value: float | None, spec: str) -> str:
            return "n/a" if value is None else format(value, spec)

        print(
            f"{batch:>5} {m.images_per_s:>8.2f} {m.tokens_per_s:>9.1f} "
            f"{fmt(m.decode_ms_per_token, '.3f'):>9} {fmt(m.ttft_p50_ms, '.1f'):>9} "
            f"{fmt(peak, ',.0f'):>9} {fmt(joules, '.2f'):>8} {fmt(ratio, '.2f'):>8}"
        )
    if args.json:
        out = {
            "model": what,
            "device": gpu,
            "dtype": str(dtype),
            "parameters": n_params,
            "decode_weight_bytes": weight_bytes,
            "copy_bandwidth_bytes_per_s": bandwidth,
            "floor_ms_per_step": floor_ms,
            "workload": {"images": args.images, "tokens": args.tokens, "cache": args.cache},
            "sweep": rows,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
