"""Publish a rendered site to a static Hugging Face Space, and optionally the records to a dataset.

Safety properties:
- **One commit per repository**, guarded by `parent_commit`: the changes are computed against the
  repository's head, and the Hub refuses the commit if that head has moved in between (someone
  else committed). Nothing is overwritten that we have not looked at; rerun to include their work.
  `expected_head` (`--parent-commit`) pins the head a person reviewed with `--dry-run`.
- **Dry run** reads only: it lists what would be added, updated and deleted, and writes nothing.
- **Token** from huggingface_hub's usual sources (`HF_TOKEN`, or the cache `hf auth login`
  writes), passed by the library in the Authorization header only. This module never reads it
  into a message, log line, file or record; error text from the Hub is scrubbed of it anyway.
- Only files that changed are sent (git blob hashes compared with the remote tree). A site upload
  also deletes remote files the site no longer has (stale variant pages), except the Space's
  README.md and .gitattributes; a records upload never deletes.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.records.layout import PREDICTIONS_FILE, RECORD_FILE, SAMPLES_FILE

if TYPE_CHECKING:
    from huggingface_hub import HfApi

RepoType = Literal["space", "dataset"]
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
KEEP_REMOTE = frozenset({".gitattributes", "README.md"})  # never deleted by a site upload
RECORD_FILES = (RECORD_FILE, SAMPLES_FILE, PREDICTIONS_FILE)

SPACE_README = """---
title: rocobench leaderboard
emoji: 🩻
colorFrom: blue
colorTo: gray
sdk: static
app_file: index.html
pinned: false
short_description: Compressed vision-language models on radiology captioning
---

The rocobench leaderboard: a static site rendered from run records by `rocobench render` and
uploaded by `rocobench publish`. Edit the records, not these files: the next publish replaces
every page.
"""

DATASET_README = """---
pretty_name: rocobench results
tags:
- rocobench
- leaderboard
---

# rocobench results

Run records of the rocobench leaderboard, uploaded by `rocobench publish`:
`records/<task>/<variant>/seed-<n>/` holds each run's `record.json` (metrics, measurements,
provenance), `samples.jsonl` (per-sample references, predictions and scores) and
`predictions.jsonl`. `results.json` and `results.csv` are the aggregated tables of the site.
"""


class PublishError(RuntimeError):
    """Publishing stopped before anything was committed (or the Hub refused the commit)."""


class RemoteMovedError(PublishError):
    """The repository's head is not the one our changes were computed against."""


@dataclass(frozen=True)
class Change:
    path: str
    action: Literal["add", "update", "delete"]
    size: int | None = None  # bytes to upload; None for a deletion


@dataclass(frozen=True)
class Plan:
    """What one commit would change in one repository."""

    repo_id: str
    repo_type: RepoType
    exists: bool
    head: str | None  # the commit the changes are computed against (None: repo not created)
    changes: tuple[Change, ...]
    unchanged: int

    @property
    def label(self) -> str:
        return f"{self.repo_type} {self.repo_id}"

    def describe(self) -> list[str]:
        head = (
            f"head {self.head}"
            if self.head
            else "not found (missing, or private and no token): would be created"
        )
        lines = [f"{self.label}: {head}"]
        counts = {a: sum(c.action == a for c in self.changes) for a in ("add", "update", "delete")}
        lines.append(
            f"  {counts['add']} to add, {counts['update']} to update, "
            f"{counts['delete']} to delete, {self.unchanged} unchanged"
        )
        for c in self.changes:
            size = "" if c.size is None else f" ({c.size:,} bytes)"
            lines.append(f"  {c.action:<6} {c.path}{size}")
        return lines


@dataclass
class Outcome:
    plan: Plan
    created: bool = False
    commit: str | None = None  # None: nothing to commit (or a dry run)
    url: str | None = None
    pr_url: str | None = None
    messages: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- local files


