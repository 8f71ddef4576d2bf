"""The `rocobench` command line: one module per subcommand, each a thin layer over the harness.

A subcommand module has `register(subparsers)`; add it to SUBCOMMANDS to expose it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harness import __version__
from harness.cli import (
    bench,
    build,
    compare,
    dispatch,
    export_eval_results,
    export_lm_eval,
    jobs,
    ls,
    publish,
    push_variant,
    regress,
    render,
    run,
    run_job,
    score,
    submit,
    sweep,
    validate,
    verify,
)
from harness.cli.common import EXIT_SPEC, CliError
from harness.specs.yamlio import SpecError

SUBCOMMANDS = (
    run,
    sweep,
    dispatch,
    jobs,
    run_job,
    bench,
    build,
    render,
    publish,
    push_variant,
    submit,
    score,
    compare,
    export_lm_eval,
    export_eval_results,
    ls,
    validate,
    regress,
    verify,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rocobench",
        description=(
            "Benchmark compressed vision-language models on radiology image captioning "
            "(ROCOv2): seeded generation, reference-library metrics, versioned records and a "
            "static leaderboard."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rocobench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_SPEC
    except CliError as err:
        print(f"rocobench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rocobench: interrupted; finished records are kept", file=sys.stderr)
        return 130
    except Exception as err:
        from harness.data.dataset import DatasetError
        from harness.metrics import MetricUnavailable
        from harness.metrics.wordnet import WordNetError
        from harness.models.sources import BuildError
        from harness.pipeline.checkpoint import RunLocked

        known = BuildError | DatasetError | MetricUnavailable | RunLocked | WordNetError
        if isinstance(err, known):
            print(f"rocobench: {err}", file=sys.stderr)
            return 1
        raise
