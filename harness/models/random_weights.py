"""Full-size models with random weights: the real architectures, timed without their checkpoints.

`rocobench run --random-weights` runs a variant on its base model's published architecture
(`harness/configs/<hub name>.json`) with random weights and on synthetic images in the task's
count and size: what a run costs in time, memory and energy, with nothing downloaded. The
captions are noise, so such runs are not scored, are written to `seed-<n>-random/` and carry
`model.random_weights: true`; the leaderboard leaves them out.

The base is built once into `<cache>/random/<name>-<key>/` through `save_pretrained`, with the
tiny twin's tokenizer, processor and generation settings (`harness.models.twins`): the real
tokenizers
cannot be downloaded either, so token ids come from the twin while every dimension (vocabulary
size included) is the published one. It then loads through the same `from_pretrained` path as a
Hub checkpoint, so the load phase is measured as in a real run.

Techniques apply on top where they need no training data: `quantize` and `prune` as in a real
build; `qlora` attaches its adapter untrained (peft's initialisation: the same matrices, the
same cost at inference, an output unchanged); `distill` changes weights only, not the
architecture, and is skipped. `source` needs a download and is refused. Each build says what it
skipped in `build.json`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from harness.data.dataset import EvalSet, load_split
from harness.models.build import (
    BUILD_FILE,
    BuiltVariant,
    _build,
    _state_from_json,
    library_versions,
)
from harness.models.determinism import build_lock
from harness.models.device import dtype_for, resolve_device
from harness.models.families import family_for_model_type
from harness.models.load import LoadedVariant
from harness.models.sources import BuildError
from harness.paths import cache_dir
from harness.progress import log_line
from harness.records.provenance import installed_versions
from harness.records.store import atomic_folder
from harness.specs.common import spec_hash
from harness.specs.task import TaskSpec
from harness.specs.variant import VariantSpec
from harness.techniques.context import BuildContext, ModelState, load_model

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
FORMAT = 1
SEED = 0
Log = Callable[[str], None]

# Evaluation split sizes of the Hub tasks (their dataset cards; docs/tasks.md): a random-weight
# run draws as many synthetic images without downloading the data to count them.
SPLIT_SIZES: dict[tuple[str, str], int] = {
    ("unsloth/Radiology_mini", "test"): 327,
    ("eltorio/ROCOv2-radiology", "test"): 9927,
}
_TOKEN_KEY = re.compile(r"token_(id|ids|index)$")


class RandomWeightsError(BuildError):
    """A random-weight build is impossible; the message says why."""


# -------------------------------------------------------------------------------- the base


def config_path(model_id: str) -> Path:
    """`harness/configs/<repository name, lowercase>.json` for a Hub id."""
    return CONFIGS_DIR / f"{model_id.rsplit('/', 1)[-1].lower()}.json"


def published_config(model_id: str) -> dict[str, Any]:
    path = config_path(model_id)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.json")))
        raise RandomWeightsError(
            f"--random-weights: no published configuration for {model_id} "
            f"(looked for {path}; known: {known})"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _token_ids(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if _TOKEN_KEY.search(key):
                yield (*path, key), value
            elif isinstance(value, dict):
                yield from _token_ids(value, (*path, key))


def random_config(model_id: str, twin: Path) -> Any:
    """The published architecture with the twin's token ids (its tokenizer is the one we have)."""
    from transformers import AutoConfig

    raw = published_config(model_id)
    model_type = raw.pop("model_type")
    data = AutoConfig.for_model(model_type, **raw).to_dict()  # legacy layouts normalised
    twin_data = json.loads((twin / "config.json").read_text(encoding="utf-8"))
    for path, value in _token_ids(twin_data):
        parent = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent[path[-1]] = value
    data.pop("model_type", None)
    return AutoConfig.for_model(model_type, **data)


def _savedtype_for(config: Any) -> Any:
    """The dtype the checkpoint is published in (bf16 / fp16): the same bytes on disk."""
    import torch

    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.bfloat16


def random_processor(twin: Path, config: Any) -> Any:
    """The twin's tokenizer and processor, with the published image input size."""
    from transformers import AutoProcessor

    with tempfile.TemporaryDirectory() as tmp:
        _processor_files(twin, Path(tmp), config)
        return AutoProcessor.from_pretrained(tmp)


