"""Does a rendered page's memory column order the variants by the size of their weights?

    python benchmarks/memory_vs_size.py site/results.json

Prints, per task, every variant sorted by the bytes of its weights as loaded, with its memory
figures per seed (the page's memory column: counted tensor memory on the CPU, torch's peak
allocated on a GPU) and the RSS column (mean ± sd over seeds), then whether sorting by memory
gives the same order. Variants of equal size may come in either order. Exit status 1 when the
orders disagree, 2 when the page has no memory figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

MIB = 2**20


def memory_key(row: dict[str, Any]) -> str | None:
    values = row["efficiency_values"]
    for key in ("peak_gpu_mib", "tensor_mib"):  # the page's memory column, in its order
        if values.get(key):
            return key
    return None


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def check(task: dict[str, Any]) -> bool | None:
    rows = sorted(task["rows"], key=lambda r: r["efficiency"]["size_bytes"])
    keys = {memory_key(r) for r in rows}
    if None in keys or len(keys) != 1:
        return None
    (key,) = keys
    print(f"\n{task['task']} ({key}, MiB)\n")
    print("| variant | weights | memory per seed | RSS |\n|---|---:|---:|---:|")
    for r in rows:
        memory = ", ".join(f"{v:.3f}" for v in r["efficiency_values"][key])
        rss = spread(r["efficiency_values"].get("memory_mib") or [])
        print(f"| {r['variant']} | {r['efficiency']['size_bytes'] / MIB:.3f} | {memory} | {rss} |")
    sizes = [r["efficiency"]["size_bytes"] for r in rows]
    memories = [r["efficiency"][key] for r in rows]
    agree = all(
        memories[i] < memories[j]
        for i in range(len(rows))
        for j in range(i + 1, len(rows))
        if sizes[i] < sizes[j]
    )
    print("\nmemory orders the variants by weights: " + ("yes" if agree else "NO"))
    return agree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_json", type=Path, help="results.json of a rendered site")
    args = parser.parse_args()
    data = json.loads(args.results_json.read_text(encoding="utf-8"))
    verdicts = [check(task) for task in data["tasks"]]
    if not any(v is not None for v in verdicts):
        print(f"{args.results_json}: no memory figures (records older than metering version 3?)")
        return 2
    return 0 if all(v is not False for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
