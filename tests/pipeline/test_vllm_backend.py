"""The vLLM backend against transformers on the embedded twins (head size 32, Hub weight names).

The engine tests need the vLLM environment (`make install-vllm`; CI installs it) and are skipped
without it. One worker per family is started for the module (a start takes a minute or two).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.paths import REPO_ROOT
from harness.pipeline.backends import vllm
from harness.pipeline.generate import generate_all, sample_seed
from harness.specs.task import GenerationKwargs
from harness.specs.variant import VariantSpec, load_variant

needs_vllm = pytest.mark.skipif(
    not vllm.available(),
    reason=f"vLLM environment absent ({vllm.DEFAULT_PYTHON}): run `make install-vllm` "
    f"or set ${vllm.PYTHON_ENV} (CI installs it)",
)
FAMILIES = ["llava", "qwen2_vl"]
GREEDY = GenerationKwargs(do_sample=False, max_new_tokens=16)
SAMPLED = GenerationKwargs(do_sample=True, temperature=0.7, max_new_tokens=16)


def twin_variant(family: str) -> VariantSpec:
    """The shipped manifest of the family's embedded twin."""
    return load_variant(REPO_ROOT / "variants" / f"tiny-{family.replace('_', '-')}.yaml")


@pytest.fixture(scope="module")
def evalset(sample_task):
    from harness.data.dataset import load_split

    return load_split(sample_task, limit=4)


@pytest.fixture(scope="module")
def served():
    """family -> VllmLoaded with a running worker (closed at the end of the module)."""
    started: dict[str, vllm.VllmLoaded] = {}

    def get(family: str) -> vllm.VllmLoaded:
        if family not in started:
            started[family] = vllm.load_vllm(
                twin_variant(family),
                device="cpu",
                batch_size=4,
                max_new_tokens=16,
                gen=GREEDY,
                image_size=(224, 224),
                progress=False,
            )
        return started[family]

    yield get
    for loaded in started.values():
        assert loaded.worker is not None
        loaded.worker.close()


def hf_generate(family, evalset, task, gen, seed=0, batch_size=4):
    from harness.models.load import load_variant

    loaded = load_variant(twin_variant(family), device="cpu", progress=False)
    return generate_all(
        loaded.model,
        loaded.processor,
        loaded.family,
        evalset.items(),
        task.doc_to_text,
        gen,
        seed,
        batch_size,
        task.preprocessing.image,
    )


def vllm_generate(loaded, items, task, gen, seed=0, batch_size=4):
    return vllm.generate_all(
        loaded, items, task.doc_to_text, gen, seed, batch_size, task.preprocessing.image
    )


# ------------------------------------------------------------------------------ with vLLM


@needs_vllm
@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_captions_match_transformers(served, evalset, sample_task, family) -> None:
    ours = vllm_generate(served(family), evalset.items(), sample_task, GREEDY)
    theirs = hf_generate(family, evalset, sample_task, GREEDY)
    assert [p.id for p in ours] == [p.id for p in theirs] == evalset.ids
    assert [(p.text, p.new_tokens) for p in ours] == [(p.text, p.new_tokens) for p in theirs]
    assert all(p.new_tokens >= 1 for p in ours) and any(p.text for p in ours)


@needs_vllm
@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_tokens_match_the_transformers_processor(
    served, evalset, sample_task, family, tmp_path
) -> None:
    """Same chat template, image tokens and special tokens as the transformers backend."""
    from harness.models.inputs import build_prompt, preprocess_image
    from harness.pipeline.generate import batch_inputs

    loaded = served(family)
    sample_id, load = evalset.items()[0]
    image = preprocess_image(load(), sample_task.preprocessing.image)
    text, add_special = build_prompt(loaded.processor, sample_task.doc_to_text)

    class OnCpu:  # batch_inputs reads only the device and dtype of the model
        device, dtype = "cpu", torch.float32

    hf_ids = batch_inputs(
        OnCpu, loaded.processor, loaded.family, [image], sample_task.doc_to_text, (224, 224)
    )["input_ids"][0].tolist()
    path = tmp_path / "image.png"
    image.save(path)
    reply = loaded.worker.request(
        {
            "op": "generate",
            "requests": [
                {
                    "id": sample_id,
                    "prompt": text,
                    "add_special_tokens": add_special,
                    "image": str(path),
                    "seed": 1,
                }
            ],
            "sampling": vllm.sampling_params(GREEDY, loaded.eos, 1),
        }
    )
    assert reply["outputs"][0]["prompt_token_ids"] == hf_ids


