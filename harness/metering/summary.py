"""Phases and batch timings turned into the record's `Measurements`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.metering.base import J_PER_KWH, METERING_VERSION
from harness.metering.clock import BatchTiming
from harness.metering.energy import EnergyInfo
from harness.records.record import Measurements, PhaseFigures

# --------------------------------------------------------------------------- the record


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _sig(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def summarise(
    phases: Mapping[str, PhaseFigures],
    timings: Sequence[BatchTiming],
    new_tokens: Sequence[int],
    *,
    fixed_new_tokens: int | None = None,
    energy: EnergyInfo | None = None,
) -> Measurements:
    """The record's Measurements from the run's phases ("generate" required; "build", "load"
    and "score" when measured), the batch timings and each image's new-token count."""
    gen = phases["generate"]
    n = len(new_tokens)
    tokens = sum(new_tokens)
    wall = gen.wall_s

    per_image = [t.wall_s / t.n_images for t in timings for _ in range(t.n_images)]
    ttft = [
        t.first_token_s for t in timings if t.first_token_s is not None for _ in range(t.n_images)
    ]
    decode_steps = sum(t.decode_steps for t in timings)
    decode_s = sum(t.decode_s for t in timings)

    parts = [gen.gpu_energy_j, gen.cpu_energy_j, gen.ram_energy_j]
    known = [p for p in parts if p is not None]
    total = sum(known) if known else None
    intensity = energy.carbon_intensity_g_per_kwh if energy else None
    estimated = None
    if gen.cpu_energy_j is not None or gen.ram_energy_j is not None:
        estimated = bool(energy and (energy.cpu_estimated or energy.ram_estimated))
    elif gen.gpu_energy_j is not None:
        estimated = False

    return Measurements(
        metering_version=METERING_VERSION,
        length_mode="fixed" if fixed_new_tokens else "natural",
        fixed_new_tokens=fixed_new_tokens,
        build_s=phases["build"].wall_s if "build" in phases else None,
        load_s=phases["load"].wall_s if "load" in phases else 0.0,
        generate_s=wall,
        score_s=phases["score"].wall_s if "score" in phases else 0.0,
        preprocess_s=_r(sum(t.preprocess_s for t in timings)) if timings else None,
        prefill_s=_r(sum(t.first_token_s or 0.0 for t in timings)) if timings else None,
        decode_s=_r(decode_s) if timings else None,
        ttft_p50_ms=_r(percentile(ttft, 50) * 1000, 3) if ttft else None,
        decode_ms_per_token=_r(decode_s / decode_steps * 1000, 3) if decode_steps else None,
        per_image_p50_s=_r(percentile(per_image, 50), 5) if per_image else None,
        per_image_p90_s=_r(percentile(per_image, 90), 5) if per_image else None,
        n_images=n,
        new_tokens_total=tokens,
        new_tokens_per_image=tokens / n if n else 0.0,
        images_per_s=n / wall if wall else 0.0,
        tokens_per_s=tokens / wall if wall else 0.0,
        peak_rss_mib=gen.peak_rss_mib or 0.0,
        peak_gpu_allocated_mib=gen.peak_gpu_allocated_mib,
        peak_gpu_reserved_mib=gen.peak_gpu_reserved_mib,
        peak_gpu_process_mib=gen.peak_gpu_process_mib,
        peak_gpu_device_mib=gen.peak_gpu_device_mib,
        gpu_kernel_busy_pct=gen.gpu_kernel_busy_pct,
        energy_j=_sig(total),
        gpu_energy_j=_sig(gen.gpu_energy_j),
        cpu_energy_j=_sig(gen.cpu_energy_j),
        ram_energy_j=_sig(gen.ram_energy_j),
        energy_per_image_j=_sig(total / n) if total is not None and n else None,
        energy_per_token_j=_sig(total / tokens) if total is not None and tokens else None,
        co2eq_g=_sig(total / J_PER_KWH * intensity) if total is not None and intensity else None,
        energy_estimated=estimated,
        cpu_energy_method=energy.cpu_method if energy and gen.cpu_energy_j is not None else None,
        carbon_country=energy.country if energy else None,
        carbon_intensity_g_per_kwh=_sig(intensity),
        phases=dict(phases),
    )
