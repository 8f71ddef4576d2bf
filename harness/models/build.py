"""Build a variant's technique chain once and cache it (`load` then loads the result).

The base comes from `sources` (the Hub at a pinned revision, a local folder, or the embedded
twin folder); all load through the same `from_pretrained` calls. A chain (quantize, qlora,
distill, prune, source)
runs once per cache key — a hash of the manifest, the base, the training data, the teacher and
the library versions — into `<cache>/builds/<id>-<key>/`, whose `build.json` (written last)
says how to load the result: full-precision weights, an adapter over them, load-time
quantization, a pruned layout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.models.determinism import build_lock, deterministic
from harness.models.device import dtype_for, resolve_device
from harness.models.families import family_for_model_type
from harness.models.sources import BuildError, base_location, resolve
from harness.paths import cache_dir
from harness.progress import log_line
from harness.records.provenance import installed_versions
from harness.spans import span, within
from harness.specs import catalog
from harness.specs.common import spec_hash
from harness.specs.variant import VariantSpec
from harness.techniques.context import ModelState

BUILD_FILE = "build.json"
BUILD_FORMAT = 1
Log = Callable[[str], None]
Step = Callable[[Any, Any], None]  # (BuildContext, technique spec): one technique applied


@dataclass
class BuiltVariant:
    spec: VariantSpec
    state: ModelState
    key: str | None  # None: nothing to build (a base model)
    folder: Path | None
    notes: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- cache key


def _data_fingerprint(task_id: str) -> dict[str, str]:
    from harness.data.dataset import local_revision

    task = catalog.task(task_id)
    local = task.local_dataset_dir
    revision = local_revision(local) if local is not None else str(task.dataset_kwargs.revision)
    return {"task": task_id, "task_sha256": spec_hash(task), "data": revision}


def build_key(spec: VariantSpec) -> str:
    """What the built artefact depends on; any change makes a new build."""
    from harness.models.twins import twin_dir

    parts: dict[str, Any] = {"format": BUILD_FORMAT, "manifest": spec_hash(spec)}
    if spec.base.twin is not None:
        parts["base"] = twin_dir(spec.base.twin).name  # the twin recipe's hash
    else:
        parts["base"] = [spec.base.model, spec.base.revision]
    data, teachers = [], []
    for technique in spec.techniques:
        needs = technique.dependencies()
        data += [_data_fingerprint(task_id) for task_id in needs.tasks]
        teachers += [build_key(catalog.variant(v)) for v in needs.teachers]
    parts["data"], parts["teachers"] = data, teachers
    parts["versions"] = library_versions()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """The libraries a build's bytes depend on (part of every build key), from their metadata:
    working out a key imports none of them, so a plan or a cached bench stays light."""
    return installed_versions("torch", "transformers", "peft", "bitsandbytes")


def build_folder(spec: VariantSpec, key: str) -> Path:
    return cache_dir() / "builds" / f"{spec.id}-{key[:16]}"


# -------------------------------------------------------------------------------------- build


def _state_to_json(state: ModelState, folder: Path) -> dict[str, Any]:
    """Paths inside the build folder are stored relative to it, so the cache can move."""
    data = state.to_json()
    for key in ("location", "adapter"):
        value = data.get(key)
        if value and Path(value).is_absolute() and Path(value).is_relative_to(folder):
            data[key] = "./" + Path(value).relative_to(folder).as_posix()
    return data


def _state_from_json(data: dict[str, Any], folder: Path) -> ModelState:
    data = dict(data)
    for key in ("location", "adapter"):
        value = data.get(key)
        if value and value.startswith("./"):
            data[key] = str(folder / value[2:])
    return ModelState.from_json(data)


def ensure_built(
    spec: VariantSpec,
    *,
    device: str = "auto",
    rebuild: bool = False,
    progress: bool = True,
    log: Log = log_line,
) -> BuiltVariant:
    """The variant's final state, building the technique chain first if its key is new."""
    location, revision, _ = base_location(spec)
    base_state = ModelState(location=location, revision=revision)
    if not spec.techniques:
        return BuiltVariant(spec=spec, state=base_state, key=None, folder=None)
    key = build_key(spec)
    folder = build_folder(spec, key)
    if not rebuild and (cached := _cached(spec, key, folder, log)) is not None:
        return cached

    def waiting() -> None:
        log(f"wait    {spec.id}: another process is building {key[:16]}")

    # One build per key at a time: a second process waits, then reuses the first one's build.
    with build_lock(folder, on_wait=waiting):
        if not rebuild and (cached := _cached(spec, key, folder, log)) is not None:
            return cached
        with span("build", spec.id):
            return _build(spec, base_state, key, folder, device=device, progress=progress, log=log)


