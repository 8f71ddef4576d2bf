"""Memory per variant: run one after another in one process, or each in a fresh process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_order.py [--images 8] [--tokens 16]

A base twin and its pruned variant (fewer parameters) run in both orders, first the way
`rocobench run --variant A --variant B` runs them (both in one process, each order in a new
interpreter), then the way `rocobench bench` runs them (each variant's generation in a fresh
process). Printed per variant and order: the process's peak RSS during generation, and the
variant's own share (that peak less the process's RSS just before loading the model). In one
process the second variant inherits what the first left behind; in fresh processes the figure
does not depend on the order. Last, the counted tensor memory (weights plus activations,
`Measurements.peak_tensor_mib`), which depends on the order in neither.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness.paths import REPO_ROOT
from harness.pipeline.fresh_process import run_variant_in_fresh_process
from harness.records.record import Measurements
from harness.records.store import read_record
from harness.specs.task import TaskSpec, load_task
from harness.specs.variant import load_variant

PAIR = ("tiny-qwen2-vl", "tiny-qwen2-vl-pruned")


def light_task(tokens: int) -> TaskSpec:
    task = load_task(REPO_ROOT / "tasks" / "rocov2_sample.yaml")
    generation = task.generation_kwargs.model_copy(update={"max_new_tokens": tokens})
    metrics = tuple(m for m in task.metric_list if m.metric == "rouge_l")
    return task.model_copy(update={"generation_kwargs": generation, "metric_list": metrics})


def both_in_one_process(
    task: TaskSpec, order: tuple[str, ...], results: Path, options: dict
) -> list[Measurements]:
    from harness.pipeline.runner import run_variant

    out = []
    for vid in order:
        variant = load_variant(REPO_ROOT / "variants" / f"{vid}.yaml")
        (outcome,) = run_variant(task, variant, results / vid, **options)
        out.append(read_record(outcome.record).measurements)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    task = light_task(args.tokens)
    options = {"seeds": [0], "limit": args.images, "device": "cpu", "progress": False,
               "carbon_country": "FRA"}  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="memory-order-"))
    context = multiprocessing.get_context("spawn")

    def show(method: str, order: tuple[str, ...], figures: list[Measurements]) -> None:
        for position, (vid, m) in enumerate(zip(order, figures, strict=True), 1):
            share = m.peak_rss_mib - (m.rss_baseline_mib or 0.0)
            tensors = m.peak_tensor_mib
            print(
                f"{method:<14} {vid:<22} ran {position} of 2: peak RSS {m.peak_rss_mib:7.1f} MiB,"
                f" variant {share:6.1f} MiB ({m.memory_method}), tensors "
                + (f"{tensors:.3f} MiB" if tensors is not None else "not counted"),
                flush=True,
            )

    for order in (PAIR, PAIR[::-1]):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            results = root / f"one-{order[0]}"
            show("one process", order, pool.submit(
                both_in_one_process, task, order, results, options
            ).result())  # fmt: skip
    for order in (PAIR, PAIR[::-1]):
        figures = []
        for vid in order:
            variant = load_variant(REPO_ROOT / "variants" / f"{vid}.yaml")
            results = root / f"fresh-{order[0]}" / vid
            (outcome,) = run_variant_in_fresh_process(task, variant, results, **options)
            figures.append(read_record(outcome.record).measurements)
        show("fresh process", order, figures)


if __name__ == "__main__":
    main()
