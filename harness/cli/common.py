"""Helpers shared by the subcommands: resolving names to spec files, one-line errors."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from harness.paths import TASKS_DIR, VARIANTS_DIR

if TYPE_CHECKING:
    from harness.specs import TaskSpec, VariantSpec
    from harness.suites import Suite

EXIT_SPEC = 2  # a spec (YAML) problem
EMBEDDED_SUITE = "embedded"


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit 1."""


def spec_path(name: str, folder: Path, what: str) -> Path:
    """A spec given by id (`folder/ID.yaml`) or as a path."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml"):
        if not as_path.exists():
            raise CliError(f"{what} file {as_path} does not exist")
        return as_path
    candidate = folder / f"{name}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise CliError(f"unknown {what} {name!r}{hint} (see `rocobench ls`)")


def load_task_arg(name: str) -> TaskSpec:
    from harness.specs import load_task

    return load_task(spec_path(name, TASKS_DIR, "task"))


def load_variant_arg(name: str) -> VariantSpec:
    from harness.specs import load_variant

    return load_variant(spec_path(name, VARIANTS_DIR, "variant"))


def load_suite_arg(name: str) -> Suite:
    from harness.suites import SUITES_DIR, load_suite

    return load_suite(spec_path(name, SUITES_DIR, "suite"))


def all_variants() -> list[VariantSpec]:
    from harness.specs import load_variant

    return [load_variant(p) for p in sorted(VARIANTS_DIR.glob("*.yaml"))]


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
    from harness.meters import carbon_country

    try:
        return carbon_country(value)
    except ValueError as err:
        raise CliError(f"--carbon-country: {err}") from None
