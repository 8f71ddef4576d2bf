"""torch helpers that import torch only when called, so technique modules stay importable (spec
validation, `rocobench validate`) without loading torch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def no_grad(fn: F) -> F:
    """`torch.no_grad()` as a decorator that imports torch only when called: technique modules
    stay importable (spec validation, `rocobench validate`) without torch."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
