"""RunRecord: the one versioned result of (task, variant, seed), and atomic file writes.

The leaderboard is rendered from these records only. Everything needed to trust or redo a number
travels with it: what was evaluated (dataset revision, hash of the ids), with what (model id and
revision, manifest hash), where (hardware, package versions, git SHA) and how long it took.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
SAMPLES_FILE = "samples.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricValue(_Model):
    value: float
    higher_is_better: bool = True
    details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    # Percentile bootstrap 95 % interval over the evaluated pairs (harness.stats: 1,000
    # resamples, seed 0); None in records written before intervals were computed.
    ci95: tuple[float, float] | None = None
    n: int | None = None  # pairs scored


class DatasetRef(_Model):
    path: str  # Hub id, or the folder for a local dataset
    name: str | None = None
    revision: str | None  # Hub commit; for a local folder, "sha256:" + hash of its data files
    split: str
    n_samples: int
    ids_sha256: str  # hash of the evaluated ids in order: two records compare only if equal


class ModelRef(_Model):
    base: str  # Hub id, folder, or "twin:<family>"
    revision: str | None
    family: str
    dtype: str
    manifest_sha256: str
    n_parameters: int
    size_bytes: int  # bytes of the weights as loaded
    # True for `--random-weights` runs: the published architecture with random weights, for
    # time and memory only (not scored, kept apart in seed-<n>-random/, off the leaderboard).
    random_weights: bool = False


class Hardware(_Model):
    device: str  # "cpu" or "cuda"
    cpu: str
    cpu_count: int
    ram_gib: float
    gpus: list[str] = Field(default_factory=list)


class Provenance(_Model):
    rocobench_version: str
    git_sha: str | None
    git_dirty: bool | None
    python: str
    platform: str
    packages: dict[str, str]
    hardware: Hardware
    created_at: str  # ISO 8601, UTC


class PhaseFigures(_Model):
    """What the meters saw during one phase of a run (`harness.meters`); None: not measurable here.

    MiB are 2**20 bytes. GPU energy and device memory are whole-device figures (NVML), shared
    with anything else running on that GPU; CPU and RAM energy are codecarbon's figures for this
    process (estimates unless `Measurements.cpu_energy_method` names a power counter).
    """

    wall_s: float
    peak_rss_mib: float | None = None  # resident memory of the process, peak within the phase
    peak_gpu_allocated_mib: float | None = None  # torch max_memory_allocated, reset per phase
    peak_gpu_reserved_mib: float | None = None  # torch max_memory_reserved, reset per phase
    peak_gpu_process_mib: float | None = None  # NVML: this process's GPU memory, sampled
    peak_gpu_device_mib: float | None = None  # NVML: the devices' used memory, sampled
    gpu_kernel_busy_pct: float | None = None  # NVML utilization.gpu: share of time a kernel ran
    gpu_util_samples: int | None = None
    gpu_energy_j: float | None = None  # NVML energy counter delta (measured)
    cpu_energy_j: float | None = None
    ram_energy_j: float | None = None


class RankFigures(_Model):
    """One process of a data-parallel run (`harness.distributed`): its own generation figures."""

    rank: int
    host: str
    device: str  # "cpu" or "cuda:<local rank>"
    n_images: int  # images this rank generated
    generate: PhaseFigures


class Measurements(_Model):
    """Figures of one run, each with its unit in its name (README: "Measurements").

    Top-level time, token, memory and energy figures cover the generation phase (image loading
    and preprocessing included) unless their name says otherwise; `phases` holds every phase's
    own figures (build, load, generate, score). `metering_version` 0 marks a record written before
    full metering; such records are recomputed.
    """

    metering_version: int = 0
    length_mode: Literal["natural", "fixed"] = "natural"  # fixed: exactly N new tokens, EOS off
    fixed_new_tokens: int | None = None
    # time
    build_s: float | None = None  # applying the technique chain (~0 when its build is cached)
    load_s: float  # loading the built model and processor
    generate_s: float
    score_s: float
    preprocess_s: float | None = None  # image loading, resizing, processor, copy to device
    prefill_s: float | None = None  # sum over batches of the time to the first new token
    decode_s: float | None = None  # sum over batches of first-to-last new token
    ttft_p50_ms: float | None = None  # time to first token of an image (its batch's), median
    decode_ms_per_token: float | None = None  # decode time / decode steps: inter-token latency
    per_image_p50_s: float | None = None  # batch wall time / batch size, per image: median
    per_image_p90_s: float | None = None
    # tokens and throughput
    n_images: int
    new_tokens_total: int
    new_tokens_per_image: float
    images_per_s: float
    tokens_per_s: float
    # memory
    peak_rss_mib: float  # of the generation phase; the load phase's is in `phases`
    peak_gpu_allocated_mib: float | None = None
    peak_gpu_reserved_mib: float | None = None
    peak_gpu_process_mib: float | None = None
    peak_gpu_device_mib: float | None = None
    gpu_kernel_busy_pct: float | None = None
    # energy and CO2 of the generation phase
    energy_j: float | None = None  # gpu + cpu + ram, whichever were available
    gpu_energy_j: float | None = None
    cpu_energy_j: float | None = None
    ram_energy_j: float | None = None
    energy_per_image_j: float | None = None
    energy_per_token_j: float | None = None  # per new token
    co2eq_g: float | None = None
    energy_estimated: bool | None = None  # True when any part of energy_j is a model estimate
    cpu_energy_method: str | None = None
    carbon_country: str | None = None  # ISO 3166-1 alpha-3 whose grid intensity is applied
    carbon_intensity_g_per_kwh: float | None = None
    phases: dict[str, PhaseFigures] = Field(default_factory=dict)
    # Data-parallel runs only: each rank's generation figures. The figures above then combine
    # them: wall time of the slowest rank, energy summed, peak memory the largest.
    ranks: list[RankFigures] = Field(default_factory=list)


class RunRecord(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    task: str
    task_version: str
    task_sha256: str
    variant: str
    variant_description: str = ""
    techniques: list[str] = Field(default_factory=list)
    seed: int
    batch_size: int
    generation: dict[str, Any]
    prompt: str
    metrics: dict[str, MetricValue]
    measurements: Measurements
    dataset: DatasetRef
    model: ModelRef
    provenance: Provenance
    samples_file: str = SAMPLES_FILE
    # The manifest as evaluated, and how its technique chain was built (cache key, per-step
    # figures such as training losses and parameters before/after pruning).
    manifest: dict[str, Any] = Field(default_factory=dict)
    build: dict[str, Any] | None = None
    # Samples whose image could not be loaded, as {"id": ..., "error": ...}: each is scored with
    # an empty prediction (kept in, not dropped, so a broken image cannot inflate a score).
    errors: list[dict[str, str]] = Field(default_factory=list)

    @property
    def run_key(self) -> tuple[str, str, int]:
        return (self.task, self.variant, self.seed)


# --------------------------------------------------------------------------- files and layout


def run_dir(results: Path, task: str, variant: str, seed: int) -> Path:
    return results / task / variant / f"seed-{seed}"


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(out: Path, marker: str = "config.json") -> Iterator[Path]:
    """A temp folder beside `out`, renamed to `out` when the block succeeds: readers never see a
    half-written model. A concurrent builder of the same folder wins or loses (the loser's copy,
    identical by construction, is dropped when `out/marker` already exists)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    with atomic_writer(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=False, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_record(directory: Path, record: RunRecord) -> Path:
    path = directory / RECORD_FILE
    write_json(path, record.model_dump(mode="json"))
    return path


def read_record(path: Path) -> RunRecord:
    return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))


def find_records(results: Path) -> list[tuple[Path, RunRecord]]:
    """Every record under `results`, sorted by (task, variant, seed)."""
    found = [(p, read_record(p)) for p in results.rglob(RECORD_FILE)]
    return sorted(found, key=lambda pr: pr[1].run_key)
