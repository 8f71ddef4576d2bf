"""Turn a variant manifest into a loaded model and processor.

The base comes from the Hub (pinned revision), a local folder, or the embedded twin folder; all
three load through the same `from_pretrained` calls. Technique chains (QLoRA, distillation,
pruning) plug in here through `harness.techniques`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.families import Family, family_for_model_type
from harness.specs import VariantSpec, spec_hash


class BuildError(RuntimeError):
    """The variant cannot be built or loaded; the message says why and what to do."""


@dataclass
class LoadedVariant:
    spec: VariantSpec
    model: Any
    processor: Any
    family: Family
    base: str  # Hub id, folder, or "twin:<family>"
    revision: str | None
    dtype: str

    @property
    def manifest_sha256(self) -> str:
        return spec_hash(self.spec)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def size_bytes(self) -> int:
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return params + sum(b.numel() * b.element_size() for b in self.model.buffers())


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BuildError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def _dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, name)


def base_location(spec: VariantSpec) -> tuple[str, str | None, str]:
    """(what to pass to from_pretrained, revision, the name recorded as the base)."""
    base = spec.base
    if base.twin is not None:
        from harness.twins import build_twin

        return str(build_twin(base.twin)), None, f"twin:{base.twin}"
    assert base.model is not None
    if base.is_local:
        root = spec.source.parent if spec.source else Path.cwd()
        folder = (root / base.model).resolve()
        if not (folder / "config.json").exists():
            raise BuildError(f"{spec.source}: base.model: {folder} has no config.json")
        return str(folder), None, str(folder)
    return base.model, base.revision, base.model


def load_variant(spec: VariantSpec, device: str = "auto") -> LoadedVariant:
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    if spec.techniques:
        kinds = ", ".join(t.kind for t in spec.techniques)
        raise BuildError(f"{spec.source}: techniques: no builder is available for {kinds}")
    device = resolve_device(device)
    location, revision, base_name = base_location(spec)
    dtype = _dtype(spec.base.dtype, device)
    try:
        config = AutoConfig.from_pretrained(location, revision=revision)
        family = family_for_model_type(config.model_type)
        processor = AutoProcessor.from_pretrained(location, revision=revision)
        model = AutoModelForImageTextToText.from_pretrained(
            location, revision=revision, dtype=dtype, device_map=device
        )
    except OSError as err:
        reason = " ".join(str(err).split())  # one line: transformers' messages span several
        reason = reason if len(reason) <= 240 else reason[:237] + "..."
        raise BuildError(
            f"cannot load {base_name}"
            + (f" at revision {revision}" if revision else "")
            + f" (Hub models need internet access or a filled Hugging Face cache): {reason}"
        ) from err
    model.eval()
    return LoadedVariant(
        spec=spec,
        model=model,
        processor=processor,
        family=family,
        base=base_name,
        revision=revision,
        dtype=str(dtype).removeprefix("torch."),
    )
