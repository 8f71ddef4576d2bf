"""Reproducible builds on one machine: a lock per build, and the settings that make training
give the same bytes twice.

- `build_lock(folder)`: an exclusive `flock` on `<folder>.lock` (beside the build folder, which
  a build empties first). A second process building the same cache key waits for the first and
  then finds its finished build; builds of different keys go on at once. The kernel drops the
  lock when its holder dies, so a killed build never blocks the next one.
- `deterministic(seed)`: every random generator seeded (Python, NumPy, torch, CUDA), torch's
  deterministic algorithms on, and a fixed number of CPU threads, because a floating-point sum
  split over another number of threads rounds differently. The previous settings come back on
  exit, so the runs that follow a build in the same process are unaffected.

Across machines (another CPU, another BLAS) bytes may still differ: there the regression gate's
statistical tolerance decides.
"""

from __future__ import annotations

import fcntl
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BUILD_THREADS_ENV = "ROCOBENCH_BUILD_THREADS"
DEFAULT_BUILD_THREADS = 1  # the same on every machine, and one per worker of a parallel bench


def build_threads() -> int:
    """CPU threads a build trains with: $ROCOBENCH_BUILD_THREADS, else 1. Part of what makes a
    build's bytes, so change it knowingly (a new value gives other, equally valid, bytes)."""
    text = os.environ.get(BUILD_THREADS_ENV, "")
    if not text:
        return DEFAULT_BUILD_THREADS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{BUILD_THREADS_ENV}={text!r}: expected a whole number of threads ≥ 1")
    return value


@contextmanager
def build_lock(folder: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of the build folder `folder`; `on_wait` is called once if another process
    holds it (then this one blocks until it is released)."""
    lock = folder.with_name(folder.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def deterministic(seed: int, *, threads: int | None = None) -> Iterator[None]:
    """Seed everything and make torch deterministic with `threads` CPU threads (default
    `build_threads()`) for the enclosed work; restore the previous settings afterwards."""
    import numpy as np
    import torch

    threads = build_threads() if threads is None else threads
    saved_threads = torch.get_num_threads()
    saved_algorithms = torch.are_deterministic_algorithms_enabled()
    saved_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    saved_benchmark = torch.backends.cudnn.benchmark
    saved_cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    # cuBLAS is only reproducible with a fixed workspace (read when CUDA starts in this process)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(threads)
    # warn_only: an op without a deterministic kernel warns instead of failing a build
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # CPU and every CUDA device
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_algorithms, warn_only=saved_warn)
        torch.backends.cudnn.benchmark = saved_benchmark
        if saved_cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
