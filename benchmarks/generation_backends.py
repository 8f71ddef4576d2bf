"""Transformers against vLLM: the same images, prompts and fixed caption length through each
backend of the harness (`harness.pipeline.generate.generate_all`, `harness.pipeline.backends.vllm`).

Per backend it prints images/s, new tokens/s, time to first token (median over images: its
batch's prefill), ms per decode step, and peak memory; then the ratio vLLM / transformers of
images/s. Every caption is exactly `--tokens` new tokens (EOS ignored) so that both do the same
work; one warm-up batch per backend is discarded; sampling uses the study's settings with the
harness's per-sample seeds.

- `--tiny` (the default without a GPU): the embedded twins (`twin: F`, head size 32) of each
  family in `--families`. Memory is resident memory: this process with the model for
  transformers, this process plus the worker's process tree for vLLM.
- Without `--tiny` on a GPU: the published architecture of `--model` with random weights
  (`harness.models.random_weights`, nothing downloaded), bf16. Memory is NVML's used memory of the
  whole device (vLLM reserves `--gpu-memory-utilization` of it up front for its KV cache, so
  compare its figure with that in mind) and torch's peak allocation for transformers.

    .venv/bin/python benchmarks/generation_backends.py --tiny [--families llava,qwen2_vl]
        [--images 16] [--tokens 32] [--batch-size 8]
    .venv/bin/python benchmarks/generation_backends.py --model qwen2-vl-2b --images 327
        --tokens 128 --batch-size 32          # on a GPU

Needs the vLLM environment (`make install-vllm`).
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
}
PROMPT = "Describe this image."


def figures(name: str, wall: float, timings: list, preds: list, peak_mib: float | None) -> dict:
    n = len(preds)
    tokens = sum(p.new_tokens for p in preds)
    ttft = [t.first_token_s for t in timings if t.first_token_s is not None]
    steps = sum(t.decode_steps for t in timings)
    return {
        "backend": name,
        "images": n,
        "images_per_s": n / wall,
        "tokens_per_s": tokens / wall,
        "ttft_p50_ms": 1000 * statistics.median(ttft) if ttft else None,
        "ms_per_token": 1000 * sum(t.decode_s for t in timings) / steps if steps else None,
        "peak_mib": peak_mib,
        "wall_s": wall,
    }


def bench_pair(folder: Path, label: str, args: argparse.Namespace, device: str) -> list[dict]:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from harness.data.synthetic_images import MODALITIES, draw
    from harness.metering.clock import BatchTiming
    from harness.models.families import family_for_model_type
    from harness.pipeline.backends import vllm
    from harness.pipeline.generate import generate_all
    from harness.specs.task import GenerationKwargs, ImagePreprocessing

    family = family_for_model_type(AutoConfig.from_pretrained(folder).model_type)
    spec = ImagePreprocessing()
    images = [(f"img-{i:04d}", draw(MODALITIES[i % len(MODALITIES)], f"bk-{i}", spec.size))
              for i in range(args.images)]  # fmt: skip
    items = [(i, (lambda im=im: im)) for i, im in images]
    gen = GenerationKwargs(max_new_tokens=args.tokens)
    dtype = "bfloat16" if device == "cuda" else "float32"
    out = []

    # transformers, in this process
    model = AutoModelForImageTextToText.from_pretrained(
        folder, dtype=getattr(torch, dtype), device_map=device
    ).eval()
    processor = AutoProcessor.from_pretrained(folder)

    def hf(batch: list, timings: list | None = None) -> list:
        return generate_all(
            model, processor, family, batch, PROMPT, gen, 0, args.batch_size, spec,
            fixed_new_tokens=args.tokens, timings=timings,
        )  # fmt: skip

    hf(items[: args.batch_size])
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    timings: list[BatchTiming] = []
    rss = vllm.WorkerMemory()  # no worker: this process only, sampled as for vLLM
    rss.open()
    start = time.perf_counter()
    preds = hf(items, timings)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak = rss.close()["peak_rss_mib"]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / MIB
    out.append(figures("transformers", wall, timings, preds, peak))
    model = None  # free it before the worker loads its copy
    if device == "cuda":
        torch.cuda.empty_cache()

    # vLLM, in its worker
    from transformers import GenerationConfig

    eos = GenerationConfig.from_pretrained(folder).eos_token_id
    args_v = vllm.engine_args(
        dtype=dtype, device=device, batch_size=args.batch_size, max_new_tokens=args.tokens,
        seed=0, mm_processor_kwargs=vllm.mm_processor_kwargs(family, spec.size),
    )  # fmt: skip
    env = {}
    if device == "cuda":
        args_v["gpu_memory_utilization"] = args.gpu_memory_utilization
        env["VLLM_BATCH_INVARIANT"] = "1"
    memory = vllm.WorkerMemory()
    with vllm.VllmWorker(str(folder), args_v, env=env) as worker:
        loaded = vllm.VllmLoaded(
            spec=None, model=None, processor=processor, family=family, base=label,  # type: ignore[arg-type]
            revision=None, dtype=dtype, worker=worker,
            eos=list(eos) if isinstance(eos, list | tuple) else [int(eos)], folder=str(folder),
        )  # fmt: skip

        def ours(batch: list, timings: list | None = None) -> list:
            return vllm.generate_all(
                loaded, batch, PROMPT, gen, 0, args.batch_size, spec,
                fixed_new_tokens=args.tokens, timings=timings,
            )  # fmt: skip

        ours(items[: args.batch_size])
        memory.pid = worker.info.pid
        timings = []
        memory.open()
        start = time.perf_counter()
        preds = ours(items, timings)
        wall = time.perf_counter() - start
        peak = memory.close()["peak_rss_mib"]
        if device == "cuda":
            peak = _nvml_used_mib()
        out.append(figures(f"vLLM {worker.info.version}", wall, timings, preds, peak))
    return out


def _nvml_used_mib() -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / MIB
    except Exception:  # no NVML: leave the figure out
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the embedded twins (CPU)")
    parser.add_argument("--families", default="llava,qwen2_vl", help="with --tiny")
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen2-vl-2b")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per image (fixed)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from harness.models.device import resolve_device
    from harness.pipeline.backends import vllm
    from harness.pipeline.runner import quiet_libraries

    quiet_libraries()
    if not vllm.available():
        print(f"no vLLM environment ({vllm.DEFAULT_PYTHON}): run `make install-vllm` first")
        return 1
    device = resolve_device(args.device)
    if device == "cpu" and not args.tiny:
        print("no GPU: full-size models would take hours on the CPU; use --tiny (nothing measured)")
        return 0
    targets: list[tuple[Path, str]] = []
    if args.tiny:
        from harness.models.twins import build_twin

        for family in [f.strip() for f in args.families.split(",") if f.strip()]:
            targets.append((build_twin(family), f"tiny {family} twin"))
    else:
        from harness.models.random_weights import build_random_base, random_base_dir
        from harness.models.twins import hub_layout_copy

        model_id = MODELS[args.model]
        base = build_random_base(model_id, device=device)
        folder = hub_layout_copy(base, random_base_dir(model_id).with_name(base.name + "-hub"))
        targets.append((folder, f"{model_id} architecture, random weights"))

    results = []
    print(f"{args.images} images x {args.tokens} new tokens, batch {args.batch_size}, on {device}")
    header = (f"{'model':<34} {'backend':<14} {'img/s':>8} {'tok/s':>9} {'TTFT ms':>9} "
              f"{'ms/token':>9} {'peak MiB':>9}")  # fmt: skip
    print(header)
    for folder, label in targets:
        rows = bench_pair(folder, label, args, device)
        for r in rows:
            print(
                f"{label:<34} {r['backend']:<14} {r['images_per_s']:>8.3f} "
                f"{r['tokens_per_s']:>9.1f} {_f(r['ttft_p50_ms'], 9, 1)} "
                f"{_f(r['ms_per_token'], 9, 2)} {_f(r['peak_mib'], 9, 0)}"
            )
        ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
        print(f"{label:<34} ratio vLLM / transformers (images/s): {ratio:.2f}")
        results.append({"model": label, "rows": rows, "ratio_images_per_s": ratio})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _f(value: Any, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
