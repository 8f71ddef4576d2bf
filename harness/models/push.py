"""A built variant as a Hub model repository, loadable without rocobench.

Layouts (the Hub's usual ones):
- **adapter** (a LoRA chain: `qlora`): the PEFT adapter folder, its `base_model_name_or_path`
  set to the base's Hub id (and revision), for `PeftModel.from_pretrained(base, repo)`; the card
  gives the 4-bit settings the adapter was trained over.
- **full** (no technique, `distill`, a merged chain): the checkpoint folder (config, weights,
  processor files) for `AutoModelForImageTextToText.from_pretrained(repo)`.
- A pruned model is refused: its per-layer layout needs rocobench's loader, and a stock loader
  would load it wrongly or not at all.

**Key names.** A checkpoint saved by transformers 5 can name weights by its own module paths,
which differ from the base checkpoint on the Hub (LLaVA: `model.language_model.*` against
`language_model.model.*`); older transformers and other engines (vLLM) read only the base's
names. A full checkpoint's names are compared with the base checkpoint's: names in the other
convention are renamed to the base's, and a name matching neither stops the push. An adapter's
names are module paths, which PEFT resolves against the loaded model: they are checked to address
the base's modules (in either convention) and kept as saved.
"""

from __future__ import annotations

import io
import json
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from harness.models.build import BuiltVariant
    from harness.records.record import RunRecord
    from harness.specs.variant import VariantSpec

Kind = Literal["adapter", "full"]
ADAPTER_PREFIX = "base_model.model."
# transformers 5 module names -> the names of the published checkpoints, per family. Tried in
# order; the first prefix that matches is rewritten.
TO_HUB_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "llava": (
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    ),
    "mllama": (
        ("model.language_model.", "language_model.model."),
        ("model.vision_model.", "vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("lm_head.", "language_model.lm_head."),
    ),
    "qwen2_vl": (
        ("model.language_model.", "model."),
        ("model.visual.", "visual."),
    ),
}
SKIP_FILES = re.compile(r"(^|/)(\.|build\.json$|training_args\.bin$|checkpoint-)")


class PushError(RuntimeError):
    """The variant cannot be pushed as a self-standing model; the message says why."""


# --------------------------------------------------------------------------- key names


@dataclass(frozen=True)
class KeyCheck:
    renamed: dict[str, str]  # saved name -> base checkpoint's name
    unmatched: tuple[str, ...]  # in neither convention
    base_source: str  # where the base's names came from

    @property
    def ok(self) -> bool:
        return not self.unmatched


def check_keys(
    saved: Iterable[str], base: set[str], family: str, *, adapter: bool, base_source: str
) -> KeyCheck:
    """Map each saved weight name onto the base checkpoint's convention.

    A full checkpoint's names must each be a base name (possibly after renaming); an adapter's
    names must address base modules (`<module>.lora_A.weight` … of a base `<module>.weight`).
    """
    rules = TO_HUB_NAMES.get(family, ())
    base_modules = {name.rsplit(".", 1)[0] for name in base}
    renamed: dict[str, str] = {}
    unmatched: list[str] = []
    for name in saved:
        inner = name.removeprefix(ADAPTER_PREFIX) if adapter else name
        candidates = [inner] + [
            new + inner[len(old) :] for old, new in rules if inner.startswith(old)
        ]
        hit = next((c for c in candidates if _known(c, base, base_modules, adapter)), None)
        if hit is None and inner.endswith("lm_head.weight"):
            hit = inner  # an output head tied to the embeddings is not stored in the base
        if hit is None:
            unmatched.append(name)
        elif hit != inner:
            renamed[name] = (ADAPTER_PREFIX if adapter else "") + hit
    return KeyCheck(renamed, tuple(unmatched), base_source)


def _known(name: str, base: set[str], modules: set[str], adapter: bool) -> bool:
    if not adapter:
        return name in base
    # peft: "<module>.lora_A.weight", "<module>.lora_B.weight", or a saved module's weights
    # ("<module>.weight" of modules_to_save).
    module = re.sub(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)(\.\w+)?$", "", name)
    return module in modules or name in base


