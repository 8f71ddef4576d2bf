"""Generation through the real path on tiny twins of all three architectures."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from harness.pipeline.generate import SeededSampler, generate_all, generate_batch, sample_seed
from harness.specs.task import GenerationKwargs

FAMILIES = ["qwen2_vl", "mllama", "llava"]
ARCHITECTURES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "mllama": "MllamaForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}
SHORT = GenerationKwargs(max_new_tokens=12)


@pytest.fixture(scope="module")
def evalset(sample_task):
    from harness.data.dataset import load_split

    return load_split(sample_task, limit=8)


def run(loaded, evalset, sample_task, *, seed=0, batch_size=4, items=None, gen=SHORT):
    return generate_all(
        loaded.model,
        loaded.processor,
        loaded.family,
        items if items is not None else evalset.items(),
        sample_task.doc_to_text,
        gen,
        seed,
        batch_size,
        sample_task.preprocessing.image,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_is_the_real_architecture(loaded_twins, family) -> None:
    loaded = loaded_twins[family]
    assert type(loaded.model).__name__ == ARCHITECTURES[family]
    assert loaded.family.name == family
    assert loaded.n_parameters > 100_000


@pytest.mark.parametrize("family", FAMILIES)
def test_generates_captions(loaded_twins, evalset, sample_task, family) -> None:
    preds = run(loaded_twins[family], evalset, sample_task)
    assert [p.id for p in preds] == evalset.ids
    assert all(1 <= p.new_tokens <= 12 for p in preds)
    assert sum(len(p.text) for p in preds) > 0
    assert len({p.text for p in preds}) > 1  # per-sample streams: not one caption for all


@pytest.mark.parametrize("family", FAMILIES)
def test_output_independent_of_batch_size_order_and_subset(
    loaded_twins, evalset, sample_task, family
) -> None:
    loaded = loaded_twins[family]
    by_4 = {p.id: p.text for p in run(loaded, evalset, sample_task, batch_size=4)}
    by_1 = {p.id: p.text for p in run(loaded, evalset, sample_task, batch_size=1)}
    assert by_1 == by_4
    reversed_subset = list(reversed(evalset.items()))[:5]
    sub = {p.id: p.text for p in run(loaded, evalset, sample_task, items=reversed_subset)}
    assert sub == {k: by_4[k] for k in sub}


def test_same_seed_same_output_other_seed_differs(loaded_twins, evalset, sample_task) -> None:
    loaded = loaded_twins["qwen2_vl"]
    a = [p.text for p in run(loaded, evalset, sample_task, seed=0)]
    b = [p.text for p in run(loaded, evalset, sample_task, seed=0)]
    c = [p.text for p in run(loaded, evalset, sample_task, seed=1)]
    assert a == b
    assert a != c


def test_shipped_generation_config_does_not_leak(loaded_twins, evalset, sample_task) -> None:
    loaded = loaded_twins["llava"]
    greedy = GenerationKwargs(do_sample=False, max_new_tokens=12)
    items = evalset.items()[:2]
    before = [p.text for p in run(loaded, evalset, sample_task, items=items, gen=greedy)]
    shipped = loaded.model.generation_config
    shipped.repetition_penalty, shipped.no_repeat_ngram_size = 5.0, 2
    try:
        after = [p.text for p in run(loaded, evalset, sample_task, items=items, gen=greedy)]
    finally:
        shipped.repetition_penalty, shipped.no_repeat_ngram_size = 1.0, 0
    assert after == before
    # Control: the same setting asked for by the task does change the output.
    asked = GenerationKwargs(do_sample=False, max_new_tokens=12, no_repeat_ngram_size=2)
    assert [p.text for p in run(loaded, evalset, sample_task, items=items, gen=asked)] != before


@pytest.mark.parametrize("family", FAMILIES)
def test_exactly_one_bos(loaded_twins, family) -> None:
    from harness.models.inputs import build_prompt

    processor = loaded_twins[family].processor
    text, add_special = build_prompt(processor, "Describe.")
    ids = processor.tokenizer(text, add_special_tokens=add_special)["input_ids"]
    bos = processor.tokenizer.bos_token_id
    if bos is None:
        assert family == "qwen2_vl"
    else:
        assert ids[0] == bos and ids.count(bos) == 1


def test_sampler_matches_softmax() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    gen = GenerationKwargs(temperature=0.7)
    expected = torch.softmax(logits[0] / 0.7, dim=-1)
    sampler = SeededSampler([123], gen, torch.device("cpu"))
    draws = Counter(int(sampler(None, logits).argmax()) for _ in range(4000))
    for token, p in enumerate(expected.tolist()):
        assert abs(draws[token] / 4000 - p) < 0.03


def test_sampler_top_k_and_top_p() -> None:
    logits = torch.tensor([[3.0, 2.9, 0.0, -5.0]])
    top1 = SeededSampler([1], GenerationKwargs(top_k=1), torch.device("cpu"))
    assert {int(top1(None, logits).argmax()) for _ in range(50)} == {0}
    nucleus = SeededSampler([1], GenerationKwargs(top_p=0.9), torch.device("cpu"))
    assert {int(nucleus(None, logits).argmax()) for _ in range(200)} == {0, 1}


def test_sample_seed_is_stable() -> None:
    # Pinned: changing the derivation would silently change every published output.
    assert sample_seed(0, "ROCOv2_2023_test_000001") == sample_seed(0, "ROCOv2_2023_test_000001")
    assert sample_seed(0, "a") != sample_seed(1, "a")
    assert sample_seed(0, "a") == 8617095791668180470


def test_generate_batch_respects_max_new_tokens(loaded_twins, evalset, sample_task) -> None:
    loaded = loaded_twins["mllama"]
    images = [load() for _, load in evalset.items()[:2]]
    preds = generate_batch(
        loaded.model,
        loaded.processor,
        loaded.family,
        evalset.ids[:2],
        images,
        sample_task.doc_to_text,
        GenerationKwargs(max_new_tokens=3),
        0,
        (224, 224),
    )
    assert all(p.new_tokens <= 3 for p in preds)
