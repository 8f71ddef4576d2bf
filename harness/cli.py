"""The `rocobench` command line. Each subcommand is a thin function over the harness modules."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.paths import REPO_ROOT, TASKS_DIR, VARIANTS_DIR
from harness.yamlio import SpecError

EMBEDDED_TASK = "rocov2_sample"
EXIT_SPEC = 2


class CliError(RuntimeError):
    """A user-facing failure: printed as one line, exit 1."""


def _spec_path(name: str, folder: Path, what: str) -> Path:
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml"):
        if not as_path.exists():
            raise CliError(f"{what} file {as_path} does not exist")
        return as_path
    candidate = folder / f"{name}.yaml"
    if candidate.exists():
        return candidate
    import difflib

    known = sorted(p.stem for p in folder.glob("*.yaml"))
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise CliError(f"unknown {what} {name!r}{hint} (see `rocobench ls`)")


def _load_task(name: str):
    from harness.specs import load_task

    return load_task(_spec_path(name, TASKS_DIR, "task"))


def _load_variant(name: str):
    from harness.specs import load_variant

    return load_variant(_spec_path(name, VARIANTS_DIR, "variant"))


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise CliError(f"--seeds: expected comma-separated integers, got {text!r}") from None


def _all_variants() -> list:
    from harness.specs import load_variant

    return [load_variant(p) for p in sorted(VARIANTS_DIR.glob("*.yaml"))]


# ------------------------------------------------------------------------------- subcommands


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run import run_variant

    task = _load_task(args.task)
    variants = [_load_variant(v) for v in args.variant]  # all validated before any work starts
    start = time.perf_counter()
    for variant in variants:
        run_variant(
            task,
            variant,
            args.results,
            seeds=_seeds(args.seeds),
            device=args.device,
            batch_size=args.batch_size,
            limit=args.limit,
            force=args.force,
            progress=not args.no_progress,
        )
    print(f"records under {args.results}/{task.task}/ ({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.run import run_variant
    from leaderboard.render import render_site

    start = time.perf_counter()
    task = _load_task(EMBEDDED_TASK)
    variants = [v for v in _all_variants() if v.is_embedded]
    print(
        f"embedded benchmark: {task.task} × {len(variants)} variants "
        f"({', '.join(v.id for v in variants)}) × seeds {list(task.seeds)}",
        file=sys.stderr,
    )
    reused = computed = 0
    for variant in variants:
        for outcome in run_variant(
            task,
            variant,
            args.results,
            device=args.device,
            force=args.force,
            progress=not args.no_progress,
        ):
            reused += outcome.reused
            computed += not outcome.reused
    page = render_site(args.results, args.site)
    elapsed = time.perf_counter() - start
    print(f"{computed} runs computed, {reused} reused; results in {args.results}/")
    print(f"leaderboard: {page.resolve()}")
    print(f"took {elapsed:.1f} s")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from leaderboard.render import render_site

    try:
        page = render_site(args.results_dir, args.output)
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"leaderboard: {page.resolve()}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from harness.specs import load_task

    problems: list[str] = []
    print("tasks:")
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        try:
            t = load_task(path)
        except SpecError as err:
            problems += err.problems
            continue
        where = t.dataset_path if not t.is_local else f"{t.dataset_path} (bundled)"
        print(f"  {t.task:<18} {where} [{t.test_split}], seeds {list(t.seeds)}")
    print("variants:")
    from harness.specs import load_variant

    for path in sorted(VARIANTS_DIR.glob("*.yaml")):
        try:
            v = load_variant(path)
        except SpecError as err:
            problems += err.problems
            continue
        base = f"twin:{v.base.twin} (embedded)" if v.is_embedded else f"{v.base.model}"
        chain = " + ".join(t.kind for t in v.techniques) or "base"
        print(f"  {v.id:<22} {base}  [{chain}]")
    for p in problems:
        print(p, file=sys.stderr)
    return EXIT_SPEC if problems else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.specs import load_task, load_variant

    problems: list[str] = []
    for path in args.files:
        loader = load_task if path.resolve().parent == TASKS_DIR.resolve() or args.task else None
        try:
            (loader or load_variant)(path)
        except SpecError as err:
            problems += err.problems
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{len(args.files)} file(s) valid")
    return EXIT_SPEC if problems else 0


# ------------------------------------------------------------------------------------ parser


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

    def common_run(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--results", type=Path, default=Path("results"), help="records folder (results/)"
        )
        p.add_argument(
            "--device",
            choices=["auto", "cpu", "cuda"],
            default="auto",
            help="where to run the model (auto: cuda if available)",
        )
        p.add_argument("--force", action="store_true", help="recompute even finished runs")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser(
        "run",
        help="run a task on one or more variants",
        description="Generate, score and record (task, variant, seed) runs. Finished runs whose "
        "task, manifest and data are unchanged are reused.",
    )
    p.add_argument("--task", required=True, help="task name (tasks/NAME.yaml) or a YAML path")
    p.add_argument(
        "--variant",
        required=True,
        action="append",
        help="variant id (variants/ID.yaml) or a YAML path; repeat for several",
    )
    p.add_argument("--seeds", help="comma-separated seeds (default: the task's)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the task's)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    common_run(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "bench",
        help="the embedded default benchmark (offline, CPU): bundled sample × tiny twins",
        description=f"Run task {EMBEDDED_TASK} on every embedded variant and all its seeds, "
        "then render the leaderboard.",
    )
    common_run(p)
    p.add_argument("--site", type=Path, default=Path("site"), help="site folder (site/)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("render", help="render the static leaderboard from records")
    p.add_argument("results_dir", type=Path, help="folder holding records (e.g. results/)")
    p.add_argument("-o", "--output", type=Path, default=Path("site"), help="site folder (site/)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("ls", help="list tasks and variants")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser(
        "validate",
        help="check task or variant YAML files",
        description="Validate specs: one line per problem (file:line: field: message), exit 2.",
    )
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--task", action="store_true", help="treat the files as task specs")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Bundled and cached artefacts are local; never wait on a hub that cannot be reached unless
    # the user asked for a download (set HF_HUB_OFFLINE=0).
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
        from harness.build import BuildError
        from harness.data import DatasetError

        if isinstance(err, BuildError | DatasetError):
            print(f"rocobench: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["REPO_ROOT", "main"]
