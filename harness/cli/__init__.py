"""The `rocobench` command line: one module per subcommand, each a thin layer over the harness.

A subcommand module has `register(subparsers)`; add it to SUBCOMMANDS to expose it.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

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
from harness.specs.yamlio import SpecError, has_credentials

# errnos that are the environment's doing, reported as one line rather than a traceback
IO_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOTDIR}
    | {errno.EISDIR, errno.EMFILE, errno.ENFILE, errno.EFBIG}
)

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


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`rocobench run: --limit: …`), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_SPEC, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(has_credentials(a) for a in argv):
        # never echoed: the line may end up in logs, CI output or an issue
        print(
            "rocobench: an argument holds a URL with credentials (not shown); give tokens "
            "through the environment (HF_TOKEN, the storage's own variables), not in addresses",
            file=sys.stderr,
        )
        return EXIT_SPEC
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return EXIT_SPEC
    except CliError as err:
        print(f"rocobench: {err}", file=sys.stderr)
        return err.code
    except OSError as err:
        if err.errno not in IO_ERRNOS:
            raise
        # a read-only folder, a full disk, a missing permission: the path and the reason
        where = f"{err.filename}: " if err.filename else ""
        print(f"rocobench: {where}{err.strerror or err}", file=sys.stderr)
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
