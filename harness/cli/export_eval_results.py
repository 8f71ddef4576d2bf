"""`rocobench export-eval-results`: records as the Hub's `.eval_results/*.yaml` of a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-eval-results",
        help="write a variant's scores as the Hub's Eval Results YAML in its model repository",
        description="Turn one variant's records into `.eval_results/*.yaml` (the Hub's "
        "documented schema: one entry per metric, with source and date; one file per setting) "
        "and commit them to the model repository (or --dry-run / -o DIR). --eval-yaml writes "
        "the eval.yaml that registers the benchmark dataset those entries name.",
    )
    p.add_argument("records", nargs="?", type=Path, help="records folder (e.g. results/)")
    p.add_argument("--model-repo", metavar="ORG/NAME", help="the model repository")
    p.add_argument("--variant", help="whose records (needed when the folder holds several)")
    p.add_argument("--task", help="only this task's records")
    p.add_argument(
        "--benchmark",
        metavar="ORG/NAME",
        help="the benchmark dataset carrying rocobench's eval.yaml (default: the records' dataset)",
    )
    p.add_argument("--source-url", metavar="URL", help="where the results come from (leaderboard)")
    p.add_argument("--source-org", metavar="ORG", help="Hub organisation credited as the source")
    p.add_argument("-o", "--output", type=Path, help="also write the files under this folder")
    p.add_argument("--dry-run", action="store_true", help="print the files; upload nothing")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.add_argument(
        "--eval-yaml",
        type=Path,
        metavar="PATH",
        help="write the benchmark's eval.yaml (every task under tasks/ but the bundled sample) "
        "to PATH and exit",
    )
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from harness.analysis.eval_results import EvalResultsError, eval_results_files

    if args.eval_yaml is not None:
        return _write_eval_yaml(args.eval_yaml)
    if args.records is None or args.model_repo is None:
        raise CliError("give RECORDS and --model-repo (or --eval-yaml PATH)")
    from harness.records.store import atomic_writer, find_records
    from leaderboard.publish import REPO_ID, make_api, redact

    if not REPO_ID.fullmatch(args.model_repo):
        raise CliError(f"--model-repo: expected ORG/NAME, got {args.model_repo!r}")
    if not args.records.is_dir():
        raise CliError(f"{args.records} is not a folder of records")
    records = [r for _, r in find_records(args.records)]
    if args.variant:
        records = [r for r in records if r.variant == args.variant]
    if args.task:
        records = [r for r in records if r.task == args.task]
    if not records:
        raise CliError(f"no records under {args.records} for that selection")
    benchmark = args.benchmark or records[0].dataset.path
    if not REPO_ID.fullmatch(benchmark):
        raise CliError(f"the benchmark must be a Hub dataset id (--benchmark), got {benchmark!r}")
    try:
        files = eval_results_files(
            records, benchmark=benchmark, source_url=args.source_url, source_org=args.source_org
        )
    except EvalResultsError as err:
        raise CliError(str(err)) from None
    for path, text in files.items():
        print(f"# {path}\n{text}")
        if args.output is not None:
            with atomic_writer(args.output / path) as fh:
                fh.write(text)
    if args.dry_run:
        print("dry run: nothing was uploaded", file=sys.stderr)
        return 0
    import io

    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    api = make_api(args.endpoint)
    try:
        head = api.repo_info(args.model_repo).sha
        info = api.create_commit(
            args.model_repo,
            [CommitOperationAdd(p, io.BytesIO(t.encode())) for p, t in files.items()],
            commit_message="rocobench: Eval Results",
            parent_commit=head,
            create_pr=args.create_pr,
        )
    except HfHubHTTPError as err:
        raise CliError(f"the Hub refused: {redact(str(err)).splitlines()[0]}") from None
    print(f"committed {len(files)} files: {info.pr_url or info.commit_url}", file=sys.stderr)
    return 0


def _write_eval_yaml(path: Path) -> int:
    from harness.analysis.eval_results import benchmark_eval_yaml
    from harness.records.store import atomic_writer
    from harness.specs import catalog

    tasks = [catalog.task(name) for name in sorted(catalog.ids("task"))]
    tasks = [t for t in tasks if not t.is_local]
    text = benchmark_eval_yaml(tasks, {t.task: [m.metric for m in t.metric_list] for t in tasks})
    with atomic_writer(path) as fh:
        fh.write(text)
    print(f"wrote {path} ({len(tasks)} tasks)", file=sys.stderr)
    return 0
