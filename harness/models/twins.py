"""Tiny random-weight twins of the real architectures, saved as ordinary model folders.

A twin has the real model class, processor class, chat template and special-token layout, with
small dimensions, a byte-level BPE tokenizer trained on the bundled captions and weights drawn
from a fixed seed. It is written with `save_pretrained`, so the harness loads it through exactly
the `from_pretrained` path a Hub id takes. Built once per recipe and cached by its hash.

Both backends serve the same twins: heads of size 32 (`harness.models.families`; vLLM's CPU
kernels take no narrower), weights under the Hub checkpoints' names (vLLM's loader reads only
those) and sharpened logits (`LOGIT_SCALE`).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from harness.models.families import FAMILIES, Family
from harness.paths import REPO_ROOT, cache_dir
from harness.records.provenance import installed_versions
from harness.records.store import atomic_folder

TOKENIZER_CORPUS = (
    REPO_ROOT / "tasks/data/rocov2_sample/source/rocov2_test_sample/test_captions_first177.csv"
)
TOKENIZER_VOCAB = 1024  # before special tokens; the embedding is padded to a multiple of 64

# The final norm's weights are multiplied by this. Random weights give near-uniform logits (std
# about 0.16): sampling at the task's temperature 0.7 drew from ~1,000 equally likely tokens. At
# 15 the next-token distribution is worth 11-24 tokens (exp of its entropy, median), so a seed
# makes real choices. At 25 (3-5 tokens) the untrained twins repeat themselves into ROUGE-L
# scores too low for the regression gate to tell from empty captions, and the trained twins
# write longer captions (a slower `make bench`); QLoRA still beats its base at both.
LOGIT_SCALE = 15.0


def _corpus() -> list[str]:
    with TOKENIZER_CORPUS.open(encoding="utf-8", newline="") as fh:
        return [row["Caption"] for row in csv.DictReader(fh)]


def _train_tokenizer(family: Family) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        special_tokens=list(family.special_tokens),  # ids 0..n-1, in recipe order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if family.bos is not None:
        # Llama-style tokenizers prepend BOS themselves (the harness avoids doubling it).
        bos_id = tok.token_to_id(family.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A $B",
            special_tokens=[(family.bos, bos_id)],
        )
    return tok


def _sharpen(model: Any, family: Family, scale: float) -> None:
    """Scale the language model's final norm, and with it every logit (no output layer of the
    twins has a bias)."""
    import torch

    with torch.no_grad():
        model.get_submodule(f"{family.language_model}.norm").weight.mul_(scale)


def _to_hub_layout(folder: Path) -> None:
    """Rename saved weights to the Hub checkpoints' names where transformers 5 writes others.

    LLaVA's vision tower is saved as `vision_tower.embeddings…`; llava-hf checkpoints (and vLLM's
    loader) say `vision_tower.vision_model.embeddings…`. transformers loads both. Sharded
    folders are renamed shard by shard, with their index.
    """
    from safetensors.torch import load_file, save_file

    def hub(key: str) -> str:
        if key.startswith("vision_tower.") and not key.startswith("vision_tower.vision_model."):
            return "vision_tower.vision_model." + key.removeprefix("vision_tower.")
        return key

    for path in sorted(folder.glob("*.safetensors")):
        tensors = load_file(path)
        if any(hub(k) != k for k in tensors):
            save_file({hub(k): v for k, v in tensors.items()}, path, metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {hub(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2) + "\n")


def hub_layout_copy(folder: Path, out: Path) -> Path:
    """A copy of a model folder with its weights under the Hub checkpoints' names (for vLLM)."""
    import shutil

    if (out / "config.json").exists():
        return out
    with atomic_folder(out) as tmp:
        for item in folder.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        _to_hub_layout(tmp)
    return out


def twin_recipe(family: Family, seed: int) -> dict[str, Any]:
    ids = {t: i for i, t in enumerate(family.special_tokens)}
    return {
        "family": family.name,
        "seed": seed,
        "special_tokens": list(family.special_tokens),
        "chat_template": family.chat_template,
        "config": family.tiny_config(ids, 0),
        "logit_scale": LOGIT_SCALE,
        "weight_names": "hub",
        "corpus_sha256": hashlib.sha256(TOKENIZER_CORPUS.read_bytes()).hexdigest(),
        "vocab": TOKENIZER_VOCAB,
        "versions": list(installed_versions("transformers", "tokenizers", "torch").values()),
        "format": 2,
    }


def twin_dir(family_name: str, seed: int = 0) -> Path:
    family = FAMILIES.get(family_name)
    blob = json.dumps(twin_recipe(family, seed), sort_keys=True).encode()
    name = f"{family.name}-s{seed}-{hashlib.sha256(blob).hexdigest()[:12]}"
    return cache_dir() / "twins" / name


def build_twin(family_name: str, seed: int = 0) -> Path:
    """Return the twin's model folder, building it first if this recipe was never built."""
    out = twin_dir(family_name, seed)
    if (out / "config.json").exists():
        return out
    from harness.spans import span

    with span("twin creation", family_name):
        return _build_twin(family_name, seed, out)


def _build_twin(family_name: str, seed: int, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedTokenizerFast

    family = FAMILIES.get(family_name)
    raw = _train_tokenizer(family)
    ids = {t: raw.token_to_id(t) for t in family.special_tokens}
    vocab = -(-raw.get_vocab_size() // 64) * 64  # padding rows, as real checkpoints have

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        unk_token=None,
        padding_side="left",
        model_max_length=4096,
    )
    processor = family.tiny_processor(tokenizer, family.chat_template)

    cfg_dict = family.tiny_config(ids, vocab)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    eos = [ids[family.eos], *(ids[t] for t in family.extra_eos)]
    model.generation_config.eos_token_id = eos if len(eos) > 1 else eos[0]
    model.generation_config.pad_token_id = ids[family.pad]
    if family.bos is not None:
        model.generation_config.bos_token_id = ids[family.bos]

    _sharpen(model, family, LOGIT_SCALE)

    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        _to_hub_layout(tmp)
        (tmp / "rocobench_twin.json").write_text(
            json.dumps(twin_recipe(family, seed), indent=2, sort_keys=True) + "\n"
        )
    return out
