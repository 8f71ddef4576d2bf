"""Every tiny technique twin beside its base: parameters, size on disk, peak memory, ms/token.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/technique_twins.py [--tokens 32] [--rounds 5]

Each variant is built (or taken from the build cache) and loaded the way `rocobench run` loads
it; then base and technique twin are timed in the same process, interleaved round by round, so
machine noise falls on both alike. Generation is greedy with a fixed number of new tokens on a
batch of 4 synthetic images; decode ms/token = (time for N tokens − time for 1) / (N − 1),
medians over the rounds. Peak memory is how far the process's peak RSS while loading and
generating (the kernel's high-water mark, reset before each variant) rose above its RSS just
before. Size on disk counts the weight files the variant loads (base weights plus adapter, or
the built full-precision folder). On the CPU a 4-bit model is *slower* than float32
(bitsandbytes dequantizes on the fly): these twins check the plumbing, and their timings say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness.data.synthetic_images import draw
from harness.metering.memory import CpuMemory
from harness.models.load import load_variant
from harness.paths import VARIANTS_DIR
from harness.pipeline.runner import quiet_libraries
from harness.specs.task import GenerationKwargs
from harness.specs.variant import load_variant as load_manifest

PAIRS = [
    ("tiny-qwen2-vl", "tiny-qwen2-vl-qlora"),
    ("tiny-qwen2-vl", "tiny-qwen2-vl-pruned"),
    ("tiny-mllama", "tiny-mllama-qlora"),
    ("tiny-mllama", "tiny-mllama-pruned"),
    ("tiny-llava", "tiny-llava-kd"),
    ("tiny-llava", "tiny-llava-kd-qlora-pruned"),
]
IMAGES = [draw(m, f"bench-{m}") for m in ("ct", "mri", "xray", "ultrasound")]


def weight_bytes(loaded: Any) -> int:
    state = loaded.built.state if loaded.built else None
    folders = [Path(state.location)] if state else []
    if state and state.adapter:
        folders.append(Path(state.adapter))
    return sum(f.stat().st_size for d in folders if d.is_dir() for f in d.glob("*.safetensors"))


def generate_s(loaded: Any, tokens: int) -> float:
    from harness.pipeline.generate import generate_batch

    gen = GenerationKwargs(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
    ids = [f"b{i}" for i in range(len(IMAGES))]
    start = time.perf_counter()
    generate_batch(loaded.model, loaded.processor, loaded.family, ids, IMAGES, "Describe.", gen,
                   0, (224, 224))  # fmt: skip
    return time.perf_counter() - start


def load(vid: str) -> tuple[Any, float]:
    """The variant, and how far the process's peak RSS rose above its RSS before loading it."""
    import psutil

    before = psutil.Process().memory_info().rss / 2**20
    memory = CpuMemory()
    memory.open()
    loaded = load_variant(load_manifest(VARIANTS_DIR / f"{vid}.yaml"), device="cpu",
                          progress=False, log=lambda _: None)  # fmt: skip
    generate_s(loaded, 2)  # warm-up, inside the memory phase
    peak = memory.close().get("peak_rss_mib") or float("nan")
    return loaded, peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    quiet_libraries()
    ids = sorted({v for pair in PAIRS for v in pair})
    loaded, peaks = {}, {}
    for vid in ids:
        loaded[vid], peaks[vid] = load(vid)
    times: dict[str, dict[int, list[float]]] = {v: {1: [], args.tokens: []} for v in ids}
    for _ in range(args.rounds):
        for vid in ids:  # interleaved: every variant once per round
            for n in (1, args.tokens):
                times[vid][n].append(generate_s(loaded[vid], n))

    def ms_per_token(vid: str) -> float:
        full, one = statistics.median(times[vid][args.tokens]), statistics.median(times[vid][1])
        return 1000 * (full - one) / (args.tokens - 1)

    header = f"{'variant':<28}{'params':>11}{'disk KiB':>10}{'+peak RSS MiB':>14}{'ms/token':>10}"
    print(header)
    print("-" * len(header))
    for base, twin in PAIRS:
        for vid in (base, twin):
            lv = loaded[vid]
            print(
                f"{vid:<28}{lv.n_parameters:>11,}{weight_bytes(lv) / 1024:>10.0f}"
                f"{peaks[vid]:>14.0f}{ms_per_token(vid):>10.2f}"
            )
        ratio = ms_per_token(twin) / ms_per_token(base)
        print(f"{'  ' + twin + ' / base':<63}{ratio:>10.2f}×")
    print(f"\n{args.rounds} rounds, {args.tokens} new tokens, batch of {len(IMAGES)} images, CPU")


if __name__ == "__main__":
    main()
