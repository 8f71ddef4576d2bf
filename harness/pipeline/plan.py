"""What a suite run would do, worked out without loading a model or the data: `--dry-run`.

For each variant: where its base comes from (embedded twin, local folder, the Hugging Face cache or
a download), whether its technique chain is already built, and for each seed whether a finished
record of the same task spec and manifest exists. The data check of reuse (same evaluated ids)
needs the dataset, so it happens when the run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.pipeline.runner import spec_reuse_problem
from harness.records.layout import RECORD_FILE, seed_dir
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec


@dataclass(frozen=True)
class PlannedSeed:
    seed: int
    folder: Path
    problem: str | None  # None: a finished record will be reused

    @property
    def status(self) -> str:
        return "reuse" if self.problem is None else "run"


@dataclass(frozen=True)
class PlannedVariant:
    variant: VariantSpec
    base: str
    base_status: str
    build_status: str
    seeds: tuple[PlannedSeed, ...]


def base_status(variant: VariantSpec) -> tuple[str, str]:
    """(the base's name, where it will come from) — nothing is built or downloaded."""
    base = variant.base
    if base.twin is not None:
        from harness.models.twins import twin_dir

        built = (twin_dir(base.twin) / "config.json").exists()
        return f"twin:{base.twin}", "embedded twin, " + ("built" if built else "built on first use")
    assert base.model is not None
    if base.is_local:
        return base.model, "local folder"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(base.model, "config.json", revision=base.revision)
    where = "in the HF cache" if isinstance(cached, str) else "download from the Hub"
    return f"{base.model}@{(base.revision or 'main')[:12]}", where


def build_status(variant: VariantSpec) -> str:
    if not variant.techniques:
        return "no techniques"
    from harness.models.build import BUILD_FILE, build_folder, build_key

    chain = " → ".join(t.kind for t in variant.techniques)
    key = build_key(variant)
    done = (build_folder(variant, key) / BUILD_FILE).exists()
    return f"{chain}: " + (f"built ({key[:16]})" if done else "to build")


def plan(
    task: TaskSpec,
    variants: Sequence[VariantSpec],
    seeds: Sequence[int],
    results: Path,
    *,
    fixed_new_tokens: int | None = None,
    force: bool = False,
    backend: str = "hf",
) -> list[PlannedVariant]:
    planned = []
    for variant in variants:
        runs = []
        for seed in seeds:
            folder = seed_dir(
                results, task.task, variant.id, seed, fixed_new_tokens, backend=backend
            )
            problem = (
                "--force was given"
                if force
                else spec_reuse_problem(
                    folder / RECORD_FILE, task, variant, fixed_new_tokens, backend
                )
            )
            runs.append(PlannedSeed(seed, folder, problem))
        name, where = base_status(variant)
        planned.append(PlannedVariant(variant, name, where, build_status(variant), tuple(runs)))
    return planned


def format_plan(task: TaskSpec, planned: Sequence[PlannedVariant]) -> str:
    todo = sum(s.problem is not None for p in planned for s in p.seeds)
    total = sum(len(p.seeds) for p in planned)
    lines = [f"task {task.task} ({task.dataset_path}, split {task.test_split})"]
    for p in planned:
        lines.append(f"  {p.variant.id}")
        lines.append(f"    base   {p.base} ({p.base_status})")
        lines.append(f"    build  {p.build_status}")
        for s in p.seeds:
            why = "" if s.problem is None else f" ({s.problem})"
            lines.append(f"    seed {s.seed} {s.status}{why}  → {s.folder}")
    lines.append(f"{todo} of {total} runs to do, {total - todo} finished")
    return "\n".join(lines)