def _processor_files(twin: Path, out: Path, config: Any) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (twin / name).exists():
            shutil.copy2(twin / name, out / name)
    proc = json.loads((twin / "processor_config.json").read_text(encoding="utf-8"))
    image = proc.get("image_processor", {})
    side = getattr(config.vision_config, "image_size", None)
    if isinstance(side, int):
        if "crop_size" in image:  # CLIP (LLaVA): resize the short side, then centre-crop
            image["size"] = {"shortest_edge": side}
            image["crop_size"] = {"height": side, "width": side}
        elif "height" in image.get("size", {}):  # Mllama: tiles of side x side
            image["size"] = {"height": side, "width": side}
    (out / "processor_config.json").write_text(json.dumps(proc, indent=2) + "\n")


def random_base_dir(model_id: str) -> Path:
    from harness.models.twins import build_twin

    raw = published_config(model_id)
    family = family_for_model_type(raw["model_type"])
    parts = {
        "format": FORMAT,
        "seed": SEED,
        "config": raw,
        "twin": build_twin(family.name).name,
        "versions": list(installed_versions("torch", "transformers").values()),
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "random" / f"{config_path(model_id).stem}-{key}"


def random_model(model_id: str, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model, processor) of a Hub id's published architecture with random weights (seeded),
    in memory, built on `device` (on a GPU: much faster than on the CPU). `dtype` defaults to
    the checkpoint's published one."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from harness.models.twins import build_twin

    twin = build_twin(family_for_model_type(published_config(model_id)["model_type"]).name)
    config = random_config(model_id, twin)
    torch.manual_seed(SEED)
    with torch.device(resolve_device(device)):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=dtype or _savedtype_for(config)
        )
    model.generation_config = GenerationConfig.from_pretrained(twin)  # its eos / pad / bos ids
    return model.eval(), random_processor(twin, config)


def build_random_base(model_id: str, *, device: str = "cpu", log: Log = log_line) -> Path:
    """The random-weight model folder for a Hub id, built first if needed, in the checkpoint's
    published dtype: the same bytes on disk as the real checkpoint."""
    out = random_base_dir(model_id)
    if (out / "config.json").exists():
        return out
    from harness.models.twins import build_twin

    log(f"random  {model_id}: building its published architecture with random weights")
    model, processor = random_model(model_id, device=device)
    twin = build_twin(family_for_model_type(model.config.model_type).name)
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        del model
        _release_gpu_memory()  # the run's load phase then starts from an empty allocator
        processor.save_pretrained(tmp)
        note = {
            "model": model_id,
            "config": f"harness/configs/{config_path(model_id).name}",
            "weights": f"random (seed {SEED}), not the checkpoint's",
            "tokenizer": f"the tiny twin's ({twin.name})",
        }
        (tmp / "rocobench_random.json").write_text(json.dumps(note, indent=2) + "\n")
    return out


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def random_base(spec: VariantSpec, device: str = "cpu", log: Log = log_line) -> tuple[Path, str]:
    """(model folder, recorded base name) of a variant's base with random weights. A twin's
    weights are random already: its folder is used as it is."""
    base = spec.base
    if base.twin is not None:
        from harness.models.twins import build_twin

        return build_twin(base.twin), f"random:twin:{base.twin}"
    assert base.model is not None
    if base.is_local:
        raise RandomWeightsError(
            f"{spec.source}: --random-weights builds Hub architectures from harness/configs/; "
            f"{base.model} is a local folder"
        )
    return build_random_base(base.model, device=device, log=log), f"random:{base.model}"


# -------------------------------------------------------------------------- the technique chain