@needs_vllm
@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_sampling_is_batch_invariant(served, evalset, sample_task, family) -> None:
    """The same request alone, in a batch of four and in the reversed batch: the same tokens."""
    loaded = served(family)
    items = evalset.items()
    batch = vllm_generate(loaded, items, sample_task, SAMPLED, seed=3)
    alone = [vllm_generate(loaded, [it], sample_task, SAMPLED, seed=3)[0] for it in items]
    reverse = vllm_generate(loaded, items[::-1], sample_task, SAMPLED, seed=3)[::-1]
    key = [(p.id, p.text, p.new_tokens, p.sample_seed) for p in batch]
    assert key == [(p.id, p.text, p.new_tokens, p.sample_seed) for p in alone]
    assert key == [(p.id, p.text, p.new_tokens, p.sample_seed) for p in reverse]
    assert [p.sample_seed for p in batch] == [sample_seed(3, i) for i in evalset.ids]
    # The twins' sharpened logits make sampling a real choice: not greedy, and seed-dependent.
    greedy = vllm_generate(loaded, items, sample_task, GREEDY)
    other_seed = vllm_generate(loaded, items, sample_task, SAMPLED, seed=4)
    assert [p.text for p in batch] != [p.text for p in greedy]
    assert [p.text for p in batch] != [p.text for p in other_seed]


@needs_vllm
def test_fixed_length_mode_gives_exactly_n_tokens(served, evalset, sample_task) -> None:
    preds = vllm.generate_all(
        served("llava"), evalset.items(), sample_task.doc_to_text, SAMPLED, 0, 4,
        sample_task.preprocessing.image, fixed_new_tokens=9,
    )  # fmt: skip
    assert [p.new_tokens for p in preds] == [9] * len(preds)


@needs_vllm
def test_run_writes_a_vllm_record_and_a_marked_row(tmp_path: Path, repo_root: Path) -> None:
    """The CLI end to end on the shipped embedded twin, beside a transformers run of the same
    seed: a record in seed-0-vllm/ with the engine's version and settings, and a leaderboard row
    of its own marked vLLM that the record checks accept (not a duplicate of seed-0/). A batch
    of 16 LLaVA prompts (~280 tokens each) is more than vLLM's default CPU step budget: it must
    be prefilled whole, since a partial prefill rewinds a CPU generator, which fails."""
    results, site = tmp_path / "results", tmp_path / "site"
    for backend in ("hf", "vllm"):
        cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "rocov2_sample", "--variant",
               "tiny-llava", "--backend", backend, "--seeds", "0", "--limit", "16",
               "--batch-size", "16", "--results", str(results), "--no-progress"]  # fmt: skip
        done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    folder = results / "rocov2_sample" / "tiny-llava" / "seed-0-vllm"
    record = json.loads((folder / "record.json").read_text())
    assert record["backend"]["name"] == "vllm"
    assert record["backend"]["version"]
    assert record["backend"]["settings"]["engine_args"]["max_num_seqs"] == 16
    m = record["measurements"]
    assert m["n_images"] == 16 and m["ttft_p50_ms"] > 0 and m["decode_ms_per_token"] > 0
    assert m["peak_rss_mib"] > 200  # the worker holds the engine: counted with this process

    from leaderboard.render import render_site

    index = render_site(results, site).read_text()
    assert f"vLLM {record['backend']['version']}" in index
    assert index.count('data-status-badge="checked"') == 2  # both rows
    assert 'data-status-badge="rejected"' not in index
    (page,) = (site / "v").glob("*tiny-llava--vllm.html")
    assert "--backend vllm" in page.read_text()


# -------------------------------------------------------------------- without vLLM running


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        ("tiny-mllama", "Mllama"),
        ("tiny-qwen2-vl-qlora", "bitsandbytes 4-bit"),
        ("tiny-qwen2-vl-pruned", "pruned"),
        ("tiny-llava-kd-qlora-pruned", "pruned"),  # merged before pruning: not 4-bit
    ],
)
def test_unserved_variants_fail_before_any_work_naming_the_hf_backend(
    tmp_path, repo_root, variant, named
) -> None:
    """With any interpreter standing in for the environment: the check comes before the
    worker, the data and any build, in one line."""
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "rocov2_sample",
           "--variant", variant, "--backend", "vllm", "--results", str(results)]  # fmt: skip
    env = {**__import__("os").environ, vllm.PYTHON_ENV: sys.executable,
           "ROCOBENCH_CACHE": str(tmp_path / "cache")}  # fmt: skip
    done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, env=env)
    assert done.returncode != 0
    (line,) = [x for x in done.stderr.splitlines() if named in x]
    assert "--backend hf" in line
    assert not results.exists() and not (tmp_path / "cache" / "builds").exists()


