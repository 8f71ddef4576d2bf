"""Safe YAML loading that remembers where every value came from.

Validation errors must name the file, the line and the field. PyYAML's `SafeLoader` refuses
executable tags (`!!python/object`, …); composing the node tree once more gives each value's line,
so a pydantic error location such as `("generation_kwargs", "top_k")` maps back to `task.yaml:14`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

M = TypeVar("M", bound=pydantic.BaseModel)

MAX_SPEC_BYTES = 256 * 1024  # specs are small; anything larger is a mistake or an attack


class SpecError(ValueError):
    """A spec that cannot be used. `problems` holds one `file:line: field: message` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _locate(node: yaml.Node | None, loc: Sequence[str | int]) -> yaml.Node | None:
    """Walk a composed node tree along a pydantic error location; stop at the deepest match."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                # An unknown key: point at the key itself.
                return next((k for k, _ in node.value if k.value == key), node)
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return node
            node = node.value[key]
        else:
            # pydantic adds union-tag segments (e.g. "qlora") that are not in the document
            continue
    return node


def _field(loc: Sequence[str | int]) -> str:
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out or "<document>"


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read and parse one YAML file safely; raise SpecError with the offending line."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError([f"{path}: cannot read: {err.strerror or err}"]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            [f"{path}: file is {len(raw)} bytes; specs are limited to {MAX_SPEC_BYTES}"]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"]) from None
    try:
        data = yaml.load(text, Loader=yaml.SafeLoader)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        reason = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise SpecError([f"{path}{line}: invalid YAML: {reason}"]) from None
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: invalid YAML: {err}"]) from None
    return data, node


def validate(model: type[M], data: Any, node: yaml.Node | None, path: Path) -> M:
    """Validate parsed YAML against a pydantic model; errors become `file:line: field: msg`."""
    if not isinstance(data, dict):
        raise SpecError(
            [f"{path}:1: <document>: expected a mapping of keys, got {type(data).__name__}"]
        )
    try:
        return model.model_validate(data, context={"path": path})
    except pydantic.ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            at = _locate(node, loc)
            line = f":{at.start_mark.line + 1}" if at is not None else ""
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            elif e["type"] not in ("missing", "value_error") and "input" in e:
                shown = repr(e["input"])
                msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
            problems.append(f"{path}{line}: {_field(loc)}: {msg}")
        raise SpecError(problems) from None


def load_spec(model: type[M], path: Path) -> M:
    data, node = load_yaml(path)
    return validate(model, data, node, path)
