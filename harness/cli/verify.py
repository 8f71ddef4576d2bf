"""`rocobench verify`: check records (re-score, hashes, provenance, plausibility)."""

from __future__ import annotations

import argparse
import json
import sys

from harness.cli.common import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check records: re-score from samples, spec hashes, provenance, plausibility",
        description="Check every record under each PATH (a results folder, a record.json, or "
        "hf://datasets/ORG/NAME[@REV]). Each record is `verified` (passes, from a --trusted "
        "source, outside any contributor folder), `checked` (passes) or `rejected` (with the "
        "reasons). Exit 1 when any record is rejected.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--trusted",
        action="append",
        default=[],
        metavar="PATH",
        help="a source written by a maintainer's job: its own records count as verified",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="reject a record whose metric cannot be recomputed here (backbone not available)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="no repository checks and no model-based metrics (what render and regress do)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    p.add_argument(
        "--open-prs",
        action="store_true",
        help="for each hf://datasets/ORG/NAME, check its open pull requests instead "
        "(each at refs/pr/N)",
    )
    p.add_argument(
        "--comment",
        action="store_true",
        help="with --open-prs: post each pull request's outcome on it (needs a token)",
    )
    p.add_argument(
        "--maintainer",
        action="append",
        default=None,
        metavar="NAME",
        help="a record of an hf:// dataset that names a dispatched Job is verified when that Job "
        "wrote it and one of these accounts started it (default: any account); repeatable",
    )
    p.add_argument("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT)")
    p.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    from harness.analysis.verify import verify_paths
    from harness.records.sources import SourceError, open_sources

    paths = list(args.paths)
    if args.open_prs:
        paths = _open_pull_requests(paths, args.endpoint)
        if not paths:
            print("no open pull requests", file=sys.stderr)
            return 0
    try:
        sources = open_sources(paths, endpoint=args.endpoint)
    except SourceError as err:
        raise CliError(str(err)) from None
    with sources:
        if not sources.files:
            raise CliError(f"no records found under {', '.join(paths)}")
        trusted = set(args.trusted)
        verdicts = verify_paths(
            (
                (f.path, f.label, f.contributor, f.source in trusted and not f.contributor)
                for f in sources.files
            ),
            depth="samples" if args.quick else "full",
            strict=args.strict,
        )
        _check_jobs(sources.files, verdicts, args.maintainer, args.endpoint)
    for v in verdicts:
        if args.json:
            print(
                json.dumps(
                    {
                        "path": v.path,
                        "status": v.status,
                        "reasons": v.reasons,
                        "notes": v.notes,
                        "contributor": v.contributor,
                    }
                )
            )
        else:
            print("\n".join(v.lines()))
    if args.comment:
        _comment(sources.files, verdicts, args.endpoint)
    counts = {s: sum(v.status == s for v in verdicts) for s in ("verified", "checked", "rejected")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=sys.stderr)
    return 1 if counts["rejected"] else 0


def _open_pull_requests(paths: list[str], endpoint: str | None) -> list[str]:
    """hf://datasets/ORG/NAME -> one hf://datasets/ORG/NAME@refs/pr/N per open pull request."""
    from harness.records.sources import HF_DATASET
    from leaderboard.publish import make_api

    api = make_api(endpoint)
    out = []
    for path in paths:
        m = HF_DATASET.fullmatch(path.rstrip("/"))
        if m is None or m.group("rev") or m.group("sub"):
            raise CliError(f"--open-prs: {path} is not hf://datasets/ORG/NAME")
        prs = api.get_repo_discussions(
            m.group("repo"),
            discussion_type="pull_request",
            discussion_status="open",
            repo_type="dataset",
        )
        out += [f"{path.rstrip('/')}@refs/pr/{pr.num}" for pr in prs if pr.is_pull_request]
    return out


def _comment(files, verdicts, endpoint: str | None) -> None:  # type: ignore[no-untyped-def]
    """Post each pull request's verdicts on it: counts, and every rejected record's reasons."""
    import re

    from leaderboard.publish import make_api

    api = make_api(endpoint)
    by_pr: dict[tuple[str, int], list] = {}  # type: ignore[type-arg]
    for f, v in zip(files, verdicts, strict=True):
        m = re.fullmatch(r"hf://datasets/([^@]+)@refs/pr/(\d+)", f.source)
        if m is not None:
            by_pr.setdefault((m.group(1), int(m.group(2))), []).append(v)
    for (repo, num), group in by_pr.items():
        counts = {s: sum(v.status == s for v in group) for s in ("checked", "rejected")}
        lines = [f"`rocobench verify`: {counts['checked']} checked, {counts['rejected']} rejected."]
        for v in group:
            if v.status == "rejected":
                lines += ["", f"**rejected** `{v.path}`"] + [f"- {r}" for r in v.reasons[:20]]
        api.comment_discussion(repo, num, "\n".join(lines), repo_type="dataset")


def _check_jobs(files, verdicts, maintainers: list[str] | None, endpoint: str | None) -> None:  # type: ignore[no-untyped-def]
    """A record that names the Hugging Face Job that wrote it (`provenance.job`) is checked
    against that Job (harness.scale.jobs.job_record_problem): `verified` when the Job was
    dispatched for this run into this dataset, rejected when it claims a Job that did not."""
    from harness.records.sources import HF_DATASET
    from harness.scale.jobs import job_record_problem
    from leaderboard.publish import make_api

    api = None
    for f, v in zip(files, verdicts, strict=True):
        job = getattr(v.record.provenance, "job", None) if v.record is not None else None
        if job is None or v.status == "rejected":
            continue
        m = HF_DATASET.fullmatch(f.source.rstrip("/"))
        if m is None:
            v.notes.append("provenance.job: not checked (read from a folder, not its dataset)")
            continue
        api = api or make_api(endpoint)
        problem = job_record_problem(api, v.record, m.group("repo"), maintainers=maintainers)
        if problem is None:
            v.trusted = True
        else:
            v.reject(f"provenance.job: {problem}")
