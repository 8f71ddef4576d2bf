"""Which device a run uses and the dtype a manifest's `dtype` means there."""

from __future__ import annotations

from typing import Any

from harness.models.sources import BuildError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BuildError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def dtype_for(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, name)
