"""What the subcommands share: run options, argument types and one-line errors."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from harness.specs.limits import MAX_BATCH, MAX_LIMIT, MAX_NEW_TOKENS, MAX_SEED, MAX_SEEDS

EXIT_SPEC = 2  # a spec (YAML) problem
EMBEDDED_SUITE = "embedded"


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit `code` (1; 2 for bad input)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1,2`: distinct integers in the seed range; None when the option is absent."""
    from harness.specs.yamlio import shown

    if text is None:
        return None
    parts = [s.strip() for s in text.split(",")]
    try:
        seeds = [int(s) for s in parts]
    except ValueError:
        raise CliError(
            f"--seeds: expected comma-separated integers such as 0,1,2, got {shown(text)}",
            EXIT_SPEC,
        ) from None
    if not seeds or len(seeds) > MAX_SEEDS:
        raise CliError(f"--seeds: give 1 to {MAX_SEEDS} seeds", EXIT_SPEC)
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise CliError(f"--seeds: each seed must be in 0..{MAX_SEED}", EXIT_SPEC)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise CliError(f"--seeds: {', '.join(map(str, repeated))} given more than once", EXIT_SPEC)
    return seeds


def add_run_options(p: argparse.ArgumentParser, *, uri: bool = False) -> None:
    """Options every command that runs models shares; `uri`: --results may be an fsspec URI."""
    if uri:
        p.add_argument(
            "--results",
            default="results",
            help="records folder or fsspec URI (s3://…, gs://…, file://…; default: results/)",
        )
    else:
        p.add_argument(
            "--results",
            type=Path,
            default=Path("results"),
            help="records folder (default: results/)",
        )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to run the model (auto: cuda if available)",
    )
    p.add_argument("--force", action="store_true", help="recompute even finished runs")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--fixed-new-tokens",
        type=bounded_int(1, MAX_NEW_TOKENS),
        metavar="N",
        help="generate exactly N new tokens per image, EOS ignored: speed comparisons "
        "independent of caption length (recorded in seed-<n>-fixed-<N>/; default: real lengths), "
        "e.g. --fixed-new-tokens 128",
    )
    p.add_argument(
        "--backend",
        choices=["hf", "vllm"],
        default="hf",
        help="generation engine: hf (transformers generate, in this process; default) or vllm "
        "(a worker in the vLLM environment of `make install-vllm`; records in seed-<n>-vllm/)",
    )
    p.add_argument(
        "--carbon-country",
        metavar="ISO3",
        help="country whose grid carbon intensity turns energy into CO2, as an ISO 3166-1 "
        "alpha-3 code (default: $ROCOBENCH_CARBON_COUNTRY, else USA)",
    )


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; argparse turns the error into exit 2."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer in {low}..{high}, got {text[:40]!r}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in (low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low < value <= high):
            raise argparse.ArgumentTypeError(
                f"expected a number above {low:g} and at most {high:g}, got {text[:40]!r}"
            )
        return value

    parse.__name__ = "number"
    return parse


def positive_int(text: str) -> int:
    """An integer of at least 1 (no upper bound beyond the machine's)."""
    return bounded_int(1, 2**63 - 1)(text)


def add_batch_and_limit(p: argparse.ArgumentParser) -> None:
    """--batch-size and --limit, bounded like the task fields they override."""
    p.add_argument(
        "--batch-size",
        type=bounded_int(1, MAX_BATCH),
        metavar="N",
        help=f"images per batch, 1..{MAX_BATCH} (default: the task's), e.g. --batch-size 4",
    )
    p.add_argument(
        "--limit",
        type=bounded_int(1, MAX_LIMIT),
        metavar="N",
        help="evaluate only the first N images (default: all), e.g. --limit 20",
    )


def check_carbon_country(value: str | None) -> str:
    """The carbon country to use, checked before any work (codecarbon must know its grid)."""
    from harness.metering.energy import carbon_country

    try:
        return carbon_country(value)
    except ValueError as err:
        raise CliError(f"--carbon-country: {err}") from None