def test_narrow_heads_and_unsupported_settings_are_named() -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        "llava", text_config={"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4}
    )
    common = {"quantized": False, "pruned": False, "adapter": False, "gen": GREEDY}
    with pytest.raises(vllm.VllmError, match=r"head size 16.*--backend hf"):
        vllm.check_supported("v", config, "llava", device="cpu", **common)
    vllm.check_supported("v", config, "llava", device="cuda", **common)  # GPU kernels take 16
    with pytest.raises(vllm.VllmError, match="4-bit"):
        vllm.check_supported("v", config, "llava", device="cuda", **common | {"quantized": True})
    with pytest.raises(vllm.VllmError, match="no_repeat_ngram_size"):
        gen = GenerationKwargs(no_repeat_ngram_size=3)
        vllm.check_supported("v", config, "llava", device="cuda", **common | {"gen": gen})


def test_missing_environment_is_one_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(vllm.PYTHON_ENV, str(tmp_path / "absent" / "python"))
    assert not vllm.available()
    with pytest.raises(vllm.VllmError, match="make install-vllm"):
        vllm.vllm_python()


def test_cpu_steps_prefill_every_prompt_of_a_batch_whole() -> None:
    common = {"dtype": "float32", "max_new_tokens": 128, "seed": 0}
    cpu = vllm.engine_args(device="cpu", batch_size=16, **common)
    assert cpu["max_num_batched_tokens"] == 16 * cpu["max_model_len"] >= 16 * 282
    assert "max_num_batched_tokens" not in vllm.engine_args(device="cuda", batch_size=16, **common)


def test_sampling_settings_pin_every_parameter() -> None:
    params = vllm.sampling_params(SAMPLED, [2, 7], None)
    assert params["temperature"] == 0.7 and params["top_k"] == 0 and params["top_p"] == 1.0
    assert params["stop_token_ids"] == [2, 7] and not params["ignore_eos"]
    assert params["max_tokens"] == 16 and params["min_tokens"] == 0
    assert vllm.sampling_params(GREEDY, [2], None)["temperature"] == 0.0
    fixed = vllm.sampling_params(SAMPLED, [2], 32)
    assert fixed["max_tokens"] == fixed["min_tokens"] == 32 and fixed["ignore_eos"]


def test_backends_are_distinct_runs_on_the_page_and_in_the_gate(tmp_path: Path) -> None:
    """A vLLM record of the same (variant, seed) is its own row, never averaged with the
    transformers one, and stays out of the regression gate's means."""
    from fixtures.site_records import make_record

    from harness.analysis.regress import collect
    from harness.records.layout import seed_dir
    from harness.records.record import BackendRef
    from harness.records.store import write_record
    from leaderboard.view import load_site

    results = tmp_path / "results"
    hf = make_record("qwen-base", 0, {"rouge_l": 0.10})
    ours = make_record("qwen-base", 0, {"rouge_l": 0.30}).model_copy(
        update={"backend": BackendRef(name="vllm", version="0.32.0", settings={"x": 1})}
    )
    for r, backend in ((hf, "hf"), (ours, "vllm")):
        write_record(seed_dir(results, r.task, r.variant, 0, None, backend=backend), r)
    assert (results / hf.task / "qwen-base" / "seed-0-vllm" / "record.json").exists()

    (table,) = load_site(results).tables
    rows = {row.backend: row for row in table.rows}
    assert set(rows) == {"hf", "vllm"}
    assert rows["vllm"].backend_label == "vLLM 0.32.0" and rows["hf"].backend_label is None
    assert rows["vllm"].cells["rouge_l"].mean == 0.30 and rows["hf"].cells["rouge_l"].mean == 0.10
    assert rows["vllm"].anchor != rows["hf"].anchor
    assert collect(results)[hf.task]["qwen-base"]["rouge_l"].mean == 0.10


@needs_vllm
def test_backend_benchmark_prints_the_ratio_on_a_twin(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "benchmarks/generation_backends.py", "--tiny", "--families", "llava",
           "--images", "2", "--tokens", "3", "--batch-size", "2", "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ratio vLLM / transformers (images/s)" in done.stdout
    (result,) = json.loads(out.read_text())
    assert [r["backend"].split()[0] for r in result["rows"]] == ["transformers", "vLLM"]
    assert all(r["tokens_per_s"] == pytest.approx(3 * r["images_per_s"]) for r in result["rows"])
    assert result["ratio_images_per_s"] > 0