def base_key_names(
    api: HfApi | None, repo_id: str, revision: str | None, local: Path | None
) -> tuple[set[str], str]:
    """The base checkpoint's weight names: from a local folder, else the Hub's safetensors
    metadata (headers only, no download)."""
    if local is not None:
        return set(_folder_keys(local)), f"{local}"
    where = f"{repo_id}@{(revision or 'main')[:12]}"
    try:
        if api is None:
            raise RuntimeError("no Hub client")
        meta = api.get_safetensors_metadata(repo_id, revision=revision)
        return set(meta.weight_map), f"{where} (safetensors metadata)"
    except Exception as err:  # offline or unreachable: the HF cache may hold the checkpoint
        from huggingface_hub import snapshot_download

        try:
            cached = snapshot_download(
                repo_id, revision=revision, allow_patterns=["*.safetensors"], local_files_only=True
            )
        except Exception:
            raise PushError(
                f"cannot read {where}'s weight names ({type(err).__name__}) and the HF cache "
                "does not hold it: run online"
            ) from None
        return set(_folder_keys(Path(cached))), f"{where} (HF cache)"


def _folder_keys(folder: Path) -> list[str]:
    from safetensors import safe_open

    names: list[str] = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as fh:
            names += list(fh.keys())
    return names


def _renamed_safetensors(path: Path, renamed: Mapping[str, str]) -> bytes:
    """The file's tensors under the base's names, metadata kept."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(path), framework="pt") as fh:
        tensors = {renamed.get(k, k): fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        metadata = fh.metadata()
    return save(tensors, metadata=metadata)


# --------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    mean: float
    sd: float | None
    seeds: int
    ci95: tuple[float, float] | None  # seed 0's bootstrap interval over images, if recorded


def summarise(records: Sequence[RunRecord]) -> list[Score]:
    by: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        for metric in r.metrics:
            by.setdefault((r.task, metric), []).append(r)
    scores = []
    for (task, metric), runs in sorted(by.items()):
        values = [r.metrics[metric].value for r in runs]
        first = min(runs, key=lambda r: r.seed).metrics[metric].ci95
        sd = statistics.stdev(values) if len(values) > 1 else None
        scores.append(Score(task, metric, statistics.fmean(values), sd, len(values), first))
    return scores


def model_card(
    spec: VariantSpec,
    kind: Kind,
    *,
    repo_id: str,
    base_repo: str | None,
    base_revision: str | None,
    license: str | None,
    quantization: dict[str, Any] | None,
    training: Sequence[str],
    scores: Sequence[Score],
    leaderboard: str | None,
    keys: KeyCheck | None,
) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    chain = [t.model_dump(mode="json") for t in spec.techniques]
    data = ModelCardData(
        base_model=base_repo,
        library_name="peft" if kind == "adapter" else "transformers",
        license=license or "other",
        pipeline_tag="image-text-to-text",
        tags=["rocobench", "radiology", "image-captioning", *(t["kind"] for t in chain)],
        datasets=sorted(set(training)) or None,
    )
    lines = [
        f"# {spec.id}",
        "",
        spec.description or "A compressed vision-language model from rocobench.",
        "",
        (
            f"- **Base model**: [{base_repo}](https://huggingface.co/{base_repo})"
            + (f" at revision `{base_revision}`" if base_revision else "")
            if base_repo
            else f"- **Base model**: {_base_words(spec)}"
        ),
        f"- **Licence**: {license or 'see the base model'} (inherited from the base model)",
        f"- **Technique chain**: {' → '.join(t['kind'] for t in chain) or 'none (the base)'}",
        f"- **Training data**: {', '.join(training) or 'none'}",
        "- **Layout**: "
        + ("a PEFT adapter over the base" if kind == "adapter" else "a full checkpoint"),
    ]
    if leaderboard:
        lines.append(f"- **Leaderboard**: {leaderboard}")
    if keys is not None and keys.renamed:
        lines.append(
            f"- **Weight names**: {len(keys.renamed)} renamed to the base checkpoint's names "
            "(readable by older transformers and other engines)"
        )
    lines += ["", "## Settings", "", "```json", json.dumps(chain, indent=2), "```", ""]
    lines += [
        "## Use",
        "",
        "```python",
        *_usage(kind, repo_id, base_repo, base_revision, quantization),
        "```",
        "",
    ]
    if scores:
        lines += [
            "## Scores",
            "",
            "Mean over seeds ± sample standard deviation; the interval is the 95 % bootstrap "
            "interval over images of the first seed.",
            "",
            "| task | metric | mean | ± sd | seeds | 95 % interval |",
            "|---|---|---:|---:|---:|---|",
        ]
        for s in scores:
            sd = f"{s.sd:.4f}" if s.sd is not None else "—"
            ci = f"[{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]" if s.ci95 else "—"
            lines.append(f"| {s.task} | {s.metric} | {s.mean:.4f} | {sd} | {s.seeds} | {ci} |")
        lines.append("")
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _base_words(spec: VariantSpec) -> str:
    if spec.base.twin:
        return f"the embedded {spec.base.twin} twin (random weights)"
    return str(spec.base.model)


def _usage(
    kind: Kind, repo_id: str, base: str | None, revision: str | None, quant: dict[str, Any] | None
) -> list[str]:
    rev = f', revision="{revision}"' if revision else ""
    lines = ["from transformers import AutoModelForImageTextToText, AutoProcessor"]
    if kind == "full":
        return [
            *lines,
            f'model = AutoModelForImageTextToText.from_pretrained("{repo_id}")',
            f'processor = AutoProcessor.from_pretrained("{repo_id}")',
        ]
    lines.insert(0, "from peft import PeftModel")
    if quant:
        args = ", ".join(f"{k}={v!r}" for k, v in quant.items())
        lines += [
            "import torch",
            "from transformers import BitsAndBytesConfig",
            f"quant = BitsAndBytesConfig({args})".replace("'bfloat16'", "torch.bfloat16"),
            f'base = AutoModelForImageTextToText.from_pretrained("{base}"{rev}, '
            "quantization_config=quant)",
        ]
    else:
        lines.append(f'base = AutoModelForImageTextToText.from_pretrained("{base}"{rev})')
    return [
        *lines,
        f'model = PeftModel.from_pretrained(base, "{repo_id}")',
        f'processor = AutoProcessor.from_pretrained("{base}"{rev})',
    ]


# --------------------------------------------------------------------------- the plan


@dataclass
class PushPlan:
    repo_id: str
    kind: Kind
    files: dict[str, bytes]
    base_repo: str | None
    base_revision: str | None
    keys: KeyCheck | None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        size = sum(len(d) for d in self.files.values())
        lines = [
            f"model {self.repo_id}: {self.kind} over {self.base_repo or 'no published base'}"
            + (f"@{self.base_revision[:12]}" if self.base_revision else ""),
            f"  {len(self.files)} files, {size:,} bytes",
        ]
        if self.keys is not None:
            lines.append(
                f"  weight names checked against {self.keys.base_source}: "
                f"{len(self.keys.renamed)} renamed to the base's names"
            )
        lines += [f"  {n}" for n in self.notes]
        lines += [f"  add {p} ({len(d):,} bytes)" for p, d in sorted(self.files.items())]
        return lines


def plan_push(
    spec: VariantSpec,
    built: BuiltVariant,
    *,
    repo_id: str,
    family: str,
    records: Sequence[RunRecord] = (),
    base_repo: str | None = None,
    base_revision: str | None = None,
    base_folder: Path | None = None,
    license: str | None = None,
    leaderboard: str | None = None,
    api: HfApi | None = None,
) -> PushPlan:
    """What `push_variant` would upload for a built variant (read-only)."""
    state = built.state
    if state.pruned:
        raise PushError(
            f"{spec.id} is pruned: its per-layer layout loads with rocobench's loader only, so it "
            "is not pushed as a plain checkpoint"
        )
    kind: Kind = "adapter" if state.adapter else "full"
    hub_base = spec.base.model if spec.base.model and not spec.base.is_local else None
    local_base = Path(state.location) if Path(state.location).exists() else None
    if kind == "adapter" and local_base is not None and base_repo is None:
        raise PushError(
            f"{spec.id}'s adapter sits on a model built here ({state.location}): push that "
            "model first and name it with --base-repo"
        )
    base_repo = base_repo or hub_base
    if base_repo is None and kind == "adapter":
        raise PushError(f"{spec.id} has no Hub base (a twin or a local folder): pass --base-repo")
    if base_repo == hub_base and base_revision is None:
        base_revision = spec.base.revision
    training = sorted(
        {str(t.model_dump().get("train", {}).get("task")) for t in spec.techniques
         if isinstance(t.model_dump().get("train"), dict)}
    )  # fmt: skip
    notes: list[str] = []
    if kind == "adapter":
        folder = Path(state.adapter or "")
        base_names, source = base_key_names(
            api, base_repo or "", base_revision, base_folder or local_base
        )
        keys = check_keys(
            _folder_keys(folder), base_names, family, adapter=True, base_source=source
        )
        files = _adapter_files(folder, base_repo or "", base_revision)
        if keys.renamed:
            notes.append(
                f"{len(keys.renamed)} adapter weights address base modules under transformers "
                "≥ 4.52 module paths (older transformers name them otherwise)"
            )
        # PEFT addresses modules by the loading library's module paths, not by checkpoint
        # names: the adapter is kept as saved, and only checked to address the base's modules.
        keys = KeyCheck({}, keys.unmatched, keys.base_source)
    else:
        folder = Path(state.location)
        if not folder.is_dir():
            raise PushError(
                f"{spec.id} is its Hub base {state.location} unchanged: nothing to push"
            )
        if base_folder is not None or (hub_base and base_repo):
            base_names, source = base_key_names(api, base_repo or "", base_revision, base_folder)
            keys = check_keys(
                _folder_keys(folder), base_names, family, adapter=False, base_source=source
            )
        else:
            keys = KeyCheck({}, (), f"{folder} (its own names: no published base to compare)")
            notes.append("no published base checkpoint to compare weight names with")
        files = _full_files(folder, keys.renamed)
    if not keys.ok:
        shown = ", ".join(keys.unmatched[:3])
        raise PushError(
            f"{len(keys.unmatched)} weight names of {spec.id} match neither the base checkpoint "
            f"({keys.base_source}) nor its transformers 5 names, e.g. {shown}"
        )
    files["README.md"] = model_card(
        spec, kind, repo_id=repo_id, base_repo=base_repo, base_revision=base_revision,
        license=license, quantization=state.quantization if kind == "adapter" else None,
        training=training, scores=summarise(records), leaderboard=leaderboard, keys=keys,
    ).encode()  # fmt: skip
    return PushPlan(repo_id, kind, files, base_repo, base_revision, keys, notes)


def _adapter_files(folder: Path, base_repo: str, base_revision: str | None) -> dict[str, bytes]:
    """The adapter folder with its config naming the base on the Hub."""
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_repo
    config["revision"] = base_revision
    files = {"adapter_config.json": (json.dumps(config, indent=2) + "\n").encode()}
    for path in sorted(folder.glob("*.safetensors")):
        files[path.name] = path.read_bytes()
    return files


def _full_files(folder: Path, renamed: Mapping[str, str]) -> dict[str, bytes]:
    """The checkpoint folder, weights (and the shard index) under the base's names."""
    files: dict[str, bytes] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if SKIP_FILES.search(rel):
            continue
        if path.suffix == ".safetensors" and renamed:
            files[rel] = _renamed_safetensors(path, renamed)
        elif rel == "model.safetensors.index.json" and renamed:
            index = json.loads(path.read_text(encoding="utf-8"))
            index["weight_map"] = {renamed.get(k, k): v for k, v in index["weight_map"].items()}
            files[rel] = (json.dumps(index, indent=2) + "\n").encode()
        else:
            files[rel] = path.read_bytes()
    return files


