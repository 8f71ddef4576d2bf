"""Tiny random-weight twins of the real architectures, saved as ordinary model folders.

A twin has the real model class, processor class, chat template and special-token layout, with
small dimensions, a byte-level BPE tokenizer trained on the bundled captions and weights drawn
from a fixed seed. It is written with `save_pretrained`, so the harness loads it through exactly
the `from_pretrained` path a Hub id takes. Built once per recipe and cached by its hash.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

from harness.models.families import FAMILIES, Family
from harness.paths import REPO_ROOT, cache_dir
from harness.records.store import atomic_folder

TOKENIZER_CORPUS = (
    REPO_ROOT / "tasks/data/rocov2_sample/source/rocov2_test_sample/test_captions_first177.csv"
)
TOKENIZER_VOCAB = 1024  # before special tokens; the embedding is padded to a multiple of 64


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


def twin_recipe(family: Family, seed: int) -> dict[str, Any]:
    import tokenizers
    import torch
    import transformers

    return {
        "family": family.name,
        "seed": seed,
        "special_tokens": list(family.special_tokens),
        "chat_template": family.chat_template,
        "config": family.tiny_config({t: i for i, t in enumerate(family.special_tokens)}, 0),
        "corpus_sha256": hashlib.sha256(TOKENIZER_CORPUS.read_bytes()).hexdigest(),
        "vocab": TOKENIZER_VOCAB,
        "versions": [transformers.__version__, tokenizers.__version__, torch.__version__],
        "format": 1,
    }


def twin_dir(family_name: str, seed: int = 0) -> Path:
    family = FAMILIES.get(family_name)
    blob = json.dumps(twin_recipe(family, seed), sort_keys=True).encode()
    return cache_dir() / "twins" / f"{family.name}-s{seed}-{hashlib.sha256(blob).hexdigest()[:12]}"


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

    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "rocobench_twin.json").write_text(
            json.dumps(twin_recipe(family, seed), indent=2, sort_keys=True) + "\n"
        )
    return out
