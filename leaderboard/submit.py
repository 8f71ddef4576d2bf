"""Contribute run records to the results dataset: one pull request, never a merge.

`rocobench submit RESULTS_DIR --dataset ORG/NAME` checks every record first (the verifier's
record and sample checks: a record that would be rejected is not sent), then opens one pull
request on the dataset with each run's record, samples and predictions under
`records/<contributor>/<task>/<variant>/<seed folder>/`. The contributor is the Hub account
(or `--contributor`, e.g. `alice/h100` for a second machine). A run already in the dataset
with other content is refused rather than replaced: records are never overwritten. A
maintainer reviews the pull request (the dataset's CI runs `rocobench verify` on it) and merges.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.analysis.verify import verify_paths
from harness.records.sources import RUN_FILES, open_sources
from leaderboard.publish import (
    Outcome,
    PublishError,
    _check_repo_id,
    _token_present,
    commit_plan,
    make_api,
    plan_upload,
)

if TYPE_CHECKING:
    from huggingface_hub import HfApi

CONTRIBUTOR = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,63})?")


@dataclass(frozen=True)
class Submission:
    contributor: str
    files: dict[str, bytes]
    n_records: int


def collect(results_dir: Path, contributor: str) -> Submission:
    """The files of every record under `results_dir`, checked, at their dataset paths."""
    if not CONTRIBUTOR.fullmatch(contributor):
        raise PublishError(f"--contributor: {contributor!r} is not NAME or NAME/MACHINE")
    with open_sources([str(results_dir)]) as sources:
        if not sources.files:
            raise PublishError(f"no run records under {results_dir}")
        verdicts = verify_paths(
            ((f.path, f.label, "", False) for f in sources.files), depth="samples"
        )
        rejected = [line for v in verdicts if v.status == "rejected" for line in v.lines()]
        if rejected:
            raise PublishError(
                "some records fail the checks and were not submitted:\n" + "\n".join(rejected)
            )
        files: dict[str, bytes] = {}
        for f, v in zip(sources.files, verdicts, strict=True):
            r = v.record
            assert r is not None
            run_folder = f.path.parent.name  # seed-<n>[-fixed-<N>][-random]
            dest = f"records/{contributor}/{r.task}/{r.variant}/{run_folder}"
            if dest in {p.rsplit("/", 1)[0] for p in files}:
                raise PublishError(f"{f.label}: a second run for {dest}: submit them separately")
            for name in RUN_FILES:
                path = f.path.parent / name
                if path.is_file():
                    files[f"{dest}/{name}"] = path.read_bytes()
        return Submission(contributor, files, len(verdicts))


def submit(
    results_dir: Path,
    dataset: str,
    *,
    contributor: str | None = None,
    dry_run: bool = False,
    api: HfApi | None = None,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Open a pull request on `dataset` with the records under `results_dir` (see the module)."""
    _check_repo_id(dataset, "--dataset")
    api = api or make_api()
    if contributor is None:
        if not _token_present():
            if not dry_run:
                raise PublishError(
                    "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN"
                )
            raise PublishError("--dry-run without a login: give --contributor NAME")
        contributor = str(api.whoami().get("name", ""))
    elif not dry_run and not _token_present():
        raise PublishError("not logged in to the Hugging Face Hub: run `hf auth login`")
    submission = collect(Path(results_dir), contributor)
    plan = plan_upload(api, dataset, "dataset", submission.files, delete_missing=False)
    if not plan.exists:
        raise PublishError(f"dataset {dataset} not found (or private and no token)")
    replaced = [c.path for c in plan.changes if c.action == "update"]
    if replaced:
        raise PublishError(
            f"{len(replaced)} file(s) already in {dataset} with other content (records are "
            f"never replaced), first: {replaced[0]}; submit a new run under another "
            "--contributor folder (e.g. NAME/MACHINE)"
        )
    log(f"{submission.n_records} record(s) by {contributor}, all passing the checks")
    for line in plan.describe():
        log(line)
    if dry_run:
        log("dry run: no pull request opened")
        return Outcome(plan, messages=["dry run"])
    if not plan.changes:
        log("every file is already in the dataset: nothing to submit")
        return Outcome(plan)
    outcome = commit_plan(
        api,
        plan,
        submission.files,
        message=f"rocobench submit: {submission.n_records} record(s) by {contributor}",
        create_pr=True,
    )
    log(f"pull request opened: {outcome.pr_url}")
    return outcome
