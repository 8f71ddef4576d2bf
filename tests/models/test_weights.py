"""What a variant really is: its weights as loaded (quantisation, storage, size the same way for
every model), every package that shaped its numbers, and alt text that says what an image is."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.site_records import bundled_dataset_ref, make_record, write_all

from harness.models.weights import weight_facts
from harness.records.provenance import PACKAGES, package_versions
from leaderboard import render_site


def test_the_packages_that_shape_the_numbers_are_recorded() -> None:
    for name in ("peft", "bitsandbytes", "codecarbon", "transformers", "torch", "safetensors"):
        assert name in PACKAGES
        assert name in package_versions()  # all installed with the project


def test_weight_facts_of_a_plain_and_a_4bit_model() -> None:
    torch = pytest.importorskip("torch")
    bnb = pytest.importorskip("bitsandbytes")
    plain = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)).to(torch.bfloat16)
    facts = weight_facts(plain)
    assert facts.bytes_by_storage == {"bfloat16": 2 * (64 * 64 + 64) * 2}
    assert facts.quantization is None

    layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4")
    layer.load_state_dict(torch.nn.Linear(64, 64).state_dict())
    layer = layer.to("cpu")  # quantises the weights
    model = torch.nn.Sequential(layer, torch.nn.Linear(64, 64))
    facts = weight_facts(model)
    assert facts.quantization == "bitsandbytes nf4, compute float32, 1 linear layer"
    packed = facts.bytes_by_storage["nf4 (4-bit)"]
    assert 64 * 64 // 2 <= packed < 64 * 64  # two weights a byte, plus block scales
    assert facts.total_bytes < weight_facts(torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
    )).total_bytes  # fmt: skip


def test_variant_page_shows_weights_as_loaded_and_synthetic_alt_text(
    tmp_path: Path, repo_root: Path
) -> None:
    dataset = bundled_dataset_ref(repo_root)
    records = [
        make_record("qwen-qlora", s, {"bleu4": 0.01 + s / 1000}, dataset=dataset) for s in (0, 1)
    ]
    records = [
        r.model_copy(
            update={
                "model": r.model.model_copy(
                    update={
                        "weight_storage": {"float32": 1_000_000, "nf4 (4-bit)": 300_000},
                        "quantization": "bitsandbytes nf4, compute float32, 14 linear layers",
                        "size_bytes": 1_300_000,
                    }
                )
            }
        )
        for r in records
    ]
    write_all(tmp_path / "results", records, samples=True)
    index = render_site(tmp_path / "results", tmp_path / "site")
    html = (index.parent / "v" / "roco-caption--qwen-qlora.html").read_text(encoding="utf-8")
    assert "bitsandbytes nf4, compute float32, 14 linear layers" in html
    assert "<code>nf4 (4-bit)</code> 293 KiB" in html
    assert "Synthetic picture (not a radiograph) drawn for the caption: CT scan" in html
