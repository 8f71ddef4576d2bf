"""What the subcommands share: run options, argument types and one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_SPEC = 2  # a spec (YAML) problem
EMBEDDED_SUITE = "embedded"


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit 1."""


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seeds: expected comma-separated integers, got {text!r}") from None


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
        type=positive_int,
        metavar="N",
        help="generate exactly N new tokens per image, EOS ignored: speed comparisons "
        "independent of caption length (recorded in seed-<n>-fixed-<N>/; default: real lengths)",
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_carbon_country(value: str | None) -> str:
    """The carbon country to use, checked before any work (codecarbon must know its grid)."""
    from harness.metering.energy import carbon_country

    try:
        return carbon_country(value)
    except ValueError as err:
        raise CliError(f"--carbon-country: {err}") from None
