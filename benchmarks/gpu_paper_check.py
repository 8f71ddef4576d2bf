"""The paper suite's GPU check, as one script under a time budget.

Runs Table I's architectures with random weights (`rocobench run --random-weights`: published
configs, nothing downloaded) on the paper task's 327 synthetic 224 x 224 images, exactly
`--tokens` new tokens each (default 128), seed 0, in order of importance:

    qwen2-vl-2b (bf16; goal: <= 60 s of generation), qwen2-vl-2b-qlora (NF4 + adapter),
    qwen2-vl-2b-pruned (30 % of heads and FFN neurons), llava-1.5-7b, llama-3.2-11b-vision

Each step is a `rocobench run` subprocess, so every figure is the harness's own record
(generation time, images/s, tokens/s, ms/token, time to first token, peak GPU memory, energy),
beside the floor on generation's GPU memory that `dispatch` uses (weights only: the peak must
not be below it);
a step starts only while at least `--min-step` seconds of the budget are left, and is stopped
at the budget. Then it prints one table from the records written, and `gpu_generation.py`'s
batch-size sweep and roofline can follow in the remaining time (`--sweep`).

    .venv/bin/python benchmarks/gpu_paper_check.py --out gpu-check [--budget 450] [--sweep]
    .venv/bin/python benchmarks/gpu_paper_check.py --tiny --out /tmp/check   # CPU, tiny twins

`--tiny` runs the same steps on the embedded twins of the Qwen2-VL rows (which are random
already) on 8 bundled images and 8 tokens: how the test suite checks this script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GPU_STEPS = [
    "qwen2-vl-2b",
    "qwen2-vl-2b-qlora",
    "qwen2-vl-2b-pruned",
    "llava-1.5-7b",
    "llama-3.2-11b-vision",
]
TINY_STEPS = ["tiny-qwen2-vl", "tiny-qwen2-vl-pruned"]
GOAL_S = {"qwen2-vl-2b": 60.0}  # the goal for the 2B model's generation


def run_step(variant: str, args: argparse.Namespace, timeout: float) -> int:
    cmd = [
        sys.executable, "-m", "harness.cli", "run",
        "--task", "rocov2_sample" if args.tiny else "rocov2_paper327",
        "--variant", variant, "--seeds", "0", "--fixed-new-tokens", str(args.tokens),
        "--results", str(args.out / "results"), "--no-progress",
    ]  # fmt: skip
    if args.tiny:
        cmd += ["--limit", "8", "--device", "cpu"]
    else:
        cmd += ["--random-weights", "--batch-size", str(args.batch_size)]
    print(f"== {variant} (up to {timeout:.0f} s)", flush=True)
    try:
        return subprocess.run(cmd, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"   {variant}: stopped at the time budget", flush=True)
        return 124


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def generation_floor_mib(variant: str) -> float | None:
    """The GPU memory `dispatch` says generation needs at least (weights only), in MiB."""
    from harness.scale.jobs_memory import phase_floors
    from harness.specs import catalog
    from harness.specs.yamlio import SpecError

    try:
        floors = phase_floors(catalog.variant(variant))
    except SpecError:
        return None
    return None if floors is None else floors[-1].gb * 1e9 / 2**20


def table(results: Path) -> str:
    from harness.records.store import find_records

    head = (
        "variant", "params", "load s", "gen s", "img/s", "tok/s", "ms/tok", "TTFT ms",
        "GPU MiB", "floor MiB", "J/img", "goal",
    )  # fmt: skip
    rows = [head]
    for _, r in find_records(results) if results.exists() else []:
        m = r.measurements
        goal = GOAL_S.get(r.variant)
        verdict = (
            "" if goal is None else ("met" if m.generate_s <= goal else "missed") + f" ≤{goal:g}s"
        )
        rows.append((
            r.variant, _count(r.model.n_parameters), _fmt(m.load_s, ".1f"),
            _fmt(m.generate_s, ".1f"), _fmt(m.images_per_s, ".1f"), _fmt(m.tokens_per_s, ".0f"),
            _fmt(m.decode_ms_per_token, ".1f"), _fmt(m.ttft_p50_ms, ".0f"),
            _fmt(m.peak_gpu_allocated_mib, ".0f"), _fmt(generation_floor_mib(r.variant), ".0f"),
            _fmt(m.energy_per_image_j, ".2f"), verdict,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for records and figures")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for every step")
    parser.add_argument("--min-step", type=float, default=60.0, help="don't start with less left")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per image (fixed)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (GPU)")
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny twins, 8 images")
    parser.add_argument("--sweep", action="store_true", help="then gpu_generation.py's sweep")
    args = parser.parse_args()
    if args.tiny:
        args.tokens, args.min_step = min(args.tokens, 8), min(args.min_step, 1.0)
    deadline = time.monotonic() + args.budget
    failed = []
    for variant in TINY_STEPS if args.tiny else GPU_STEPS:
        left = deadline - time.monotonic()
        if left < args.min_step:
            print(f"== {variant}: skipped, {left:.0f} s of the budget left", flush=True)
            continue
        if run_step(variant, args, left) != 0:
            failed.append(variant)
    print(f"\nfixed {args.tokens} new tokens per image, seed 0; records in {args.out / 'results'}")
    print(table(args.out / "results"))
    left = deadline - time.monotonic()
    if args.sweep and not args.tiny and left >= args.min_step:
        sweep = Path(__file__).with_name("gpu_generation.py")
        cmd = [sys.executable, str(sweep), "--batch-sizes", "8,32,64", "--json",
               str(args.out / "sweep.json")]  # fmt: skip
        try:
            subprocess.run(cmd, timeout=left, check=False)
        except subprocess.TimeoutExpired:
            print("sweep: stopped at the time budget")
    if failed:
        print(f"failed or stopped: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
