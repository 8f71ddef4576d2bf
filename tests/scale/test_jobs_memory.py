"""GPU memory floors of a dispatch plan: each phase of a chain adds up what it must hold at once,
a flavour whose GPU holds less is named in a warning with the cheapest one that does, and the
language-model sizes the floors use are those of the published configs."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from harness.cli import main
from harness.paths import REPO_ROOT
from harness.scale import jobs
from harness.scale.jobs_cost import BASES, load_prices
from harness.scale.jobs_memory import (
    LANGUAGE_MODEL_PARAMS_B,
    cheapest_fit,
    gpu_gb,
    phase_floors,
)
from harness.specs.task import load_task
from harness.specs.variant import load_variant

TASK = load_task(REPO_ROOT / "tasks" / "rocov2_paper327.yaml")
SOURCE = jobs.Source("https://git.test/r.git", "c" * 40)


def floors(variant_id: str) -> dict[str, float]:
    found = phase_floors(load_variant(REPO_ROOT / "variants" / f"{variant_id}.yaml"))
    assert found is not None
    return {f.phase: f.gb for f in found}


@pytest.mark.parametrize("model_id", sorted(LANGUAGE_MODEL_PARAMS_B))
def test_language_model_sizes_are_those_of_the_published_configs(model_id: str) -> None:
    from transformers import AutoModelForImageTextToText

    import harness.models.random_weights as rw
    from harness.models.twins import build_twin

    family = rw.family_for_model_type(rw.published_config(model_id)["model_type"])
    config = rw.random_config(model_id, build_twin(family.name))
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    named = dict(model.named_parameters())
    language = sum(p.numel() for n, p in named.items() if n.startswith(family.language_model))
    assert LANGUAGE_MODEL_PARAMS_B[model_id] == pytest.approx(language / 1e9, abs=5e-4)
    assert BASES[model_id][0] == pytest.approx(
        sum(p.numel() for p in named.values()) / 1e9, abs=5e-3
    )


def test_each_technique_changes_the_floors_as_it_changes_the_model() -> None:
    base = floors("llava-1.5-7b")
    assert base == {"generation": pytest.approx(7.06 * 2)}  # 16-bit weights
    # QLoRA trains and generates on a 4-bit base: a quarter of the 16-bit weights.
    qlora = floors("qwen2-vl-2b-qlora")
    assert (
        qlora["qlora"]
        == qlora["generation"]
        == pytest.approx(floors("qwen2-vl-2b")["generation"] / 4)
    )
    # Pruning holds the whole model, then leaves a smaller one.
    pruned = floors("llama-3.2-11b-vision-pruned")
    assert pruned["prune"] == floors("llama-3.2-11b-vision")["generation"] > pruned["generation"]
    # Distillation holds the 16-bit student, the language model's training state and the 4-bit
    # 13B teacher: far more than generating with the student.
    kd = floors("llava-1.5-7b-kd")
    assert kd["distill"] > 4 * kd["generation"]
    assert kd["generation"] == base["generation"]
    # After QLoRA (not merged), pruning works on the merged dense model and leaves it dense.
    chain = floors("llava-1.5-7b-kd-qlora-pruned")
    assert chain["qlora"] == floors("llava-1.5-7b-kd-qlora")["generation"]
    assert chain["prune"] == base["generation"] > chain["generation"] > chain["qlora"]


def test_twins_and_unknown_bases_have_no_floor() -> None:
    assert phase_floors(load_variant(REPO_ROOT / "variants" / "tiny-llava.yaml")) is None
    spec = load_variant(REPO_ROOT / "variants" / "qwen2-vl-2b.yaml")
    other = spec.model_copy(update={"base": spec.base.model_copy(update={"model": "org/other"})})
    assert phase_floors(other) is None


def test_one_gpu_memory_of_a_flavour() -> None:
    prices = load_prices(None, offline=True)
    assert gpu_gb(prices.flavor("a100x4")) == gpu_gb(prices.flavor("a100-large")) == 80
    assert gpu_gb(prices.flavor("l4x1")) == 24
    assert gpu_gb(prices.flavor("cpu-basic")) is None
    odd = dataclasses.replace(prices.flavor("l4x1"), vram="lots")
    assert gpu_gb(odd) is None  # an unreadable size gives no floor check, not a crash


def test_a_flavour_too_small_is_named_with_the_cheapest_that_holds_the_floor() -> None:
    prices = load_prices(None, offline=True)
    variants = [load_variant(REPO_ROOT / "variants" / f"{v}.yaml") for v in
                ("qwen2-vl-2b", "llama-3.2-11b-vision", "llava-1.5-7b-kd")]  # fmt: skip

    def plan(flavor: str) -> jobs.DispatchPlan:
        return jobs.plan_dispatch(
            TASK, variants, [0], dataset="x/y", flavor_name=flavor, prices=prices,
            held=set(), holdings="", source=SOURCE, label="lbl",
        )  # fmt: skip

    small = plan("t4-small")  # one 16 GB GPU
    warned = {w.split(":")[0]: w for w in small.warnings if "GPU memory" in w}
    assert sorted(warned) == ["llama-3.2-11b-vision", "llava-1.5-7b-kd"]  # Qwen2-VL-2B fits
    need = max(floors("llava-1.5-7b-kd").values())
    fit = cheapest_fit(prices, need)
    assert fit is not None and (gpu_gb(fit) or 0) >= need
    cheaper = [f for f in prices.flavors.values() if f.usd_per_hour < fit.usd_per_hour]
    assert all((gpu_gb(f) or 0) < need for f in cheaper)
    assert f"distill needs at least {need:.1f} GB" in warned["llava-1.5-7b-kd"]
    assert f"the cheapest flavour that holds it: {fit.name}" in warned["llava-1.5-7b-kd"]
    assert [j.memory is not None for j in small.jobs] == [True, True, True]
    # On the suggested flavour nothing is flagged.
    assert not [w for w in plan(fit.name).warnings if "GPU memory" in w]


def test_the_dry_run_prints_each_jobs_floors(capsys: pytest.CaptureFixture[str]) -> None:
    source = ["--source-repo", "https://git.test/r.git", "--revision", "c" * 40]
    args = ["dispatch", "--suite", "paper", "--flavor", "l4x1", "--results-dataset", "x/y"]
    assert main([*args, "--dry-run", *source]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^  memory   (.*)$", out, re.M)
    assert len(lines) == 9 and all(
        line.endswith("one L4 holds 24 GB (floors: weights and training state only)")
        for line in lines
    )
    assert len(re.findall(r"^warning: llava-1\.5-7b-kd\S*: distill needs at least", out, re.M)) == 3


def test_a_variant_as_teacher_counts_its_own_weights_as_loaded() -> None:
    spec = load_variant(REPO_ROOT / "variants" / "llava-1.5-7b-kd.yaml")
    distill = spec.techniques[0]

    def teacher_gb(**teacher: object) -> float:
        ref = distill.teacher.model_copy(update={"model": None, "revision": None, **teacher})
        chain = (distill.model_copy(update={"teacher": ref}),)
        found = phase_floors(spec.model_copy(update={"techniques": chain}))
        assert found is not None
        return dict(found[0].parts)["teacher"]

    dense = floors("llava-1.5-7b")["generation"]
    assert teacher_gb(variant="llava-1.5-7b", load_in_4bit=False) == pytest.approx(dense)
    assert teacher_gb(variant="llava-1.5-7b", load_in_4bit=True) == pytest.approx(dense / 4)
    # A QLoRA variant is already 4-bit: its floor is its own 4-bit weights, at most.
    quantized = floors("llava-1.5-7b-kd-qlora")["generation"]
    assert teacher_gb(variant="llava-1.5-7b-kd-qlora", load_in_4bit=False) == pytest.approx(
        quantized
    )


def test_a_merged_adapter_leaves_dense_weights_for_the_estimate_and_the_floor() -> None:
    from harness.scale.jobs_cost import estimate_job, quantized_at_generation

    spec = load_variant(REPO_ROOT / "variants" / "qwen2-vl-2b-qlora.yaml")
    merged = spec.model_copy(
        update={"techniques": (spec.techniques[0].model_copy(update={"merge": True}),)}
    )
    assert quantized_at_generation(spec) and not quantized_at_generation(merged)
    prices = load_prices(None, offline=True)
    flavor = prices.flavor("a100-large")
    adapter, dense = (estimate_job(TASK, v, 1, flavor, prices.accelerators) for v in (spec, merged))
    assert adapter is not None and "at 0.55 B/param" in adapter.basis
    assert dense is not None and "at 2 B/param" in dense.basis
    found = phase_floors(merged)
    assert found is not None and found[-1].gb == pytest.approx(floors("qwen2-vl-2b")["generation"])
