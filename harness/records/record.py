"""RunRecord: the one versioned result of (task, variant, seed).

The leaderboard is rendered from these records only. Everything needed to trust or redo a number
travels with it: what was evaluated (dataset revision, hash of the ids), with what (model id and
revision, manifest hash), where (hardware, package versions, git SHA) and how long it took.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricValue(_Model):
    value: float
    higher_is_better: bool = True
    details: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    # Percentile bootstrap 95 % interval over the evaluated pairs (harness.metrics.stats: 1,000
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
    size_bytes: int  # bytes of the weights as loaded (harness.models.weights: 4-bit packed)
    # The weights as loaded: bytes per storage ("float32", "nf4 (4-bit)", ...) and the
    # quantisation, if any; `dtype` is the dtype asked for (the compute dtype of 4-bit layers).
    weight_storage: dict[str, int] = Field(default_factory=dict)
    quantization: str | None = None
    # True for `--random-weights` runs: the published architecture with random weights, for
    # time and memory only (not scored, kept apart in seed-<n>-random/, off the leaderboard).
    random_weights: bool = False


class Hardware(_Model):
    device: str  # "cpu" or "cuda"
    cpu: str
    cpu_count: int
    ram_gib: float
    gpus: list[str] = Field(default_factory=list)


class JobRef(_Model):
    """The Hugging Face Job that produced a record (`rocobench dispatch`): what a verifier checks
    against the Hub (`inspect_job`: the Job exists, carries the dispatch label, ran this run)."""

    platform: Literal["hf-jobs"] = "hf-jobs"
    dispatch: str  # the maintainer's dispatch label, also a label of the Job
    job_id: str | None  # None when the Job could not look itself up
    namespace: str | None = None
    flavor: str | None = None
    url: str | None = None


class Provenance(_Model):
    rocobench_version: str
    git_sha: str | None
    git_dirty: bool | None
    python: str
    platform: str
    packages: dict[str, str]
    hardware: Hardware
    created_at: str  # ISO 8601, UTC
    job: JobRef | None = None  # set by `rocobench run-job` inside a dispatched Job only


class PhaseFigures(_Model):
    """What the meters saw during one phase of a run (`harness.metering`); None: not measurable.

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
    """One process of a data-parallel run (`harness.scale.distributed`): its own generation
    figures."""

    rank: int
    host: str
    device: str  # "cpu" or "cuda:<local rank>"
    n_images: int  # images this rank generated
    generate: PhaseFigures


class Measurements(_Model):
    """Figures of one run, each with its unit in its name (docs/measurements.md).

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
    # Resident memory of the process just before the model was loaded: what the runtime holds
    # (interpreter, libraries, data). peak_rss_mib - rss_baseline_mib is the variant's own share:
    # weights plus activations. `memory_method` says how the process was kept clean of other
    # variants: "fresh process" (one process per variant) or "shared process" (figures may
    # include what earlier work of the same process left behind).
    rss_baseline_mib: float | None = None
    memory_method: str | None = None
    # Bytes held in torch tensors at the peak of generation, CPU runs only: the weights as loaded
    # plus the peak of a batch's activations, counted allocation by allocation (the CPU's
    # counterpart of peak_gpu_allocated_mib). Counted over the seed's heaviest batch (most
    # images, then the longest caption), generated once more after the timed phase
    # (`harness.pipeline.seed.count_activations`).
    peak_tensor_mib: float | None = None
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


class BackendRef(_Model):
    """The engine that generated the captions. Runs of different backends are distinct runs
    (their own seed folders, their own leaderboard rows), never averaged together."""

    name: Literal["hf", "vllm"] = "hf"  # transformers `generate` in-process, or a vLLM worker
    version: str | None = None  # of transformers or vLLM
    settings: dict[str, Any] = Field(default_factory=dict)  # engine arguments and switches


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
    samples_file: str = "samples.jsonl"  # harness.records.layout.SAMPLES_FILE
    # The manifest as evaluated, and how its technique chain was built (cache key, per-step
    # figures such as training losses and parameters before/after pruning).
    manifest: dict[str, Any] = Field(default_factory=dict)
    build: dict[str, Any] | None = None
    # Samples whose image could not be loaded, as {"id": ..., "error": ...}: each is scored with
    # an empty prediction (kept in, not dropped, so a broken image cannot inflate a score).
    errors: list[dict[str, str]] = Field(default_factory=list)
    backend: BackendRef = Field(default_factory=BackendRef)  # records before it: transformers

    @property
    def run_key(self) -> tuple[str, str, int]:
        return (self.task, self.variant, self.seed)
