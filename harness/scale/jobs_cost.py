"""What a dispatch costs: Jobs prices (live from `list_jobs_hardware`, else the dated snapshot
`jobs_hardware.json` beside this module) and a stated time model per Job.

The time model is not a measurement: setup and downloads, training steps at 30 % of the GPU's
dense bf16 peak, and decoding as memory-bound steps (the weights read once per generated token
per batch, at half the memory bandwidth, never under 30 ms a step). A base, split or GPU missing
from its tables gets no estimate rather than a made-up one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.paths import REPO_ROOT

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from harness.specs.task import TaskSpec
    from harness.specs.variant import VariantSpec

SNAPSHOT = Path(__file__).with_name("jobs_hardware.json")


class UnknownFlavor(ValueError):
    """A flavour the price table does not list."""


# --------------------------------------------------------------------------- prices


@dataclass(frozen=True)
class Flavor:
    name: str
    pretty_name: str
    usd_per_hour: float
    gpu: str | None  # accelerator model, e.g. "A100"; None for CPU flavours
    gpus: int
    vram: str | None


@dataclass(frozen=True)
class PriceTable:
    flavors: dict[str, Flavor]
    source: str  # where the prices come from, said in every plan
    accelerators: dict[str, dict[str, float]]  # bandwidth and peak figures for estimates
    unreachable: bool = False  # the Hub did not answer at all (no network): skip other calls

    def flavor(self, name: str) -> Flavor:
        if name not in self.flavors:
            import difflib

            near = difflib.get_close_matches(name, list(self.flavors), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise UnknownFlavor(f"unknown Jobs flavour {name!r}{hint} (known: {len(self.flavors)})")
        return self.flavors[name]


def _flavor(raw: Any) -> Flavor:
    """From huggingface_hub's JobHardwareInfo (or the same fields of the snapshot)."""
    accelerator = raw.accelerator
    per_unit = float(raw.unit_cost_usd)
    per_hour = per_unit * {"minute": 60, "hour": 1, "second": 3600}.get(raw.unit_label, 60)
    return Flavor(
        name=raw.name,
        pretty_name=raw.pretty_name,
        usd_per_hour=round(per_hour, 4),
        gpu=accelerator.model if accelerator else None,
        gpus=int(accelerator.quantity) if accelerator else 0,
        vram=accelerator.vram if accelerator else None,
    )


def load_prices(api: HfApi | None, *, offline: bool) -> PriceTable:
    """Live prices from `list_jobs_hardware`, else the repository's dated snapshot."""
    from huggingface_hub import JobHardwareInfo

    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    accelerators = {k: v for k, v in snapshot["accelerators"].items() if not k.startswith("_")}
    reason = "HF_HUB_OFFLINE is set" if offline else None
    unreachable = False
    if api is not None and not offline:
        try:
            live = api.list_jobs_hardware()
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            flavors = {h.name: _flavor(h) for h in live}
            return PriceTable(flavors, f"live: list_jobs_hardware at {stamp}", accelerators)
        except Exception as err:  # unreachable Hub, no network: the snapshot says so
            from huggingface_hub.errors import HfHubHTTPError

            unreachable = not isinstance(err, HfHubHTTPError)
            reason = f"the Hub did not answer ({type(err).__name__})"
    flavors = {h["name"]: _flavor(JobHardwareInfo(**h)) for h in snapshot["hardware"]}
    source = f"offline snapshot of {snapshot['date']} ({SNAPSHOT.name}; {reason})"
    return PriceTable(flavors, source, accelerators, unreachable)


# --------------------------------------------------------------------------- time estimates

# Parameters (billions) and image tokens per prompt of the bases the manifests name. A base not
# listed here gets no estimate (the plan says so) rather than a made-up one.
BASES: dict[str, tuple[float, int]] = {
    "Qwen/Qwen2-VL-2B-Instruct": (2.21, 64),  # 224×224 pinned: 64 image tokens
    "meta-llama/Llama-3.2-11B-Vision-Instruct": (10.67, 0),  # images enter by cross-attention
    "llava-hf/llava-1.5-7b-hf": (7.06, 576),
    "llava-hf/llava-1.5-13b-hf": (13.35, 576),
}
TWIN_PARAMS_B = 0.01
# Image counts of the Hub splits the tasks name (docs/tasks.md); local folders are
# counted.
SPLIT_SIZES: dict[tuple[str, str], int] = {
    ("unsloth/Radiology_mini", "test"): 327,
    ("unsloth/Radiology_mini", "train"): 1978,
    ("eltorio/ROCOv2-radiology", "test"): 9927,
    ("eltorio/ROCOv2-radiology", "train"): 59962,
}
SETUP_S = 600.0  # image pull, clone, install of torch and the rest (a few GB of wheels)
DOWNLOAD_BYTES_PER_S = 150e6
DISK_BYTES_PER_S = 1e9
PROMPT_TEXT_TOKENS = 60
CAPTION_TOKENS = 60
DECODE_EFFICIENCY = 0.5  # share of the memory bandwidth a decode step reaches
STEP_FLOOR_S = 0.03  # per decode step: Python, sampling and kernel launches
FOUR_BIT_STEP_FACTOR = 1.5  # NF4 dequantisation: 1.3–2× slower per token (public figures)
TRAIN_MFU = 0.3
SCORE_S = 90.0  # BERTScore's backbone load and the metrics of a few hundred captions