def git_blob_sha(data: bytes) -> str:
    """The id git (and the Hub's tree listing) gives a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def site_payload(site_dir: Path) -> dict[str, bytes]:
    """Every file of a rendered site by its path in the repository."""
    site_dir = Path(site_dir)
    if not (site_dir / "index.html").is_file():
        raise PublishError(f"{site_dir} holds no index.html: run `rocobench render` first")
    files = {
        p.relative_to(site_dir).as_posix(): p.read_bytes()
        for p in sorted(site_dir.rglob("*"))
        if p.is_file() and not p.name.startswith(".")  # atomic-write leftovers, editor files
    }
    return files


def records_payload(results_dir: Path, site_dir: Path | None = None) -> dict[str, bytes]:
    """Records with their per-sample files under `records/`, plus the aggregated tables."""
    results_dir = Path(results_dir)
    files: dict[str, bytes] = {}
    for record in sorted(results_dir.rglob(RECORD_FILE)):
        for name in RECORD_FILES:
            path = record.parent / name
            if path.is_file():
                files[f"records/{path.relative_to(results_dir).as_posix()}"] = path.read_bytes()
    if not files:
        raise PublishError(f"no run records ({RECORD_FILE}) under {results_dir}")
    for name in ("results.json", "results.csv"):
        if site_dir is not None and (Path(site_dir) / name).is_file():
            files[name] = (Path(site_dir) / name).read_bytes()
    return files


def _site_has_twins(site_dir: Path) -> bool:
    import json

    path = site_dir / "results.json"
    if not path.is_file():
        return True  # cannot tell: treat as unsafe
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("twins", True))
    except ValueError:
        return True


# --------------------------------------------------------------------------- planning


def _check_repo_id(repo_id: str, what: str) -> None:
    if not REPO_ID.fullmatch(repo_id):
        raise PublishError(f"{what}: expected ORG/NAME, got {repo_id!r}")


def plan_upload(
    api: HfApi,
    repo_id: str,
    repo_type: RepoType,
    files: Mapping[str, bytes],
    *,
    delete_missing: bool,
    readme: str | None = None,
) -> Plan:
    """Compare `files` with the repository's head (read-only). `readme` is added if it has none."""
    from huggingface_hub import RepoFile
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        head = api.repo_info(repo_id, repo_type=repo_type).sha
    except RepositoryNotFoundError:
        wanted = dict(files)
        if readme is not None:
            wanted.setdefault("README.md", readme.encode())
        changes = tuple(Change(p, "add", len(d)) for p, d in sorted(wanted.items()))
        return Plan(repo_id, repo_type, False, None, changes, 0)
    if head is None or not COMMIT_SHA.fullmatch(head):
        raise PublishError(f"{repo_type} {repo_id}: the Hub returned no head commit")
    remote: dict[str, RepoFile] = {
        item.path: item
        for item in api.list_repo_tree(repo_id, repo_type=repo_type, revision=head, recursive=True)
        if isinstance(item, RepoFile)
    }
    wanted = dict(files)
    if readme is not None and "README.md" not in remote:
        wanted.setdefault("README.md", readme.encode())
    changes: list[Change] = []
    unchanged = 0
    for path, data in sorted(wanted.items()):
        current = remote.get(path)
        if current is None:
            changes.append(Change(path, "add", len(data)))
        elif _same(current, data):
            unchanged += 1
        else:
            changes.append(Change(path, "update", len(data)))
    if delete_missing:
        changes += [
            Change(path, "delete")
            for path in sorted(remote)
            if path not in wanted and path not in KEEP_REMOTE
        ]
    return Plan(repo_id, repo_type, True, head, tuple(changes), unchanged)


def _same(remote: object, data: bytes) -> bool:
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:  # an LFS file's blob is its pointer: compare the content hash
        return getattr(lfs, "sha256", None) == hashlib.sha256(data).hexdigest()
    return getattr(remote, "blob_id", None) == git_blob_sha(data)


# --------------------------------------------------------------------------- committing


def _status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def commit_plan(
    api: HfApi,
    plan: Plan,
    files: Mapping[str, bytes],
    *,
    message: str,
    create_pr: bool = False,
    private: bool | None = None,
    readme: str | None = None,
    delete_missing: bool = False,
) -> Outcome:
    """Create the repository if missing, then make the plan's one commit on top of its head."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    outcome = Outcome(plan)
    if not plan.exists:
        try:
            api.create_repo(
                plan.repo_id,
                repo_type=plan.repo_type,
                space_sdk="static" if plan.repo_type == "space" else None,
                private=private,
                exist_ok=False,  # created by someone else meanwhile: look before writing
            )
        except HfHubHTTPError as err:
            if _status(err) == 409:
                raise RemoteMovedError(
                    f"{plan.label} was created by someone else after we looked; "
                    "run again to see its content"
                ) from None
            raise
        outcome.created = True
        outcome.messages.append(f"created {plan.label}")
        # The Hub's first commit (.gitattributes, a README) is the new base of our commit.
        plan = plan_upload(
            api,
            plan.repo_id,
            plan.repo_type,
            files,
            delete_missing=delete_missing,
            readme=readme,
        )
        outcome.plan = plan
    if not plan.changes:
        outcome.messages.append(f"{plan.label}: up to date, nothing to commit")
        return outcome
    blobs = dict(files)
    if readme is not None:
        blobs.setdefault("README.md", readme.encode())
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationDelete(c.path)
        if c.action == "delete"
        else CommitOperationAdd(c.path, io.BytesIO(blobs[c.path]))
        for c in plan.changes
    ]
    try:
        info = api.create_commit(
            plan.repo_id,
            operations,
            repo_type=plan.repo_type,
            commit_message=message,
            parent_commit=plan.head,
            create_pr=create_pr,
        )
    except HfHubHTTPError as err:
        if _status(err) in (409, 412):
            raise RemoteMovedError(
                f"{plan.label} moved past {plan.head} while we uploaded (someone else "
                "committed): nothing was overwritten; run again to publish on top of it"
            ) from None
        raise
    outcome.commit = info.oid
    outcome.url = info.commit_url
    outcome.pr_url = info.pr_url
    return outcome


# --------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class Target:
    repo_id: str
    repo_type: RepoType
    files: dict[str, bytes]
    delete_missing: bool
    readme: str


def make_api(endpoint: str | None = None) -> HfApi:
    """An HfApi that finds the token itself (HF_TOKEN or the login cache); we never hold it."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint)