def _cached(spec: VariantSpec, key: str, folder: Path, log: Log) -> BuiltVariant | None:
    record = folder / BUILD_FILE
    if not record.exists():
        return None
    data = json.loads(record.read_text())
    log(f"cached  {spec.id}: build {key[:16]} ({', '.join(data['chain'])})")
    return BuiltVariant(
        spec=spec,
        state=_state_from_json(data["state"], folder),
        key=key,
        folder=folder,
        notes=data.get("notes", {}),
    )


def _build(
    spec: VariantSpec,
    base_state: ModelState,
    key: str,
    folder: Path,
    *,
    device: str,
    progress: bool,
    log: Log,
    steps: Sequence[Step] | None = None,
    mode: str = "",
) -> BuiltVariant:
    """Apply the technique chain into `folder`; build.json last. `steps` replaces each technique's
    registered `apply` (random-weight builds), `mode` labels such a build in logs and build.json."""
    from transformers import AutoConfig, AutoProcessor

    from harness.techniques import TECHNIQUES
    from harness.techniques.context import BuildContext

    if steps is None:
        steps = []
        for technique in spec.techniques:
            apply = TECHNIQUES.get(technique.kind).apply
            if apply is None:
                raise BuildError(f"technique {technique.kind!r} has no builder")
            steps.append(apply)
    label = f"{spec.id} ({mode})" if mode else spec.id
    device = resolve_device(device)
    chain = [t.kind for t in spec.techniques]
    if folder.exists():
        shutil.rmtree(folder)  # a rebuild, or a build that died half-way: start clean
    folder.mkdir(parents=True)
    base_folder = resolve(base_state.location, base_state.revision)  # a Hub id: its cache copy
    config = AutoConfig.from_pretrained(base_folder)
    ctx = BuildContext(
        state=base_state,
        family=family_for_model_type(config.model_type),
        processor=AutoProcessor.from_pretrained(base_folder),
        workdir=folder,
        device=device,
        dtype=dtype_for(spec.base.dtype, device),
        progress=progress,
        manifest_dir=spec.source.parent if spec.source else None,
        log=log,
    )
    log(f"build   {label}: {' → '.join(chain)} (key {key[:16]})")
    try:
        for n, (technique, apply) in enumerate(zip(spec.techniques, steps, strict=True), 1):
            log(f"step    {n}/{len(chain)}: {technique.kind}")
            # each step seeded by its position: its bytes do not depend on what ran before
            with (
                within(spec.id),
                span("build step", f"{n} {technique.kind}"),
                deterministic(seed=n),
            ):
                apply(ctx, technique)
    except (ValueError, RuntimeError, OSError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, BuildError):
            raise
        raise BuildError(f"{spec.source}: building {label} failed: {err}") from err
    from harness.records.store import write_json

    write_json(
        folder / BUILD_FILE,
        {
            "format": BUILD_FORMAT,
            "variant": spec.id,
            "key": key,
            "chain": chain,
            "manifest": spec.model_dump(mode="json"),
            "state": _state_to_json(ctx.state, folder),
            "notes": ctx.notes,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        | ({"mode": mode} if mode else {}),
    )  # written last: its presence marks a finished build
    log(f"built   {label} in {folder}")
    return BuiltVariant(spec=spec, state=ctx.state, key=key, folder=folder, notes=ctx.notes)


# --------------------------------------------------------------------------------------- load
