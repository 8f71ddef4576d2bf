"""What a loaded model's weights really are: storage dtypes, quantisation, bytes.

The dtype a manifest asks for is not what a quantised model holds: a QLoRA variant keeps its
language model's linear layers in NF4 (two weights per byte, plus a scale per block) and computes
in another dtype. Sizes here are bytes of the weights as stored in memory, computed the same way
for every model: each parameter and buffer at its element size, 4-bit tensors at their packed
size plus their quantisation constants.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightFacts:
    bytes_by_storage: dict[str, int]  # "float32", "nf4 (4-bit)", ... -> bytes
    quantization: str | None  # e.g. "bitsandbytes nf4, compute float32, 14 linear layers"

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_storage.values())


def _quant_state_bytes(state: Any) -> int:
    total = 0
    for name in ("absmax", "code"):
        t = getattr(state, name, None)
        if t is not None and hasattr(t, "numel"):
            total += t.numel() * t.element_size()
    nested = getattr(state, "state2", None)
    return total + (_quant_state_bytes(nested) if nested is not None else 0)


def weight_facts(model: Any) -> WeightFacts:
    storage: Counter[str] = Counter()
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        if state is not None:
            kind = str(getattr(state, "quant_type", "4-bit"))
            storage[f"{kind} (4-bit)"] += p.numel() * p.element_size() + _quant_state_bytes(state)
        else:
            storage[str(p.dtype).removeprefix("torch.")] += p.numel() * p.element_size()
    for b in model.buffers():
        storage[str(b.dtype).removeprefix("torch.")] += b.numel() * b.element_size()
    layers: Counter[tuple[str, str]] = Counter()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None:
            compute = getattr(module, "compute_dtype", None) or getattr(state, "dtype", None)
            compute_name = str(compute).removeprefix("torch.") if compute is not None else "?"
            layers[(str(getattr(state, "quant_type", "4-bit")), compute_name)] += 1
    quantization = (
        "; ".join(
            f"bitsandbytes {kind}, compute {compute}, {n} linear layer{'s' if n != 1 else ''}"
            for (kind, compute), n in sorted(layers.items())
        )
        or None
    )
    return WeightFacts(dict(sorted(storage.items())), quantization)
