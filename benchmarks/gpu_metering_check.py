"""GPU check of the meters: metered generation on a full-size Qwen2-VL-2B with random weights.

The architecture is Qwen2-VL-2B-Instruct's published configuration (2.2 B parameters); the
weights are random (bfloat16, built on the GPU) and the tokenizer and processor are the tiny
twin's, whose special-token ids the configuration keeps. Every caption is exactly `--tokens`
tokens (fixed-length mode): random weights would otherwise stop at random.

Checks: NVML's energy counter moved (energy > 0) and torch's peak allocated memory is at least
the weights' size; then prints the figures and a card of the machine. Without a CUDA device it
builds the configuration, counts its parameters on the meta device and stops cleanly.

    .venv/bin/python benchmarks/gpu_metering_check.py [--images 32] [--batch-size 8]
        [--tokens 64] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MIB = 2**20

# Qwen/Qwen2-VL-2B-Instruct's config.json (text and vision dimensions)
TEXT = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
    },
    "tie_word_embeddings": True,
}
VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "hidden_act": "quick_gelu",
}
PUBLISHED_PARAMETERS = 2_208_985_600  # Qwen2-VL-2B-Instruct, embeddings tied


def full_size_config(twin: Path) -> Any:
    """The twin's configuration (its token ids) with Qwen2-VL-2B's dimensions."""
    from transformers import Qwen2VLConfig

    cfg = json.loads((twin / "config.json").read_text())
    for key in ("transformers_version", "dtype"):
        cfg.pop(key, None)
    text = {k: v for k, v in cfg["text_config"].items() if k not in ("layer_types", "dtype")}
    cfg["text_config"] = text | TEXT
    cfg["vision_config"] = {
        k: v for k, v in cfg["vision_config"].items() if k not in ("dtype",)
    } | VISION
    cfg.pop("model_type", None)
    return Qwen2VLConfig(**cfg)


def card() -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1)}
        try:
            import pynvml

            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:
            pass
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per image (fixed)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        Qwen2VLForConditionalGeneration,
    )

    from harness.data.dataset import load_split
    from harness.metering.clock import BatchTiming
    from harness.metering.session import Metering
    from harness.metering.summary import summarise
    from harness.models.families import FAMILIES
    from harness.models.twins import build_twin
    from harness.paths import REPO_ROOT
    from harness.pipeline.generate import generate_all
    from harness.pipeline.runner import quiet_libraries
    from harness.specs.task import load_task

    quiet_libraries()
    twin = build_twin("qwen2_vl")
    config = full_size_config(twin)
    with torch.device("meta"):
        shape = Qwen2VLForConditionalGeneration(config)
    n_params = sum(p.numel() for p in shape.parameters())
    del shape
    print(
        f"Qwen2-VL-2B architecture: {n_params:,} parameters "
        f"(published: {PUBLISHED_PARAMETERS:,}); tokenizer and processor from {twin}"
    )
    if abs(n_params - PUBLISHED_PARAMETERS) > 0.01 * PUBLISHED_PARAMETERS:
        print("FAIL: the parameter count is not Qwen2-VL-2B's", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU metering check needs one; nothing was measured")
        return 0

    task = load_task(REPO_ROOT / "tasks" / "rocov2_sample.yaml")
    evalset = load_split(task, limit=args.images)
    processor = AutoProcessor.from_pretrained(twin)
    metering = Metering.standard("cuda")  # codecarbon's probe and NVML set-up: before any phase
    with metering.phase("load") as load:
        with torch.device("cuda"):
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
        model.eval()
        torch.cuda.synchronize()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weight_bytes += sum(b.numel() * b.element_size() for b in model.buffers())

    def generate(timings: list[BatchTiming] | None = None) -> list:
        return generate_all(
            model, processor, FAMILIES.get("qwen2_vl"), evalset.items(), task.doc_to_text,
            task.generation_kwargs, 0, args.batch_size, task.preprocessing.image,
            fixed_new_tokens=args.tokens, timings=timings,
        )  # fmt: skip

    generate()  # warm-up: CUDA kernels and allocator, outside the measured phase
    timings: list[BatchTiming] = []
    with metering.phase("generate") as gen:
        preds = generate(timings)
    m = summarise(
        {"load": load.result, "generate": gen.result},
        timings,
        [p.new_tokens for p in preds],
        fixed_new_tokens=args.tokens,
        energy=metering.energy,
    )
    out = {
        "card": card(),
        "n_parameters": n_params,
        "weights_mib": round(weight_bytes / MIB, 1),
        "workload": {"images": len(preds), "batch_size": args.batch_size, "tokens": args.tokens},
        "measurements": m.model_dump(mode="json"),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")

    problems = []
    if not (m.gpu_energy_j and m.gpu_energy_j > 0):
        problems.append(f"NVML energy is {m.gpu_energy_j!r}, expected > 0")
    if m.peak_gpu_allocated_mib is None or m.peak_gpu_allocated_mib < weight_bytes / MIB:
        weights = f"{weight_bytes / MIB:.0f} MiB"
        problems.append(f"peak allocated {m.peak_gpu_allocated_mib!r} MiB < weights {weights}")
    if m.peak_gpu_process_mib is not None and m.peak_gpu_process_mib < weight_bytes / MIB:
        problems.append(f"NVML process memory {m.peak_gpu_process_mib} MiB < weights")
    if m.gpu_kernel_busy_pct is None:
        problems.append("no NVML utilisation samples")
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if not problems:
        print(
            f"OK: {m.gpu_energy_j:.1f} J on the GPU ({m.energy_per_token_j:.4g} J per token, "
            f"all parts), peak allocated {m.peak_gpu_allocated_mib:,.0f} MiB >= weights "
            f"{weight_bytes / MIB:,.0f} MiB, kernels busy {m.gpu_kernel_busy_pct:.0f} % of the time"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
