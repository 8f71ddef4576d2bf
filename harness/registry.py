"""One tiny generic registry per extension kind (technique, metric, model family), declared here.

Entries are added by decorator; a duplicate name is an error; an unknown name suggests the nearest
registered ones, so a typo in a task or manifest reads as a typo and not as a crash.

The registries live at the bottom of the package and fill themselves lazily: the first lookup
imports the modules that register the built-in entries (and the entry-point group for third-party
ones). So a spec can check a technique or metric name without importing the package that
implements it, and nothing is loaded that a command does not look up.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name; str() is a full sentence fit for a one-line error."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    def __init__(
        self, kind: str, modules: Sequence[str] = (), entry_point_group: str | None = None
    ) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._modules = tuple(modules)  # imported on first lookup: they register the built-ins
        self._group = entry_point_group
        self._loaded = not modules and entry_point_group is None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: the modules call `add`, which must not recurse
        for name in self._modules:
            import_module(name)
        if self._group is not None:
            for ep in entry_points(group=self._group):
                ep.load()

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        self._load()
        near = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} {name!r}{hint} (known: {known})"

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)


# The extension kinds. Typed views with the entry types: harness.techniques.TECHNIQUES,
# harness.metrics.METRICS, harness.models.families.FAMILIES.
TECHNIQUES: Registry[Any] = Registry(
    "technique",
    [f"harness.techniques.{m}" for m in ("quantize", "qlora", "distill", "prune", "source")],
    entry_point_group="rocobench.techniques",
)
METRICS: Registry[Any] = Registry(
    "metric",
    [f"harness.metrics.{m}" for m in ("lexical", "cider", "bertscore", "clinical", "imageclef")],
    entry_point_group="rocobench.metrics",
)
FAMILIES: Registry[Any] = Registry("model family", ["harness.models.families"])
