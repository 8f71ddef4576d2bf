"""`rocobench publish` against a fake Hub at the HTTP layer (huggingface_hub's real client).

Covers: the Space created when missing, the site in one commit, only changed files sent and
stale pages deleted, the refusal when someone else committed meanwhile (parent_commit), a dry run
that writes nothing, records pushed to a dataset, pull requests, and the token never appearing in
output, logs or files. One `live_hub` test talks to the real Hub (off by default).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.fake_hub import ENDPOINT, GITATTRIBUTES, TOKEN, FakeHub, serving
from fixtures.site_records import TASK, fixture_records, write_all

from harness.cli import main
from leaderboard import render_site
from leaderboard.publish import PublishError, RemoteMovedError, git_blob_sha, publish

SPACE = "rocobench/leaderboard"
DATASET = "rocobench/results"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    # No token file of the machine's own: only the environment variable counts here.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    with serving(FakeHub()) as fake:
        yield fake


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_all(tmp_path / "results", fixture_records(), samples=True)
    render_site(tmp_path / "results", tmp_path / "site")
    return tmp_path / "site"


def api():  # type: ignore[no-untyped-def]
    from huggingface_hub import HfApi

    return HfApi(endpoint=ENDPOINT)


def local_files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def test_creates_the_static_space_and_uploads_the_site_in_one_commit(
    hub: FakeHub, site: Path
) -> None:
    lines: list[str] = []
    (outcome,) = publish(site, SPACE, api=api(), log=lines.append)
    repo = hub.repo("space", SPACE)
    assert outcome.created and outcome.commit == repo.head
    assert len(hub.commits()) == 1 and len(repo.history) == 2  # the Hub's first commit + ours
    expected = local_files(site)
    assert {p: d for p, d in repo.files.items() if p in expected} == expected
    assert repo.files[".gitattributes"] == GITATTRIBUTES
    readme = repo.files["README.md"].decode()
    assert "sdk: static" in readme and "app_file: index.html" in readme
    assert any(line.startswith("created space") for line in lines)
    assert any("index.html" in line for line in lines)


def test_a_second_publish_sends_only_changes_and_removes_stale_pages(
    hub: FakeHub, site: Path, tmp_path: Path
) -> None:
    publish(site, SPACE, api=api(), log=lambda _: None)
    (again,) = publish(site, SPACE, api=api(), log=lambda _: None)
    assert again.commit is None and len(hub.commits()) == 1  # nothing changed: no commit

    shutil.rmtree(tmp_path / "results" / TASK / "llama-base")
    render_site(tmp_path / "results", site)
    (outcome,) = publish(site, SPACE, api=api(), log=lambda _: None)
    actions = {c.path: c.action for c in outcome.plan.changes}
    assert actions["v/roco-caption--llama-base.html"] == "delete"
    assert actions["index.html"] == "update"
    assert "v/roco-caption--qwen-qlora.html" not in actions  # unchanged: not sent
    repo = hub.repo("space", SPACE)
    assert "v/roco-caption--llama-base.html" not in repo.files
    assert {".gitattributes", "README.md"} <= set(repo.files)  # never deleted
    assert len(hub.commits()) == 2


def test_refuses_to_overwrite_a_commit_made_meanwhile(hub: FakeHub, site: Path) -> None:
    repo = hub.add_repo("space", SPACE, {"index.html": b"old page"})

    def someone_else_pushes(r):  # type: ignore[no-untyped-def]
        r.commit({**r.files, "index.html": b"their newer page"}, "their commit")

    hub.before_commit = someone_else_pushes
    with pytest.raises(RemoteMovedError, match="someone else"):
        publish(site, SPACE, api=api(), log=lambda _: None)
    assert repo.files["index.html"] == b"their newer page"  # nothing overwritten
    assert len(repo.history) == 2  # theirs only
    # Running again builds on their commit.
    (outcome,) = publish(site, SPACE, api=api(), log=lambda _: None)
    assert outcome.plan.head == repo.history[1] and repo.files["index.html"] != b"their newer page"


def test_a_reviewed_head_is_enforced(hub: FakeHub, site: Path) -> None:
    repo = hub.add_repo("space", SPACE)
    with pytest.raises(RemoteMovedError, match="review the changes again"):
        publish(site, SPACE, api=api(), expected_head="0" * 40, log=lambda _: None)
    assert hub.writes() == []
    publish(site, SPACE, api=api(), expected_head=repo.head, log=lambda _: None)
    assert len(hub.commits()) == 1


def test_dry_run_lists_the_changes_and_writes_nothing(hub: FakeHub, site: Path) -> None:
    lines: list[str] = []
    (outcome,) = publish(site, SPACE, api=api(), dry_run=True, log=lines.append)
    assert not outcome.plan.exists and ("space", SPACE) not in hub.repos
    assert "would be created" in lines[0]
    assert any(line.split()[:2] == ["add", "index.html"] for line in lines)
    hub.add_repo("space", SPACE, {"index.html": b"old", "stale.html": b"x"})
    lines.clear()
    publish(site, SPACE, api=api(), dry_run=True, log=lines.append)
    assert any(line.split()[:2] == ["update", "index.html"] for line in lines)
    assert any(line.split()[:2] == ["delete", "stale.html"] for line in lines)
    assert lines[-1] == "dry run: nothing was written"
    assert hub.writes() == [] and len(hub.repo("space", SPACE).history) == 1


def test_records_go_to_a_dataset_repo(hub: FakeHub, site: Path, tmp_path: Path) -> None:
    hub.add_repo("dataset", DATASET, {"notes.md": b"kept: a records push never deletes"})
    outcomes = publish(
        site,
        SPACE,
        results_dir=tmp_path / "results",
        results_dataset=DATASET,
        api=api(),
        log=lambda _: None,
    )
    assert [o.plan.repo_type for o in outcomes] == ["space", "dataset"]
    files = hub.repo("dataset", DATASET).files
    record = tmp_path / "results" / TASK / "qwen-qlora" / "seed-0" / "record.json"
    assert files[f"records/{TASK}/qwen-qlora/seed-0/record.json"] == record.read_bytes()
    assert f"records/{TASK}/qwen-qlora/seed-0/samples.jsonl" in files
    assert "results.json" in files and "notes.md" in files and "README.md" in files
    assert len(hub.commits()) == 2  # one per repository


def test_create_pr_leaves_main_alone(hub: FakeHub, site: Path) -> None:
    repo = hub.add_repo("space", SPACE)
    (outcome,) = publish(site, SPACE, api=api(), create_pr=True, log=lambda _: None)
    assert outcome.pr_url and "/discussions/1" in outcome.pr_url
    assert len(repo.history) == 1 and "index.html" in repo.pull_requests[0]["files"]


def test_publishing_needs_a_token_but_a_dry_run_does_not(
    hub: FakeHub, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="hf auth login"):
        publish(site, SPACE, api=api(), log=lambda _: None)
    publish(site, SPACE, api=api(), dry_run=True, log=lambda _: None)
    assert hub.writes() == []


def test_site_must_be_rendered_and_ids_well_formed(
    hub: FakeHub, tmp_path: Path, site: Path
) -> None:
    with pytest.raises(PublishError, match="rocobench render"):
        publish(tmp_path, SPACE, api=api(), log=lambda _: None)
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish(site, "../../etc", api=api(), log=lambda _: None)
    assert hub.requests == []


def test_the_token_never_appears_in_output_logs_or_files(
    hub: FakeHub, site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    common = ["publish", str(site), "--space", SPACE, "--endpoint", ENDPOINT]
    assert main([*common, "--dry-run"]) == 0
    records = ["--results-dataset", DATASET, "--results", str(tmp_path / "results")]
    assert main([*common, *records]) == 0
    # A refusal (someone else committed) prints the Hub's complaint: still no token.
    hub.before_commit = lambda r: r.commit({**r.files, "x": b"y"}, "theirs")
    (site / "index.html").write_text("changed", encoding="utf-8")
    assert main(common) == 1
    out, err = capsys.readouterr()
    assert "committed" in err and "someone else" in err
    # The token was used (the Hub saw it) …
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.writes())
    # … and is nowhere else: not printed, not logged, not in any file we wrote.
    assert TOKEN not in out + err
    assert caplog.records and TOKEN not in caplog.text
    assert all(TOKEN not in str(r.args) for r in caplog.records)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for repo in hub.repos.values():
        assert all(TOKEN.encode() not in data for data in repo.files.values())


def test_git_blob_sha_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.live_hub
def test_publish_to_the_real_hub(site: Path) -> None:
    """Set ROCOBENCH_LIVE_SPACE=org/name and log in (HF_TOKEN or `hf auth login`) to run."""
    space = os.environ.get("ROCOBENCH_LIVE_SPACE")
    if not space:
        pytest.skip("ROCOBENCH_LIVE_SPACE is not set")
    from huggingface_hub import HfApi, constants

    constants.HF_HUB_OFFLINE = False  # the test session runs offline; this test is the exception
    hub = HfApi()
    publish(site, space, api=hub, dry_run=True)
    outcomes = publish(site, space, api=hub)
    head = hub.repo_info(space, repo_type="space").sha
    assert outcomes[0].commit in (None, head)
