"""Peak memory held in torch tensors on the CPU: the counterpart of CUDA's `max_memory_allocated`.

torch keeps no allocation statistics for the CPU, and resident memory (`memory.CpuMemory`) also
holds the allocator's free blocks, the interpreter and every library: at twin size those swamp
the weights. torch's profiler, with memory profiling on, is told of every allocation and free of
the CPU allocator. With op recording switched off it records nothing else, but it still slows
small-tensor work by a third or more, so counts are taken over an untimed pass
(`harness.pipeline.seed.count_activations`), never inside a timed phase.

The count's peak is the largest running sum of what the pass allocated less what it freed: the
bytes it held at its busiest above what was held when it started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class CountUnavailable(RuntimeError):
    """Allocations cannot be counted here (another profiler is running)."""


@dataclass
class AllocationCount:
    peak_bytes: int = 0  # above what was held when counting started
    allocations: int = 0  # allocation and free events seen


def _peak(events: list[tuple[int, int]]) -> int:
    held = peak = 0
    for _, nbytes in sorted(events):
        held += nbytes
        peak = max(peak, held)
    return peak


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block. The profiler's C++ side writes
    there directly: kineto logs each start and stop, and torch warns once when a tensor made
    before counting began is freed (the count then simply does not see that free)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def counting_cpu_allocations() -> Iterator[AllocationCount]:
    """Count the CPU allocator's allocations inside the block; the count is filled in on exit.

    Raises CountUnavailable, before the block runs, when a profiler is already running (the
    two cannot nest) or this torch lacks the profiler calls used here (torch is pinned; a
    meter never fails a run).
    """
    import torch

    try:
        from torch._C._profiler import ProfilerActivity, _ExperimentalConfig
        from torch.autograd import (
            ProfilerConfig,
            ProfilerState,
            _disable_profiler,
            _enable_profiler,
            _prepare_profiler,
            _profiler_enabled,
        )
    except ImportError as err:
        raise CountUnavailable(f"torch {torch.__version__}: {err}") from None
    if _profiler_enabled():
        raise CountUnavailable("a torch profiler is already running in this process")
    # positional: (state, report_input_shapes, profile_memory, with_stack, with_flops,
    # with_modules, experimental_config)
    config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False,
                            _ExperimentalConfig())  # fmt: skip
    activities = {ProfilerActivity.CPU}
    # Op events would be recorded too; switching record functions off keeps only the
    # allocator's reports, which do not go through them. Older torch lacks the switch.
    switch = getattr(torch._C._autograd, "_enable_record_function", None)
    count = AllocationCount()
    try:
        _prepare_profiler(config, activities)
        _enable_profiler(config, activities)
    except RuntimeError as err:
        raise CountUnavailable(f"torch's profiler would not start: {err}") from None
    if switch is not None:
        switch(False)
    try:
        yield count
    finally:
        if switch is not None:
            switch(True)
        result = _disable_profiler()
        events = [
            (e.start_ns(), e.nbytes())
            for e in result.events()
            if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU
        ]
        count.peak_bytes = _peak(events)
        count.allocations = len(events)
