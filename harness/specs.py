"""Typed specs: what a task asks for and what a variant is.

Both are frozen pydantic models loaded from YAML (`harness.yamlio`), so a typo is an error with a
file and line, never a silently ignored key. Task files keep lm-eval's field names.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from harness.yamlio import load_spec

SPEC_VERSION = 1
SAFE_ID = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # no path separators, no "..": ids become folder names
COMMIT = re.compile(r"^[0-9a-f]{40}$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def spec_hash(spec: BaseModel) -> str:
    """Stable sha256 of a spec's content (what cache keys and records use)."""
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------- task


class ImagePreprocessing(Frozen):
    size: tuple[Annotated[int, Field(gt=0, le=4096)], Annotated[int, Field(gt=0, le=4096)]] = (
        224,
        224,
    )
    resample: Literal["bicubic", "bilinear", "lanczos"] = "bicubic"
    mode: Literal["RGB"] = "RGB"


class TextCleaning(Frozen):
    """Applied to references (and predictions) before scoring, in this order: the ImageCLEF
    normalisation when asked, then whitespace (collapse, else strip), then lowercasing."""

    strip: bool = True
    collapse_whitespace: bool = True
    lowercase: bool = False
    # ImageCLEFmedical Caption's normalisation (harness.metrics.imageclef_normalise):
    # lowercase, every digit run -> "number", ASCII punctuation removed. Set it on both
    # `target` and `prediction`: the official evaluator normalises both sides.
    imageclef: bool = False

    def apply(self, text: str) -> str:
        if self.imageclef:
            from harness.metrics import imageclef_normalise

            text = imageclef_normalise(text)
        if self.collapse_whitespace:
            text = " ".join(text.split())
        elif self.strip:
            text = text.strip()
        if self.lowercase:
            text = text.lower()
        return text


class Preprocessing(Frozen):
    image: ImagePreprocessing = ImagePreprocessing()
    target: TextCleaning = TextCleaning()
    prediction: TextCleaning = TextCleaning()


class GenerationKwargs(Frozen):
    """Every sampling parameter, pinned: instruct models ship generation configs that leak."""

    do_sample: bool = True
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # 0 = no top-k filtering
    repetition_penalty: float = Field(1.0, gt=0)
    no_repeat_ngram_size: int = Field(0, ge=0)
    num_beams: Literal[1] = 1
    max_new_tokens: int = Field(128, gt=0, le=4096)
    min_new_tokens: int = Field(0, ge=0)
    pad_token: Literal["eos"] = "eos"


class DatasetKwargs(Frozen):
    revision: str | None = None

    @field_validator("revision")
    @classmethod
    def _commit(cls, v: str | None) -> str | None:
        if v is not None and not COMMIT.match(v):
            raise ValueError("revision must be a 40-hex commit id")
        return v


class MetricRequest(Frozen):
    """One entry of `metric_list`: a registered metric name and its options."""

    metric: str
    higher_is_better: bool | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> MetricRequest:
        from harness.metrics import METRICS, parse_options

        if self.metric not in METRICS:
            raise ValueError(METRICS.unknown_message(self.metric))
        parse_options(self.metric, self.kwargs)  # raises on unknown or ill-typed options
        return self


class TaskMetadata(Frozen):
    version: str | int | float
    description: str = ""
    citation: str = ""


class TaskSpec(Frozen):
    task: Annotated[str, Field(pattern=SAFE_ID)]
    dataset_path: str
    dataset_name: str | None = None
    dataset_kwargs: DatasetKwargs = DatasetKwargs()
    test_split: str
    training_split: str | None = None
    validation_split: str | None = None
    limit: int | None = Field(None, gt=0)
    doc_to_id: str = "image_id"
    doc_to_image: str = "image"
    doc_to_text: str = Field(min_length=1)
    doc_to_target: str = "caption"
    # Optional column of reference UMLS CUIs per image (ROCOv2: `cui`), for the concept metrics;
    # without it they extract the reference concepts from the reference caption.
    doc_to_concepts: str | None = None
    preprocessing: Preprocessing = Preprocessing()
    generation_kwargs: GenerationKwargs = GenerationKwargs()
    metric_list: tuple[MetricRequest, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1)
    batch_size: int = Field(8, gt=0, le=1024)
    metadata: TaskMetadata

    # Where the spec was read from; excluded from hashes so a moved file is the same task.
    source: Path | None = Field(None, exclude=True)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @property
    def is_local(self) -> bool:
        return self.local_dataset_dir is not None

    @property
    def local_dataset_dir(self) -> Path | None:
        """A dataset path that names a folder (relative to the task file) rather than a Hub id."""
        p = Path(self.dataset_path)
        if self.dataset_path.startswith((".", "/")):
            base = self.source.parent if self.source else Path.cwd()
            return (base / p).resolve()
        return None

    @model_validator(mode="after")
    def _hub_pinned(self) -> TaskSpec:
        if not self.is_local and self.dataset_kwargs.revision is None:
            raise ValueError(
                "dataset_kwargs.revision: a Hub dataset must be pinned to a 40-hex commit"
            )
        return self


