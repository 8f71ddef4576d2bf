"""Pruned tiny twins against their bases: parameters, size on disk, CPU latency.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/prune_twins.py [--tokens 32] [--rounds 7]

For each twin the base and its pruned copy (saved, then reloaded with `load_pruned`, the way a
build uses it) are timed in the same process, interleaved round by round, so that machine noise
falls on both alike. Generation is greedy through `harness.pipeline.generate.generate_batch` with a
fixed number of new tokens (min = max), one image. Prefill is the time for one new token;
decode ms/token is (time for N tokens - time for 1) / (N - 1). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from harness.data.synthetic_images import draw
from harness.models.families import FAMILIES, Family
from harness.models.twins import build_twin
from harness.pipeline.generate import generate_batch
from harness.specs.task import GenerationKwargs
from harness.techniques.prune import PruneSpec, load_pruned, prune_model

IMAGE = draw("ct", "benchmark")
SIZE = (224, 224)


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def timed(model: Any, processor: Any, family: Family, tokens: int) -> float:
    gen = GenerationKwargs(do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens)
    start = time.perf_counter()
    (pred,) = generate_batch(model, processor, family, ["b"], [IMAGE], "Describe.", gen, 0, SIZE)
    elapsed = time.perf_counter() - start
    assert pred.new_tokens == tokens, pred
    return elapsed


def bench(name: str, spec: PruneSpec, tokens: int, rounds: int, workdir: Path) -> dict[str, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = FAMILIES.get(name)
    folder = build_twin(name)
    processor = AutoProcessor.from_pretrained(folder)
    base = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    work = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    layout = prune_model(work, family, spec)
    saved = workdir / name
    work.save_pretrained(saved)
    pruned = load_pruned(saved, dtype=torch.float32).eval()

    models = {"base": base, "pruned": pruned}
    for model in models.values():  # warm-up: first calls allocate and pick kernels
        timed(model, processor, family, 2)
    runs: dict[str, dict[int, list[float]]] = {k: {1: [], tokens: []} for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            for n in (1, tokens):
                runs[key][n].append(timed(model, processor, family, n))

    out: dict[str, Any] = {"layout": layout}
    for key, model in models.items():
        one = statistics.median(runs[key][1])
        many = statistics.median(runs[key][tokens])
        out[key] = {
            "params": n_params(model),
            "decoder": n_params(model.get_submodule(f"{family.language_model}.layers")),
            "disk": disk_bytes(folder if key == "base" else saved),
            "prefill_ms": 1000 * one,
            "decode_ms": 1000 * (many - one) / (tokens - 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--families", nargs="+", default=["qwen2_vl", "mllama", "llava"])
    args = parser.parse_args()
    spec = PruneSpec(round_to=8)  # 30 % heads, 30 % FFN; tiny widths round to multiples of 8

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, fp32, batch 1,")
    print(f"greedy, {args.tokens} new tokens, median of {args.rounds} interleaved rounds; {spec}")
    header = (
        f"{'twin':9} {'variant':7} {'params':>9} {'disk KiB':>9} {'prefill ms':>10} "
        f"{'decode ms/tok':>13}  heads/ffn removed"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="prune-bench-") as tmp:
        for name in args.families:
            r = bench(name, spec, args.tokens, args.rounds, Path(tmp))
            lay = r["layout"]
            for key in ("base", "pruned"):
                m = r[key]
                note = ""
                if key == "pruned":
                    drop = 1 - m["params"] / r["base"]["params"]
                    dec = 1 - m["decoder"] / r["base"]["decoder"]
                    note = (
                        f"  {lay.removed_heads:.0%}/{lay.removed_ffn:.1%}"
                        f" (params -{drop:.1%}, decoder -{dec:.1%})"
                    )
                print(
                    f"{name:9} {key:7} {m['params']:>9,} {m['disk'] / 1024:>9.0f} "
                    f"{m['prefill_ms']:>10.1f} {m['decode_ms']:>13.2f}{note}"
                )


if __name__ == "__main__":
    main()
