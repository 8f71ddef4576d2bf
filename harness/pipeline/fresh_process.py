"""Run one variant's generation in a fresh process, so that its memory figures are its own.

A process's peak resident memory never goes down, and what one model leaves behind (allocator
caches, libraries it imported) stays in the process: variants run one after another in one
process inherit each other's memory. Each variant therefore runs in a new interpreter (the
`spawn` start method: nothing is inherited from the parent's memory) that first imports every
library a variant may need, so that all variants start from the same runtime. The parent builds
the variant first (training and pruning stay out of the measured process) and gets the run's
outcomes back; the records name the method (`Measurements.memory_method`).
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from harness.pipeline.runner import Outcome, spec_reuse_problem
from harness.records.layout import RECORD_FILE, seed_dir
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec

FRESH = "fresh process"
# Imported by every worker before the baseline is taken, used or not: the runtime is then the
# same for every variant, and a technique's library does not count as its memory.
RUNTIME = ("torch", "transformers", "peft", "bitsandbytes", "codecarbon")


def warm_runtime() -> None:
    import warnings

    from harness.pipeline.runner import quiet_libraries

    quiet_libraries()
    for name in RUNTIME:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except ImportError:
            continue
    warm_kernels()


def warm_kernels() -> None:
    """One small call of each kind of CPU kernel a vision-language model runs. Their first call
    sets up the math libraries' buffers and thread pools (about 17 MiB resident): runtime, the
    same for every variant, so it belongs before the baseline, not in a variant's memory."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        x = torch.randn(2, 2, 8, 32)
        F.scaled_dot_product_attention(x, x, x, is_causal=True)
        F.linear(torch.randn(3, 32), torch.randn(64, 32))
        F.conv2d(torch.randn(1, 3, 28, 28), torch.randn(8, 3, 14, 14), stride=14)
        F.layer_norm(F.gelu(torch.randn(4, 32)), (32,))
        torch.multinomial(torch.softmax(torch.randn(2, 50), dim=-1), 1)


def _worker(
    task: TaskSpec, variant: VariantSpec, results: Path, options: dict[str, Any]
) -> list[Outcome]:
    from harness.pipeline.runner import run_variant

    warm_runtime()
    return run_variant(task, variant, results, memory_method=FRESH, **options)


def all_reusable(
    task: TaskSpec,
    variant: VariantSpec,
    results: Path,
    seeds: Sequence[int],
    fixed_new_tokens: int | None = None,
) -> bool:
    """Whether every seed has a current record as far as the specs tell (no data loaded)."""
    return all(
        spec_reuse_problem(
            seed_dir(results, task.task, variant.id, s, fixed_new_tokens) / RECORD_FILE,
            task,
            variant,
            fixed_new_tokens,
        )
        is None
        for s in seeds
    )


def run_variant_in_fresh_process(
    task: TaskSpec, variant: VariantSpec, results: Path, **options: Any
) -> list[Outcome]:
    """`harness.pipeline.runner.run_variant` in a new interpreter (same arguments); its
    outcomes.

    Nothing to compute (every record current, no --force): run here, which only reuses.
    """
    from harness.pipeline.runner import quiet_libraries, run_variant

    quiet_libraries()  # the build below runs here, in the parent
    seeds = list(options.get("seeds") or task.seeds)
    fixed = options.get("fixed_new_tokens")
    if not options.get("force") and all_reusable(task, variant, results, seeds, fixed):
        return run_variant(task, variant, results, **options)
    mode = options.get("mode")
    if mode is None or not mode.random_weights:
        from harness.models.build import ensure_built

        kwargs = {k: options[k] for k in ("device", "progress", "log") if k in options}
        ensure_built(variant, **kwargs)
    # A log callable of the parent cannot cross into the worker: the worker prints its own.
    options = {k: v for k, v in options.items() if k != "log"}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_worker, task, variant, Path(results), options).result()
