"""Load a built variant for inference: the model on its device and dtype, with its processor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.models.build import BuiltVariant, ensure_built
from harness.models.device import dtype_for, resolve_device
from harness.models.families import Family, family_for_model_type
from harness.models.sources import BuildError, base_location, resolve
from harness.progress import log_line
from harness.specs.common import spec_hash
from harness.specs.variant import VariantSpec
from harness.techniques.context import load_model

Log = Callable[[str], None]


@dataclass
class LoadedVariant:
    spec: VariantSpec
    model: Any
    processor: Any
    family: Family
    base: str  # Hub id, folder, or "twin:<family>"
    revision: str | None
    dtype: str
    built: BuiltVariant | None = None
    random_weights: bool = (
        False  # --random-weights: architecture only (harness.models.random_weights)
    )

    @property
    def device_type(self) -> str:
        """Where generation runs: "cpu" or "cuda"."""
        return str(self.model.device.type)

    @property
    def device_label(self) -> str:
        return str(self.model.device)

    def close(self) -> None:
        """Release what serves the model outside this process (nothing for transformers)."""

    @property
    def manifest_sha256(self) -> str:
        return spec_hash(self.spec)

    @property
    def n_parameters(self) -> int:
        """Logical parameters: a 4-bit tensor packs two weights per byte."""
        total = 0
        for p in self.model.parameters():
            quant_state = getattr(p, "quant_state", None)
            total += quant_state.shape.numel() if quant_state is not None else p.numel()
        return total

    @property
    def size_bytes(self) -> int:
        from harness.models.weights import weight_facts

        return weight_facts(self.model).total_bytes


def load_variant(
    spec: VariantSpec, device: str = "auto", *, progress: bool = True, log: Log = log_line
) -> LoadedVariant:
    """Build if needed, then load model and processor for inference."""
    from transformers import AutoConfig, AutoProcessor

    device = resolve_device(device)
    _, _, base_name = base_location(spec)
    dtype = dtype_for(spec.base.dtype, device)
    try:
        built = ensure_built(spec, device=device, progress=progress, log=log)
        state = built.state
        folder = resolve(state.location, state.revision)  # a Hub id: its cache copy
        config = AutoConfig.from_pretrained(folder)
        family = family_for_model_type(config.model_type)
        processor = AutoProcessor.from_pretrained(folder)
        model = load_model(state, dtype=dtype, device=device)
    except OSError as err:
        reason = " ".join(str(err).split())  # one line: transformers' messages span several
        reason = reason if len(reason) <= 240 else reason[:237] + "..."
        revision = spec.base.revision
        raise BuildError(
            f"cannot load {base_name}"
            + (f" at revision {revision}" if revision else "")
            + f" (Hub models need internet access or a filled Hugging Face cache): {reason}"
        ) from err
    return LoadedVariant(
        spec=spec,
        model=model,
        processor=processor,
        family=family,
        base=base_name,
        revision=spec.base.revision,
        dtype=str(dtype).removeprefix("torch."),
        built=built,
    )
