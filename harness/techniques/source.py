"""`source`: take a prebuilt variant instead of building it — a PEFT adapter or a full checkpoint
at a pinned revision, from the Hub or a local folder.

Adapters saved before transformers 4.52 renamed the VLM modules (the study's published ones are
of that kind) name modules the current model does not have; PEFT then loads them as a silent
no-op with only a warning. Here every adapter key must name a module of the model: keys in the
old layout are migrated with the family's rename table, anything else is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from harness.models.families import Family
from harness.models.sources import hub_snapshot
from harness.specs.common import COMMIT
from harness.specs.refs import check_ref, is_local
from harness.specs.variant import TechniqueSpec
from harness.techniques import TECHNIQUES, Technique
from harness.techniques.context import ModelState

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


class SourceSpec(TechniqueSpec):
    kind: Literal["source"] = "source"
    repo: str  # Hub id, or a local folder ("./…" relative to the manifest, or "/…")
    revision: str | None = None
    type: Literal["adapter", "checkpoint"]
    migrate_keys: bool = True

    @model_validator(mode="after")
    def _pinned(self) -> SourceSpec:
        check_ref(self.repo)
        local = is_local(self.repo)
        if not local and (self.revision is None or not COMMIT.match(self.revision)):
            raise ValueError("revision: a Hub repository must be pinned to a 40-hex commit")
        return self


class AdapterMismatch(ValueError):
    pass


def _local(spec: SourceSpec, root: Path | None) -> Path:
    if is_local(spec.repo):
        return ((root or Path.cwd()) / spec.repo).resolve()
    assert spec.revision is not None
    return Path(hub_snapshot(spec.repo, spec.revision))


def _module_of(key: str) -> str:
    """`base_model.model.X.lora_A.weight` -> `X` (the adapted module's path in the model)."""
    body = key.removeprefix(PEFT_PREFIX)
    module = re.sub(r"\.lora_(A|B|embedding_A|embedding_B)(\.[^.]+)?\.weight$", "", body)
    # A module trained in full beside the adapter (peft's modules_to_save) stores its own
    # parameters: `X.weight` -> `X`.
    return module if module != body else body.rsplit(".", 1)[0]


def migrate_keys(keys: list[str], family: Family, modules: set[str]) -> dict[str, str]:
    """Old key -> new key for every key, or AdapterMismatch naming what cannot be placed."""
    mapping, unknown = {}, []
    for key in keys:
        module = _module_of(key)
        new_module = module
        if module not in modules:
            for pattern, replacement in family.legacy_renames:
                candidate = re.sub(pattern, replacement, module)
                if candidate != module:
                    new_module = candidate
                    break
        if new_module not in modules:
            unknown.append(module)
            continue
        mapping[key] = key.replace(PEFT_PREFIX + module, PEFT_PREFIX + new_module, 1)
    if unknown:
        shown = ", ".join(sorted(set(unknown))[:3])
        raise AdapterMismatch(
            f"source: {len(set(unknown))} adapter module(s) match no module of the model "
            f"(e.g. {shown}); refusing an adapter that would load as a no-op"
        )
    return mapping


def apply(ctx: Any, spec: SourceSpec) -> None:
    import safetensors.torch

    folder = _local(spec, ctx.manifest_dir)  # local folders are relative to the manifest
    if spec.type == "checkpoint":
        ctx.state = ModelState(
            location=str(folder) if is_local(spec.repo) else spec.repo,
            revision=None if is_local(spec.repo) else spec.revision,
        )
        ctx.record("source", {"checkpoint": spec.repo, "revision": spec.revision})
        return
    weights = folder / ADAPTER_WEIGHTS
    if not weights.exists():
        raise AdapterMismatch(f"source: {folder} has no {ADAPTER_WEIGHTS}")
    if ctx.state.adapter is not None:
        ctx.materialise("merged-before-source")
    model = ctx.load()
    modules = {name for name, _ in model.named_modules()}
    tensors = safetensors.torch.load_file(str(weights))
    mapping = migrate_keys(list(tensors), ctx.family, modules)
    migrated = sum(old != new for old, new in mapping.items())
    if migrated and not spec.migrate_keys:
        raise AdapterMismatch(
            f"source: {migrated} adapter keys use module names of transformers < 4.52 and "
            "migrate_keys is false"
        )
    stage = ctx.new_stage("source-adapter")
    migrated_tensors = {mapping[k]: v for k, v in tensors.items()}
    safetensors.torch.save_file(migrated_tensors, str(stage / ADAPTER_WEIGHTS))
    config = json.loads((folder / "adapter_config.json").read_text())
    # Name the adapted modules exactly, so PEFT places every tensor where the keys say.
    config["target_modules"] = sorted({_module_of(k) for k in migrated_tensors if ".lora_" in k})
    (stage / "adapter_config.json").write_text(json.dumps(config, indent=2))
    ctx.state.adapter = str(stage)
    ctx.record(
        "source",
        {
            "adapter": spec.repo,
            "revision": spec.revision,
            "keys": len(mapping),
            "migrated": migrated,
        },
    )
    if migrated:
        ctx.log(f"source  migrated {migrated} adapter keys to the current module names")


TECHNIQUES.add(
    "source",
    Technique(
        kind="source",
        spec=SourceSpec,
        description="a prebuilt adapter or checkpoint at a pinned revision (Hub or folder)",
        apply=apply,
    ),
)