def push_variant(
    api: HfApi,
    plan: PushPlan,
    *,
    create_pr: bool = False,
    private: bool | None = None,
    log: Callable[[str], None] = print,
) -> tuple[str, str]:
    """Create the model repository if missing, then one commit of the plan's files on top of its
    head (`parent_commit`). Returns the commit and its (or the pull request's) URL."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        head = api.repo_info(plan.repo_id).sha
    except RepositoryNotFoundError:
        api.create_repo(plan.repo_id, private=private, exist_ok=False)
        log(f"created model {plan.repo_id}")
        head = api.repo_info(plan.repo_id).sha
    operations = [CommitOperationAdd(p, io.BytesIO(d)) for p, d in sorted(plan.files.items())]
    info = api.create_commit(
        plan.repo_id, operations, commit_message=f"rocobench push-variant ({plan.kind})",
        parent_commit=head, create_pr=create_pr,
    )  # fmt: skip
    return info.oid, info.pr_url or info.commit_url


def manifest_snippet(plan: PushPlan, commit: str) -> str:
    """How a manifest names the pushed repository as a prebuilt variant (`source` technique)."""
    kind = "adapter" if plan.kind == "adapter" else "checkpoint"
    return (
        "techniques:\n"
        f"  - kind: source\n    repo: {plan.repo_id}\n    revision: {commit}\n    type: {kind}"
    )
