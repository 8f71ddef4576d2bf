"""The task spec: what to evaluate and how (lm-eval's field names), loaded from YAML.

A frozen pydantic model loaded by `harness.specs.yamlio`, so a typo is an error with a file and
line, never a silently ignored key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.registry import METRICS
from harness.specs.common import COMMIT, SAFE_ID, Frozen, Seed
from harness.specs.limits import MAX_BATCH, MAX_LIMIT, MAX_NEW_TOKENS, MAX_SEEDS
from harness.specs.refs import check_ref, is_local
from harness.specs.yamlio import load_spec


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
    # ImageCLEFmedical Caption's normalisation (harness.text.imageclef_normalise):
    # lowercase, every digit run -> "number", ASCII punctuation removed. Set it on both
    # `target` and `prediction`: the official evaluator normalises both sides.
    imageclef: bool = False

    def apply(self, text: str) -> str:
        if self.imageclef:
            from harness.text import imageclef_normalise

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
    temperature: float = Field(0.7, gt=0, le=100)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, le=1_000_000)  # 0 = no top-k filtering
    repetition_penalty: float = Field(1.0, gt=0, le=100)
    no_repeat_ngram_size: int = Field(0, ge=0, le=MAX_NEW_TOKENS)
    num_beams: Literal[1] = 1
    max_new_tokens: int = Field(128, gt=0, le=MAX_NEW_TOKENS)
    min_new_tokens: int = Field(0, ge=0, le=MAX_NEW_TOKENS)
    pad_token: Literal["eos"] = "eos"

    @model_validator(mode="after")
    def _min_below_max(self) -> GenerationKwargs:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        return self


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
        if self.metric not in METRICS:
            raise ValueError(METRICS.unknown_message(self.metric))
        # raises on unknown or ill-typed options
        METRICS.get(self.metric).options.model_validate(dict(self.kwargs))
        return self


class TaskMetadata(Frozen):
    version: Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=0, le=10**9)] | float
    description: str = Field("", max_length=10_000)
    citation: str = Field("", max_length=10_000)


class TaskSpec(Frozen):
    task: Annotated[str, Field(pattern=SAFE_ID)]
    dataset_path: str
    dataset_name: str | None = None
    dataset_kwargs: DatasetKwargs = DatasetKwargs()
    test_split: str
    training_split: str | None = None
    validation_split: str | None = None
    limit: int | None = Field(None, gt=0, le=MAX_LIMIT)
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
    seeds: tuple[Seed, ...] = Field((0, 1, 2), min_length=1, max_length=MAX_SEEDS)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    metadata: TaskMetadata

    # Where the spec was read from; excluded from hashes so a moved file is the same task.
    source: Path | None = Field(None, exclude=True)

    @field_validator("dataset_path")
    @classmethod
    def _dataset_reference(cls, v: str) -> str:
        return check_ref(v)

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
        if is_local(self.dataset_path):
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


def load_task(path: Path) -> TaskSpec:
    spec = load_spec(TaskSpec, path)
    return spec.model_copy(update={"source": path.resolve()})