def _qlora_untrained(ctx: BuildContext, spec: Any) -> None:
    """`qlora` without training: NF4 base plus the adapter at peft's initialisation."""
    from harness.techniques.qlora import add_lora, load_quantized_base

    model = add_lora(load_quantized_base(ctx, spec), ctx.family, spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    folder = ctx.new_stage("qlora-adapter")
    model.save_pretrained(folder)
    ctx.state.adapter = str(folder)
    ctx.record(
        "qlora",
        {"trainable_parameters": trainable, "training": "skipped (random weights): untrained"},
    )
    if spec.merge:
        ctx.materialise("qlora-merged")


def _skip_distill(ctx: BuildContext, spec: Any) -> None:
    ctx.log("distill skipped: it changes weights, not the architecture (random weights)")
    ctx.record("distill", {"training": "skipped (random weights): weights only, same architecture"})


def _step(technique: Any) -> Callable[[BuildContext, Any], None]:
    from harness.techniques import TECHNIQUES

    kind = technique.kind
    if kind == "source":
        raise RandomWeightsError(
            f"source: {technique.repo} must be downloaded; --random-weights cannot build it"
        )
    if kind in ("quantize", "prune"):  # need no data: exactly the real build step
        apply = TECHNIQUES.get(kind).apply
        assert apply is not None
        return apply
    special = {"qlora": _qlora_untrained, "distill": _skip_distill}
    if kind in special:
        return special[kind]
    raise RandomWeightsError(f"technique {kind!r} has no random-weights build")


def random_build_key(spec: VariantSpec, base: Path) -> str:
    parts = {
        "format": FORMAT,
        "random_weights": True,
        "manifest": spec_hash(spec),
        "base": base.name,
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def ensure_built_random(
    spec: VariantSpec,
    *,
    device: str = "auto",
    rebuild: bool = False,
    progress: bool = True,
    log: Log = log_line,
) -> BuiltVariant:
    """`build.ensure_built` for random weights: base, then the chain without training,
    cached in `<cache>/builds/<id>-random-<key>/`."""
    device = resolve_device(device)
    steps = [_step(t) for t in spec.techniques]  # refuse before building anything
    location, _ = random_base(spec, device, log)
    base_state = ModelState(location=str(location))
    if not spec.techniques:
        return BuiltVariant(spec=spec, state=base_state, key=None, folder=None)
    key = random_build_key(spec, location)
    folder = cache_dir() / "builds" / f"{spec.id}-random-{key[:16]}"
    record = folder / BUILD_FILE
    with build_lock(folder):  # one build per key at a time; a waiting one reuses it
        if record.exists() and not rebuild:
            data = json.loads(record.read_text())
            log(f"cached  {spec.id} (random weights): build {key[:16]}")
            state = _state_from_json(data["state"], folder)
            return BuiltVariant(spec, state, key, folder, data.get("notes", {}))
        return _build(
            spec, base_state, key, folder, device=device, progress=progress, log=log,
            steps=steps, mode="random weights",
        )  # fmt: skip


def load_variant_random(
    spec: VariantSpec, device: str = "auto", *, progress: bool = True, log: Log = log_line
) -> LoadedVariant:
    """`harness.models.build.load_variant` for random weights (the record says so)."""
    from transformers import AutoConfig, AutoProcessor

    device = resolve_device(device)
    built = ensure_built_random(spec, device=device, progress=progress, log=log)
    _, base_name = random_base(spec, device, log)
    state = built.state
    dtype = dtype_for(spec.base.dtype, device)
    config = AutoConfig.from_pretrained(state.location)
    return LoadedVariant(
        spec=spec,
        model=load_model(state, dtype=dtype, device=device),
        processor=AutoProcessor.from_pretrained(state.location),
        family=family_for_model_type(config.model_type),
        base=base_name,
        revision=None,
        dtype=str(dtype).removeprefix("torch."),
        built=built,
        random_weights=True,
    )


# ----------------------------------------------------------------------------- synthetic images


class _SyntheticRows(Sequence[dict[str, Image.Image]]):
    """Rows drawn on access (a 9,927-image task would not fit in memory as pictures)."""

    def __init__(self, ids: list[str], size: tuple[int, int]) -> None:
        self.ids, self.size = ids, size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Image.Image]:  # type: ignore[override]
        from harness.data.synthetic_images import MODALITIES, draw

        return {"image": draw(MODALITIES[index % len(MODALITIES)], self.ids[index], self.size)}


def split_size(task: TaskSpec) -> int | None:
    """Images in the task's evaluation split, known without downloading it; None if unknown."""
    if task.local_dataset_dir is not None:
        return len(load_split(task, limit=None).ids)
    return SPLIT_SIZES.get((task.dataset_path, task.test_split))


def synthetic_evalset(task: TaskSpec, limit: int | None = None) -> EvalSet:
    """As many synthetic pictures as the task evaluates (or `limit`), in its image size; no
    references: random-weight runs are not scored."""
    n = split_size(task)
    limit = limit or task.limit
    if n is None and limit is None:
        raise RandomWeightsError(
            f"--random-weights: the size of {task.dataset_path} split {task.test_split!r} is "
            "not known here; give --limit N"
        )
    n = min(n, limit) if n is not None and limit is not None else (n or limit)
    assert n is not None
    size = tuple(task.preprocessing.image.size)
    ids = [f"synthetic-{i:05d}" for i in range(n)]
    return EvalSet(
        path="synthetic",
        name=None,
        revision=f"synthetic:{size[0]}x{size[1]}",
        split=task.test_split,
        ids=ids,
        references=[""] * n,
        _rows=_SyntheticRows(ids, (size[0], size[1])),
        _image_column="image",
    )
