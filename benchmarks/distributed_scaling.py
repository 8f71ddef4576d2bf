"""Data-parallel scaling: one run under `torchrun --nproc-per-node N` against a plain process.

Both sides run the same `rocobench run` (a tiny twin on the bundled sample, one seed, into a
fresh results folder, offline, on the CPU) as a fresh process, alternating, after one discarded
warm-up pair; medians are reported. Two figures per side:

- command wall time: the whole command, start-up (imports, model load, codecarbon's probe),
  generation, the gather and rank 0's scoring included: what a user waits for;
- generation: the record's `generate_s` (for N ranks, the slowest rank's generation).

Every process gets the same torch threads (`--threads`, default 1: torchrun's own default per
rank), so the ratio shows what splitting the images buys, not a change of threading; on a
machine with other work, a multi-threaded tiny model stalls far more than it gains. With 2
cores, the fixed costs of each process (start-up, model load, scoring on rank 0) dominate, and
the ranks compete for the same cores: the ratio is what this machine gives, not a target.

    .venv/bin/python benchmarks/distributed_scaling.py [--nproc 2] [--repeats 3] [--limit 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run(cmd: list[str], results: Path, env: dict[str, str]) -> tuple[float, float]:
    """(command wall time s, record generate_s)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    (record,) = results.rglob("record.json")
    return wall, json.loads(record.read_text())["measurements"]["generate_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="measured pairs (default 3)")
    parser.add_argument("--variant", default="tiny-qwen2-vl")
    parser.add_argument("--limit", type=int, default=64, help="images (default: all 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["OMP_NUM_THREADS"] = str(args.threads)  # both sides alike (torchrun keeps a set value)
    run_args = ["run", "--task", "rocov2_sample", "--variant", args.variant, "--seeds", "0",
                "--limit", str(args.limit), "--device", "cpu", "--no-progress"]  # fmt: skip
    sides = {
        "1 process": [sys.executable, "-m", "harness.cli"],
        f"{args.nproc} processes": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", str(args.nproc), "-m", "harness.cli"],
    }  # fmt: skip
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="rocobench-scaling-") as tmp:
        for i in range(args.repeats + 1):  # pair 0 warms caches (twin build, file cache)
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                results = Path(tmp) / f"{i}-{name.split()[0]}"
                cmd = [*sides[name], *run_args, "--results", str(results)]
                figure = one_run(cmd, results, env)
                if i > 0:
                    figures[name].append(figure)

    one, many = (figures[name] for name in sides)
    wall = [statistics.median(w for w, _ in f) for f in (one, many)]
    gen = [statistics.median(g for _, g in f) for f in (one, many)]
    print(
        f"{args.variant} on rocov2_sample ({args.limit} images, seed 0), {os.cpu_count()} CPU "
        f"cores, {args.threads} thread(s) per process, medians of {args.repeats}:"
    )
    print(f"{'':24}{'1 process':>12}{f'{args.nproc} processes':>14}{'ratio':>8}")
    print(f"{'command wall time, s':24}{wall[0]:12.1f}{wall[1]:14.1f}{wall[1] / wall[0]:8.2f}")
    print(f"{'generation, s':24}{gen[0]:12.2f}{gen[1]:14.2f}{gen[1] / gen[0]:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
