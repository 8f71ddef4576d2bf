"""The cost columns: each measured figure of a record (time, memory, energy, tokens, size), how
it is read from the record and how the page shows it.

Records gain fields over time: a reader returns None where a record has no such figure, and the
column is then left out or marked as not measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.records.record import RunRecord
from leaderboard.formatting import (
    fmt_bytes,
    fmt_count,
    fmt_counted_mib,
    fmt_joules,
    fmt_mib,
    fmt_seconds,
    fmt_sig,
)


def _per_image_s(r: RunRecord) -> float | None:
    m = r.measurements
    return m.generate_s / m.n_images if m.n_images > 0 else None


def energy_per_image_j(r: RunRecord) -> float | None:
    """Energy of the generation per image, in joules (None where no meter measured energy)."""
    return r.measurements.energy_per_image_j


def peak_gpu_mib(r: RunRecord) -> float | None:
    return r.measurements.peak_gpu_allocated_mib


def peak_rss_mib(r: RunRecord) -> float | None:
    return r.measurements.peak_rss_mib


def variant_memory_mib(r: RunRecord) -> float | None:
    """The variant's own resident memory during generation (weights plus activations): the
    process's peak less what it held before loading the model. None for records that do not
    carry that baseline."""
    peak, baseline = peak_rss_mib(r), r.measurements.rss_baseline_mib
    return None if peak is None or baseline is None else max(peak - baseline, 0.0)


def tensor_memory_mib(r: RunRecord) -> float | None:
    """Bytes in torch tensors at the CPU generation's peak: weights plus activations, counted."""
    return r.measurements.peak_tensor_mib


def memory_method(r: RunRecord) -> str:
    return r.measurements.memory_method or "shared process"


# --------------------------------------------------------------------------- efficiency columns


@dataclass(frozen=True)
class EfficiencyColumn:
    """One measured figure: how to read it from a record and how to show it."""

    key: str
    label: str
    title: str
    extract: Callable[[RunRecord], float | None]
    fmt: Callable[[float], str]
    lower_is_better: bool | None = True  # None: neither (a caption length is not a score)
    estimated: Callable[[RunRecord], bool] | None = None  # is a record's figure a model estimate
    shown: bool = True  # in the table; every column is in results.json and results.csv
    hardware_bound: bool = True  # only comparable between rows measured on the same hardware

    @property
    def arrow(self) -> str:
        return {True: "↓", False: "↑", None: ""}[self.lower_is_better]


EFFICIENCY_COLUMNS: tuple[EfficiencyColumn, ...] = (
    EfficiencyColumn(
        "peak_gpu_mib",
        "peak GPU",
        "peak GPU memory allocated by torch during the run",
        peak_gpu_mib,
        fmt_mib,
    ),
    EfficiencyColumn(
        "tensor_mib",
        "memory",
        "peak memory in torch tensors during generation on the CPU: the weights plus a batch's "
        "activations, every allocation counted (the CPU's counterpart of peak GPU)",
        tensor_memory_mib,
        fmt_counted_mib,
    ),
    EfficiencyColumn(
        "memory_mib",
        "RSS",
        "the variant's own peak resident memory during generation: the process's peak less "
        "what it held before loading the model (each variant in a fresh process); besides "
        "tensors it holds the allocator's free blocks and the libraries' working memory",
        variant_memory_mib,
        fmt_mib,
    ),
    EfficiencyColumn(
        "peak_rss_mib",
        "peak RSS",
        "peak resident memory of the whole process during generation (runtime included)",
        peak_rss_mib,
        fmt_mib,
        shown=False,
    ),
    EfficiencyColumn(
        "s_per_image",
        "time / image",
        "generation wall time per image (generate_s / n_images), batched as the task says",
        _per_image_s,
        fmt_seconds,
    ),
    EfficiencyColumn(
        "energy_j_per_image",
        "energy / image",
        "energy of the generation per image",
        energy_per_image_j,
        fmt_joules,
        estimated=lambda r: bool(r.measurements.energy_estimated),
    ),
    EfficiencyColumn(
        "tokens_per_image",
        "tokens / image",
        "new tokens per image: a faster variant may simply write shorter captions",
        lambda r: r.measurements.new_tokens_per_image,
        lambda v: f"{v:.1f}",
        lower_is_better=None,
    ),
    EfficiencyColumn(
        "images_per_s",
        "images / s",
        "generation throughput",
        lambda r: r.measurements.images_per_s,
        fmt_sig,
        lower_is_better=False,
        shown=False,
    ),
    EfficiencyColumn(
        "n_parameters",
        "params",
        "number of parameters",
        lambda r: r.model.n_parameters,
        fmt_count,
        hardware_bound=False,
    ),
    EfficiencyColumn(
        "size_bytes",
        "size",
        "size of the weights as loaded",
        lambda r: r.model.size_bytes,
        fmt_bytes,
        hardware_bound=False,
    ),
)
EFFICIENCY_BY_KEY = {c.key: c for c in EFFICIENCY_COLUMNS}


def hardware_label(r: RunRecord) -> str:
    from harness.analysis.hardware import hardware_name

    return hardware_name(r.provenance.hardware)