# ------------------------------------------------------------------------------------- variant


class BaseModelRef(Frozen):
    """The model a variant starts from: a Hub id (pinned), a local folder, or an embedded twin."""

    model: str | None = None
    revision: str | None = None
    twin: str | None = None  # a family name: the tiny random-weight twin built locally
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # True only for a Hub model on the allowlist (harness.submission.ALLOWLIST_PATH); the
    # loaders never pass it on to transformers, so a model's own code is still not run.
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> BaseModelRef:
        if (self.model is None) == (self.twin is None):
            raise ValueError("give exactly one of `model` (Hub id or folder) or `twin`")
        if self.twin is not None:
            from harness.families import FAMILIES

            if self.twin not in FAMILIES:
                raise ValueError(FAMILIES.unknown_message(self.twin))
            if self.revision is not None:
                raise ValueError("an embedded twin has no revision")
        elif not self.is_local and (self.revision is None or not COMMIT.match(self.revision)):
            raise ValueError("revision: a Hub model must be pinned to a 40-hex commit id")
        if self.trust_remote_code:
            from harness.submission import trust_remote_code_allowlist

            if self.model is None or self.model not in trust_remote_code_allowlist():
                raise ValueError(
                    "trust_remote_code: refused; the model is not on the allowlist "
                    "(policy/trust_remote_code.yaml)"
                )
        return self

    @property
    def is_local(self) -> bool:
        return self.model is not None and self.model.startswith((".", "/"))


class TechniqueSpec(Frozen):
    """Base of every technique's spec; each registered technique subclasses it with a `kind`."""

    kind: str


class VariantSpec(Frozen):
    id: Annotated[str, Field(pattern=SAFE_ID)]
    version: int = SPEC_VERSION
    description: str = Field("", max_length=2000)
    base: BaseModelRef
    techniques: tuple[SerializeAsAny[TechniqueSpec], ...] = ()  # dump subclass fields too
    tags: tuple[str, ...] = ()

    source: Path | None = Field(None, exclude=True)

    @field_validator("techniques", mode="before")
    @classmethod
    def _techniques(cls, v: Any, info: ValidationInfo) -> Any:
        from harness.techniques import TECHNIQUES

        if not isinstance(v, list | tuple):
            return v
        out, errors = [], []
        for i, raw in enumerate(v):
            if not isinstance(raw, dict) or "kind" not in raw:
                raise ValueError(f"techniques[{i}] needs a `kind`")
            if raw["kind"] not in TECHNIQUES:
                raise ValueError(TECHNIQUES.unknown_message(str(raw["kind"])))
            try:
                out.append(TECHNIQUES.get(raw["kind"]).spec.model_validate(raw))
            except ValidationError as err:  # keep each nested location, for file:line errors
                errors += [
                    InitErrorDetails(
                        type=e["type"], loc=(i, *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
                    )
                    for e in err.errors()
                ]
        if errors:
            raise ValidationError.from_exception_data("techniques", errors)
        return tuple(out)

    @property
    def is_embedded(self) -> bool:
        return self.base.twin is not None


# ------------------------------------------------------------------------------------- loading


def load_task(path: Path) -> TaskSpec:
    spec = load_spec(TaskSpec, path)
    return spec.model_copy(update={"source": path.resolve()})


def load_variant(path: Path) -> VariantSpec:
    spec = load_spec(VariantSpec, path)
    if spec.id != path.stem:
        from harness.yamlio import SpecError

        raise SpecError([f"{path}:1: id: {spec.id!r} must match the file name {path.stem!r}"])
    return spec.model_copy(update={"source": path.resolve()})
