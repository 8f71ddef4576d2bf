"""Where a run's files live:
`<results>/<task>/<variant>/seed-<n>[-fixed-<N>][-random][-<backend>]/`."""

from __future__ import annotations

from pathlib import Path

RECORD_FILE = "record.json"
SAMPLES_FILE = "samples.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILES = (PREDICTIONS_FILE, SAMPLES_FILE, RECORD_FILE)


def run_dir(results: Path, task: str, variant: str, seed: int) -> Path:
    return results / task / variant / f"seed-{seed}"


def seed_dir(
    results: Path,
    task: str,
    variant: str,
    seed: int,
    fixed: int | None,
    random: bool = False,
    backend: str = "hf",
) -> Path:
    """Where a run's files go; fixed-length, random-weight and other-backend runs beside, never
    over, the natural-length transformers ones with real weights."""
    out = run_dir(results, task, variant, seed)
    name = out.name + ("" if fixed is None else f"-fixed-{fixed}") + ("-random" if random else "")
    return out.with_name(name + ("" if backend == "hf" else f"-{backend}"))