def _token_present() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def redact(text: str) -> str:
    """`text` with the Hugging Face token (if any is configured) replaced."""
    from huggingface_hub import get_token

    token = get_token()
    return text.replace(token, "hf_***") if token else text


def publish(
    site_dir: Path,
    space: str,
    *,
    results_dir: Path | None = None,
    results_dataset: str | None = None,
    dry_run: bool = False,
    create_pr: bool = False,
    expected_head: str | None = None,
    private: bool | None = None,
    api: HfApi | None = None,
    log: Callable[[str], None] = print,
    refuse_twins: bool = False,
) -> list[Outcome]:
    """Publish `site_dir` to the static Space `space` (and records to `results_dataset`).

    Everything is planned (read-only) before anything is written; a dry run stops there.
    `refuse_twins`: stop if the site shows embedded twins or synthetic data (its results.json
    says so), so that they never replace a public leaderboard.
    """
    _check_repo_id(space, "--space")
    if refuse_twins and _site_has_twins(Path(site_dir)):
        raise PublishError(
            f"{site_dir} shows embedded twins or synthetic data (results.json: twins): "
            "render the public site from the results dataset"
        )
    if results_dataset is not None:
        _check_repo_id(results_dataset, "--results-dataset")
        if results_dir is None:
            raise PublishError("--results-dataset needs the records folder (--results)")
    if expected_head is not None and not COMMIT_SHA.fullmatch(expected_head):
        raise PublishError(f"--parent-commit: expected a 40-hex commit, got {expected_head!r}")
    targets = [Target(space, "space", site_payload(site_dir), True, SPACE_README)]
    if results_dataset is not None and results_dir is not None:
        files = records_payload(results_dir, site_dir)
        targets.append(Target(results_dataset, "dataset", files, False, DATASET_README))

    api = api or make_api()
    if not dry_run:
        if not _token_present():
            raise PublishError(
                "not logged in to the Hugging Face Hub: run `hf auth login` "
                "or set HF_TOKEN (a token with write access)"
            )
        log(f"publishing as {api.whoami().get('name', '?')}")

    plans = [
        plan_upload(
            api, t.repo_id, t.repo_type, t.files, delete_missing=t.delete_missing, readme=t.readme
        )
        for t in targets
    ]
    space_plan = plans[0]
    if expected_head is not None and space_plan.head != expected_head:
        raise RemoteMovedError(
            f"{space_plan.label} is at {space_plan.head or 'nothing (missing)'}, "
            f"not {expected_head}: review the changes again (--dry-run)"
        )
    for plan in plans:
        for line in plan.describe():
            log(line)
    if dry_run:
        log("dry run: nothing was written")
        return [Outcome(plan, messages=["dry run"]) for plan in plans]

    outcomes = []
    for target, plan in zip(targets, plans, strict=True):
        what = "site" if target.repo_type == "space" else "records"
        outcome = commit_plan(
            api,
            plan,
            target.files,
            message=f"rocobench publish: {what}",
            create_pr=create_pr,
            private=private,
            readme=target.readme,
            delete_missing=target.delete_missing,
        )
        for line in outcome.messages:
            log(line)
        if outcome.commit:
            where = outcome.pr_url or outcome.url
            log(f"{plan.label}: committed {outcome.commit} on top of {outcome.plan.head} ({where})")
        outcomes.append(outcome)
    return outcomes
