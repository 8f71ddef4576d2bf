"""Where `make bench`'s time goes: wall time per phase, fresh cache or cached.

Runs `rocobench bench --profile` in a child process (as `make bench` does after its install
check), times the install check itself (`make --question install`: nothing is installed), and
prints one markdown table per run with the machine it ran on.

    python benchmarks/bench_breakdown.py --fresh --cache /tmp/rb-cache --results /tmp/rb-results
    python benchmarks/bench_breakdown.py --cache /tmp/rb-cache --results /tmp/rb-results  # cached

`--fresh` empties the cache folder and the results folder first (the first run of a new user).
`--json FILE` keeps the spans and totals. Timings on a shared machine are inflated by its load:
the load average before and after is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import spans as phases  # noqa: E402


def machine() -> dict[str, object]:
    import psutil
    import torch

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }


def install_check() -> float | None:
    """`make --question install`: the up-to-date check `make bench` does first (installs
    nothing). None where make is missing."""
    if shutil.which("make") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["make", "--question", "install"], cwd=REPO, capture_output=True, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="ROCOBENCH_CACHE for the run")
    ap.add_argument("--results", type=Path, required=True, help="results folder")
    ap.add_argument("--site", type=Path, help="site folder (default: beside the results)")
    ap.add_argument("--fresh", action="store_true", help="empty the cache and results first")
    ap.add_argument("--json", type=Path, help="write spans, totals and machine facts here")
    ap.add_argument("bench_args", nargs="*", help="more `rocobench bench` options (after --)")
    args = ap.parse_args(argv)

    site = args.site or args.results.with_name(args.results.name + "-site")
    if args.fresh:
        for folder in (args.cache, args.results, site):
            shutil.rmtree(folder, ignore_errors=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    facts = machine()
    check_s = install_check()
    profile = args.results.with_name(args.results.name + "-profile.jsonl")
    env = dict(os.environ, ROCOBENCH_CACHE=str(args.cache.resolve()), HF_HUB_OFFLINE="1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, "-m", "harness.cli", "bench", "--no-progress"]
    cmd += ["--results", str(args.results), "--site", str(site), "--profile", str(profile)]
    start = time.perf_counter()
    done = subprocess.run([*cmd, *args.bench_args], cwd=REPO, env=env, check=False)
    wall = time.perf_counter() - start
    spans = phases.read_spans(profile) if profile.exists() else []
    rows = phases.summarise(spans)
    if check_s is not None:
        rows.insert(0, phases.Row("install check", "make --question install", 1, check_s))
    total = wall + (check_s or 0.0)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # make, the bench and its workers
    cpu = usage.ru_utime + usage.ru_stime
    label = "fresh cache" if args.fresh else "as the cache stands"
    print(f"\n## make bench, {label}: {total:.1f} s (exit {done.returncode})\n")
    print(phases.markdown_table(rows, total, cpu))
    busy = {p: phases.busy_s(spans, p) for p in ("build", "generate", "score all")}
    print("\nwall time with at least one span open: " + ", ".join(
        f"{p} {s:.1f} s" for p, s in busy.items()))  # fmt: skip
    facts["load_average_after"] = os.getloadavg()
    print("\nmachine: " + json.dumps(facts))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "fresh": args.fresh,
                    "total_s": total,
                    "total_cpu_s": cpu,
                    "exit": done.returncode,
                    "machine": facts,
                    "busy_s": busy,
                    "rows": [r.__dict__ for r in rows],
                    "spans": [s.__dict__ for s in spans],
                },
                indent=1,
            )
        )
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