@dataclass(frozen=True)
class Estimate:
    setup_s: float
    build_s: float
    per_seed_s: float  # load + generate + score of one seed
    seeds: int
    usd_per_hour: float
    basis: str  # one line: what the figures rest on

    @property
    def total_s(self) -> float:
        return self.setup_s + self.build_s + self.seeds * self.per_seed_s

    @property
    def usd(self) -> float:
        return self.total_s / 3600 * self.usd_per_hour


def split_size(dataset_path: str, split: str, source: Path | None) -> int | None:
    """Images in a split: counted from a local folder's parquet footers, else the table above."""
    from harness.specs.refs import is_local

    if is_local(dataset_path):
        import pyarrow.parquet as pq

        base = (source.parent if source else REPO_ROOT) / dataset_path
        parts = sorted(base.glob(f"**/{split}-*.parquet"))
        return sum(pq.ParquetFile(p).metadata.num_rows for p in parts) if parts else None
    return SPLIT_SIZES.get((dataset_path, split))


def pruned_share(heads: float, ffn: float) -> float:
    """Share of the parameters left after pruning: heads and FFN neurons hold about 60 % of
    them, and the larger of the two fractions is taken for both."""
    return 1 - 0.6 * max(heads, ffn)


def quantized_at_generation(variant: VariantSpec) -> bool:
    """Whether generation runs on quantized weights: after `quantize`, or `qlora` without
    merging its adapter, unless a later `distill`, `prune` or merging `qlora` made them dense
    (a `source` adapter keeps what it is put on)."""
    quantized = False
    for technique in variant.techniques:
        if technique.kind == "quantize":
            quantized = True
        elif technique.kind == "qlora":
            quantized = not technique.merge
        elif technique.kind in ("distill", "prune"):
            quantized = False
    return quantized


def _base_figures(variant: VariantSpec) -> tuple[float, int] | None:
    if variant.base.twin is not None:
        return TWIN_PARAMS_B, 16
    return BASES.get(variant.base.model or "")


def estimate_job(
    task: TaskSpec,
    variant: VariantSpec,
    n_seeds: int,
    flavor: Flavor,
    accelerators: dict[str, dict[str, float]],
    *,
    build: bool = True,
) -> Estimate | None:
    """Time and cost of one Job running `n_seeds` seeds of (task, variant); None: unknown."""
    figures = _base_figures(variant)
    gpu = accelerators.get(flavor.gpu or "")
    n_images = task.limit or split_size(task.dataset_path, task.test_split, task.source)
    if figures is None or gpu is None or n_images is None:
        return None
    params_b, image_tokens = figures
    bandwidth = gpu["bandwidth_gb_s"] * 1e9
    flops = gpu["bf16_tflops"] * 1e12
    bytes_per_param = 0.55 if quantized_at_generation(variant) else 2.0
    shrink = 1.0
    download = params_b * 1e9 * 2
    build_s = 0.0
    for technique in variant.techniques:
        spec = technique.model_dump(mode="json")
        if technique.kind == "prune":
            shrink *= pruned_share(float(spec.get("heads", 0)), float(spec.get("ffn", 0)))
            build_s += 120
        train = spec.get("train")
        if isinstance(train, dict):
            n_train = split_size(task.dataset_path, task.training_split or "train", task.source)
            if n_train is None:
                return None
            tokens = image_tokens + PROMPT_TEXT_TOKENS + CAPTION_TOKENS
            per_example = 6 * params_b * 1e9 * tokens
            teacher = spec.get("teacher") or {}
            teacher_figures = BASES.get(str(teacher.get("model", "")))
            if technique.kind == "distill" and teacher_figures is not None:
                per_example += 2 * teacher_figures[0] * 1e9 * tokens
                download += teacher_figures[0] * 1e9 * 2
            build_s += int(train.get("epochs", 1)) * n_train * per_example / (flops * TRAIN_MFU)
    weight_bytes = params_b * 1e9 * shrink * bytes_per_param
    step = max(weight_bytes / (bandwidth * DECODE_EFFICIENCY), STEP_FLOOR_S)
    if bytes_per_param < 2:
        step *= FOUR_BIT_STEP_FACTOR
    batches = math.ceil(n_images / task.batch_size)
    generate_s = batches * task.generation_kwargs.max_new_tokens * step
    prefill_s = n_images * 2 * params_b * 1e9 * (image_tokens + PROMPT_TEXT_TOKENS) / (flops * 0.4)
    load_s = 20 + weight_bytes / DISK_BYTES_PER_S
    setup_s = SETUP_S + download / DOWNLOAD_BYTES_PER_S
    basis = (
        f"{n_images} images, {params_b * shrink:.2f}B params at {bytes_per_param:g} B/param, "
        f"{flavor.gpu} {gpu['bandwidth_gb_s']:g} GB/s, {gpu['bf16_tflops']:g} TFLOPS"
    )
    return Estimate(
        setup_s=setup_s,
        build_s=build_s if build else 0.0,
        per_seed_s=load_s + generate_s + prefill_s + SCORE_S,
        seeds=n_seeds,
        usd_per_hour=flavor.usd_per_hour,
        basis=basis,
    )


def timeout_for(estimate: Estimate | None) -> int:
    """Twice the estimate, at least two hours, in whole half hours: a stuck Job stops billing
    (the Hub's default of 30 minutes would stop every real run)."""
    if estimate is None:
        return 6 * 3600
    return max(2 * 3600, math.ceil(2 * estimate.total_s / 1800) * 1800)
