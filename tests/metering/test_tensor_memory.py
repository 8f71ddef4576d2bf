"""Counting the CPU allocator: exact peaks, no nesting with another profiler, nothing left on."""

from __future__ import annotations

import os

import pytest
import torch

from harness.metering.tensor_memory import (
    CountUnavailable,
    counting_cpu_allocations,
    native_stderr_silenced,
)


def test_the_peak_is_the_most_held_at_once() -> None:
    held_before = torch.empty(3_000_000, dtype=torch.uint8)  # not counted: it was there before
    with counting_cpu_allocations() as count:
        a = torch.empty(4_000_000, dtype=torch.uint8)
        b = torch.empty(2_000_000, dtype=torch.uint8)
        del a
        c = torch.empty(1_000_000, dtype=torch.uint8)
        del b, c
    assert count.peak_bytes == 6_000_000
    assert count.allocations == 6  # three allocations, three frees
    del held_before


def test_a_count_inside_another_profiler_is_refused() -> None:
    with (
        torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]),
        pytest.raises(CountUnavailable),
        counting_cpu_allocations(),
    ):
        pass


def test_an_error_inside_a_count_leaves_the_profiler_off() -> None:
    with pytest.raises(ValueError), counting_cpu_allocations():
        raise ValueError("generation failed")
    assert not torch.autograd._profiler_enabled()
    # record functions are on again: a profiler sees ops
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        torch.ones(4).add_(1)
    assert any("add_" in e.name for e in prof.events())


def test_native_stderr_is_silenced_inside_the_block_only(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_silenced():
        os.write(2, b"inside\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "inside" not in err and "after" in err
