"""The variant manifest: a base model plus a chain of techniques, loaded from YAML.

A frozen pydantic model; each technique entry is validated by the spec class its registered
technique declares (`harness.registry.TECHNIQUES`), keeping each entry's location for errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from harness.registry import FAMILIES, TECHNIQUES
from harness.specs.common import COMMIT, SAFE_ID, SPEC_VERSION, Frozen
from harness.specs.refs import check_ref, is_local
from harness.specs.yamlio import SpecError, load_spec


class BaseModelRef(Frozen):
    """The model a variant starts from: a Hub id (pinned), a local folder, or an embedded twin."""

    model: str | None = None
    revision: str | None = None
    twin: str | None = None  # a family name: the tiny random-weight twin built locally
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    # True only for a Hub model on the allowlist (harness.specs.policy.ALLOWLIST_PATH); the
    # loaders never pass it on to transformers, so a model's own code is still not run.
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> BaseModelRef:
        if (self.model is None) == (self.twin is None):
            raise ValueError("give exactly one of `model` (Hub id or folder) or `twin`")
        if self.twin is not None:
            if self.twin not in FAMILIES:
                raise ValueError(FAMILIES.unknown_message(self.twin))
            if self.revision is not None:
                raise ValueError("an embedded twin has no revision")
        elif not self.is_local and (self.revision is None or not COMMIT.match(self.revision)):
            raise ValueError("revision: a Hub model must be pinned to a 40-hex commit id")
        if self.trust_remote_code:
            from harness.specs.allowlist import trust_remote_code_allowlist

            if self.model is None or self.model not in trust_remote_code_allowlist():
                raise ValueError(
                    "trust_remote_code: refused; the model is not on the allowlist "
                    "(policy/trust_remote_code.yaml)"
                )
        return self

    @field_validator("model")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        return None if v is None else check_ref(v)

    @property
    def is_local(self) -> bool:
        return self.model is not None and is_local(self.model)


@dataclass(frozen=True)
class Dependencies:
    """What a technique's result depends on besides the manifest: the tasks whose training data
    it learns from, and the variants (ids) it learns from, which must be built first."""

    tasks: tuple[str, ...] = ()
    teachers: tuple[str, ...] = ()


class TechniqueSpec(Frozen):
    """Base of every technique's spec; each registered technique subclasses it with a `kind`."""

    kind: str

    def dependencies(self) -> Dependencies:
        """Override where the technique trains on a task or learns from another variant: the
        build key and the sweep's build order follow what this declares."""
        return Dependencies()


def _entry_error(loc: tuple[str | int, ...], message: str, raw: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=loc,
        input=raw,
    )


class VariantSpec(Frozen):
    id: Annotated[str, Field(pattern=SAFE_ID)]
    version: int = Field(SPEC_VERSION, ge=1, le=SPEC_VERSION)
    description: str = Field("", max_length=2000)
    base: BaseModelRef
    techniques: tuple[SerializeAsAny[TechniqueSpec], ...] = ()  # dump subclass fields too
    tags: tuple[Annotated[str, Field(max_length=64)], ...] = Field((), max_length=32)

    source: Path | None = Field(None, exclude=True)

    @field_validator("techniques", mode="before")
    @classmethod
    def _techniques(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, list | tuple):
            return v
        out, errors = [], []
        for i, raw in enumerate(v):
            # each entry's own location, so an error points at its line, not the chain's first
            if not isinstance(raw, dict) or "kind" not in raw:
                errors.append(_entry_error((i,), "a technique needs a `kind`", raw))
                continue
            if not isinstance(raw["kind"], str) or raw["kind"] not in TECHNIQUES:
                name = raw["kind"] if isinstance(raw["kind"], str) else type(raw["kind"]).__name__
                errors.append(_entry_error((i, "kind"), TECHNIQUES.unknown_message(name), raw))
                continue
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


def load_variant(path: Path) -> VariantSpec:
    spec = load_spec(VariantSpec, path)
    if spec.id != path.stem:
        raise SpecError([f"{path}:1: id: {spec.id!r} must match the file name {path.stem!r}"])
    return spec.model_copy(update={"source": path.resolve()})
