"""The state a technique chain moves through, and how to load the model in each state.

State: the current full-precision weights (`location`: Hub id at a revision, or a folder), an
optional adapter trained on top of them, the load-time quantization, and whether the folder holds
a pruned layout. Techniques change the state; `load()` turns any state into a model. Merging an
adapter always reloads the full-precision weights first: merging into a 4-bit base is lossy.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.models.families import Family


@dataclass
class ModelState:
    location: str  # Hub id or folder of the full-precision weights
    revision: str | None = None
    adapter: str | None = None  # folder of a PEFT adapter over `location`
    quantization: dict[str, Any] | None = None  # BitsAndBytesConfig kwargs, applied at load
    pruned: bool = False  # the folder's config carries a pruned layout (load_pruned)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelState:
        return cls(**data)


def bnb_config(quantization: dict[str, Any]) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    kwargs = dict(quantization)
    if "bnb_4bit_compute_dtype" in kwargs:
        kwargs["bnb_4bit_compute_dtype"] = getattr(torch, kwargs["bnb_4bit_compute_dtype"])
    return BitsAndBytesConfig(**kwargs)


def _cpu_bnb_workaround(model: Any) -> None:
    """bitsandbytes on the CPU repacks 4-bit weights on the first inference pass, after which
    saving writes wrong scales, merging gives garbage and training crashes; opting out of the
    AVX512-BF16 path avoids all three (slower, CPU only; CUDA is unaffected)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_model(state: ModelState, *, dtype: Any, device: str) -> Any:
    """Load the model a state describes (without its processor)."""
    from harness.spans import span

    with span("model load", Path(state.location).name + (" +adapter" if state.adapter else "")):
        return _load_model(state, dtype=dtype, device=device)


def _load_model(state: ModelState, *, dtype: Any, device: str) -> Any:
    from transformers import AutoModelForImageTextToText

    quant = bnb_config(state.quantization) if state.quantization else None
    if state.pruned:
        if quant is not None:
            raise RuntimeError(
                "a pruned model loads in full precision only: make prune the last step of the chain"
            )
        from harness.techniques.prune import load_pruned

        model = load_pruned(state.location, dtype=dtype, device_map=device)
    else:
        from harness.models.sources import resolve

        model = AutoModelForImageTextToText.from_pretrained(
            resolve(state.location, state.revision),  # a Hub id: its cache copy, never a folder
            dtype=dtype,
            device_map=device,
            quantization_config=quant,
        )
    if quant is not None and device == "cpu":
        _cpu_bnb_workaround(model)
    if state.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, state.adapter)
    model.eval()
    return model


@dataclass
class BuildContext:
    """What a technique sees: the state, the family, where to write, how to report."""

    state: ModelState
    family: Family
    processor: Any
    workdir: Path  # this build's folder; stages are written below it
    device: str
    dtype: Any  # full-precision dtype for this machine (bf16 on GPU, fp32 on CPU)
    progress: bool = True
    manifest_dir: Path | None = None  # local paths in a manifest are relative to it
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))
    notes: dict[str, Any] = field(default_factory=dict)  # per-step facts for build.json
    _stage: int = 0

    def load(self, *, quantized: bool | None = None) -> Any:
        """The model in the current state (quantized as the state says, unless overridden)."""
        state = self.state
        if quantized is False and state.quantization:
            state = ModelState(**{**state.to_json(), "quantization": None})
        return load_model(state, dtype=self.dtype, device=self.device)

    def new_stage(self, name: str) -> Path:
        self._stage += 1
        path = self.workdir / f"stage-{self._stage}-{name}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def save_full(self, model: Any, name: str, *, pruned: bool | None = None) -> None:
        """Save a full-precision model as the new current weights: no adapter, no load-time
        quantization (a later `quantize` step sets it again)."""
        folder = self.new_stage(name)
        model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        self.state = ModelState(
            location=str(folder),
            revision=None,
            adapter=None,
            quantization=None,
            pruned=self.state.pruned if pruned is None else pruned,
        )

    def full_precision(self) -> Any:
        """The current model in full precision, with any adapter merged (reloading the base
        in full precision first: never a merge into 4-bit weights)."""
        model = self.load(quantized=False)
        if self.state.adapter is not None:
            model = model.merge_and_unload()
            self.log("merge   adapter merged into the full-precision weights")
        return model

    def materialise(self, name: str) -> Any:
        """The full-precision model, saved as a new stage when an adapter had to be merged."""
        merged = self.state.adapter is not None
        model = self.full_precision()
        if merged:
            self.save_full(model, name)
        else:
            self.state.quantization = None  # the weights in hand are full precision
        return model

    def record(self, step: str, facts: dict[str, Any]) -> None:
        self.notes[step] = json.loads(json.dumps(facts, default=str))
