"""Safe YAML loading that remembers where every value came from.

A spec file is untrusted input (community submissions). One loader for all of them:

- only a regular file is read (a FIFO or a device would block or never end), and its size is
  checked from `fstat` before a byte is read;
- PyYAML's `SafeLoader` refuses executable tags (`!!python/object`, …);
- a key given twice in one mapping is refused (a reviewer would read the first, a run the second);
- aliases may not expand the document beyond a small bound (an "alias bomb" of a few hundred bytes
  otherwise expands to gigabytes in validation and error messages);
- a URL carrying credentials (`https://user:token@…`) is refused wherever it sits, and not echoed;
- error messages show at most a short prefix of a scalar, never an expanded value.

Every problem is one `file:line: field: message` line: the composed node tree gives each value's
line, so a pydantic error location such as `("generation_kwargs", "top_k")` maps to `task.yaml:14`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

M = TypeVar("M", bound=pydantic.BaseModel)

MAX_SPEC_BYTES = 256 * 1024  # specs are small; anything larger is a mistake or an attack
# Nodes that aliases may add beyond the document's own: generous for `&defaults` reuse, far
# below what makes validation slow or memory-hungry.
MAX_ALIAS_EXPANSION = 10_000
MAX_DEPTH = 64  # nesting of mappings and sequences
MAX_SHOWN = 60  # characters of a value quoted in an error message

# scheme://user[:password]@host — the userinfo part of a URL (RFC 3986)
CREDENTIAL_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s@]*@")


class SpecError(ValueError):
    """A spec that cannot be used. `problems` holds one `file:line: field: message` line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def has_credentials(text: str) -> bool:
    """True if `text` holds a URL with a user or password part."""
    return CREDENTIAL_URL.search(text) is not None


def shown(value: Any) -> str:
    """A short, bounded rendering of a value for an error message: never expands containers."""
    if isinstance(value, str):
        if has_credentials(value):
            return "<a URL with credentials, not shown>"
        text = repr(value[: MAX_SHOWN + 1])
        return text if len(value) <= MAX_SHOWN else text[: MAX_SHOWN - 2] + "...'"
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."
    if isinstance(value, dict | list | tuple | set):
        return f"a {type(value).__name__} of {len(value)} item(s)"
    return f"a {type(value).__name__}"


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


def read_spec_bytes(path: Path, limit: int = MAX_SPEC_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; SpecError otherwise.

    Opened non-blocking (a FIFO must not hang the open), then checked with fstat on the open
    descriptor (no race between the check and the read), then read with a hard cap.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise SpecError([f"{path}: cannot read: {err.strerror or err}"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecError([f"{path}: not a regular file; specs are read from plain files only"])
        if st.st_size > limit:
            raise SpecError([f"{path}: file is {st.st_size} bytes; specs are limited to {limit}"])
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise SpecError([f"{path}: cannot read: {err.strerror or err}"]) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit:  # grew while we read it
        raise SpecError([f"{path}: file is over {limit} bytes; specs are limited to {limit}"])
    return raw


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise SpecError(
            [f"{path}:{line}: <document>: not UTF-8 text ({err.reason} at column {column})"]
        ) from None


def _check_tree(root: yaml.Node, path: Path, loader: yaml.SafeLoader) -> None:
    """Duplicate keys, credentials in URLs, nesting depth and alias expansion, on the composed
    tree (before anything is constructed). Aliases are shared nodes: each distinct node is
    checked once, and the expanded size is counted with a memo, so checking a bomb is cheap."""
    problems: list[str] = []
    expanded: dict[int, int] = {}  # id(node) -> nodes in its full expansion
    distinct: set[int] = set()

    def line(node: yaml.Node) -> int:
        return node.start_mark.line + 1

    def walk(node: yaml.Node, loc: tuple[str | int, ...], depth: int, stack: set[int]) -> int:
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in stack:
            raise SpecError([f"{path}:{line(node)}: {_field(loc)}: recursive alias"])
        if depth > MAX_DEPTH:
            raise SpecError(
                [f"{path}:{line(node)}: {_field(loc)}: nested deeper than {MAX_DEPTH} levels"]
            )
        distinct.add(key)
        total = 1
        if isinstance(node, yaml.ScalarNode):
            if isinstance(node.value, str) and has_credentials(node.value):
                problems.append(
                    f"{path}:{line(node)}: {_field(loc)}: a URL with credentials is refused "
                    "(value not shown); use a public address, a Hub id or a token in the "
                    "environment"
                )
        elif isinstance(node, yaml.SequenceNode):
            stack.add(key)
            for i, child in enumerate(node.value):
                total += walk(child, (*loc, i), depth + 1, stack)
            stack.discard(key)
        elif isinstance(node, yaml.MappingNode):
            stack.add(key)
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    where = f"{path}:{line(k)}: {_field(loc)}"
                    raise SpecError([f"{where}: keys must be plain scalars"])
                name = k.value
                if k.tag != "tag:yaml.org,2002:merge":
                    value = loader.construct_object(k)
                    try:
                        hash(value)
                    except TypeError:
                        value = k.value
                    if value in seen:
                        problems.append(
                            f"{path}:{line(k)}: {_field((*loc, name))}: duplicate key "
                            f"(first given on line {seen[value]})"
                        )
                    else:
                        seen[value] = line(k)
                total += walk(v, (*loc, name), depth + 1, stack)
            stack.discard(key)
        expanded[key] = total
        if total - len(distinct) > MAX_ALIAS_EXPANSION:
            raise SpecError(
                [
                    f"{path}:{line(node)}: {_field(loc)}: aliases expand the document beyond "
                    f"{MAX_ALIAS_EXPANSION} extra nodes; write the values out"
                ]
            )
        return total

    walk(root, (), 0, set())
    if problems:
        raise SpecError(problems)


def load_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read and parse one YAML file safely; raise SpecError with the offending line."""
    text = _decode(read_spec_bytes(path), path)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_tree(node, path, loader)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark else ""
        reason = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise SpecError([f"{path}{line}: <document>: invalid YAML: {reason}"]) from None
    except yaml.YAMLError as err:
        raise SpecError([f"{path}: <document>: invalid YAML: {err}"]) from None
    except RecursionError:
        raise SpecError([f"{path}: <document>: nested too deeply"]) from None
    finally:
        loader.dispose()
    return data, node


def _message(e: Any) -> str:
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return "unknown key"
    if e["type"] not in ("missing", "value_error") and "input" in e:
        msg += f" (got {shown(e['input'])})"
    # validators may quote a value: keep one bounded line whatever they quoted
    msg = " ".join(msg.split())
    return msg if len(msg) <= 300 else msg[:297] + "..."


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
            problems.append(f"{path}{line}: {_field(loc)}: {_message(e)}")
        raise SpecError(problems) from None


def load_spec(model: type[M], path: Path) -> M:
    data, node = load_yaml(path)
    return validate(model, data, node, path)
