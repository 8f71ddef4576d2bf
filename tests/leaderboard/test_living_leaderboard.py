"""The living leaderboard's whole loop on the fake Hub (huggingface_hub's real client):

1. a maintainer's records reach the results dataset (`publish --results-dataset`), and a
   contributor's by pull request (`rocobench submit`);
2. `verify` checks the pull request's records, and marks a planted edited record `rejected`;
3. the site rendered from `hf://datasets/…` shows the nine Table I reported rows with the
   reproductions beside them, status badges, and efficiency per hardware;
4. publishing it keeps the real pages, and a site of twins is refused.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.fake_hub import ENDPOINT, TOKEN, FakeHub, serving
from fixtures.run_records import A100, H100, make_run
from fixtures.site_records import fixture_records, write_all

from harness.cli import main
from leaderboard import render_site
from leaderboard.publish import PublishError, publish
from leaderboard.submit import submit

SPACE = "rocobench/leaderboard"
DATASET = "rocobench/results"
HF = f"hf://datasets/{DATASET}"
TASK = "rocov2_paper327"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    with serving(FakeHub()) as fake:
        yield fake


def api():  # type: ignore[no-untyped-def]
    from huggingface_hub import HfApi

    return HfApi(endpoint=ENDPOINT)


def runs(root: Path, variant: str, hardware, seeds=(0, 1, 2), generate_s: float = 12.0) -> Path:
    for seed in seeds:
        make_run(
            root / TASK / variant / f"seed-{seed}",
            variant,
            seed,
            hardware=hardware,
            generate_s=generate_s,
        )
    return root


def test_the_whole_loop(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    quiet = [].append
    # 1a. The maintainer's job: base Qwen on an A100, records and site published.
    ours = runs(tmp_path / "ours", "qwen2-vl-2b", A100)
    runs(ours, "qwen2-vl-2b-qlora", A100, generate_s=6.0)
    first = render_site(ours, tmp_path / "site-1", images=False)
    publish(
        first.parent,
        SPACE,
        results_dir=ours,
        results_dataset=DATASET,
        api=api(),
        log=quiet,
        refuse_twins=True,
    )
    dataset = hub.repo("dataset", DATASET)
    assert f"records/{TASK}/qwen2-vl-2b/seed-0/record.json" in dataset.files
    real_page = f"v/{TASK}--qwen2-vl-2b.html"
    assert real_page in hub.repo("space", SPACE).files
    real_pages = {p for p in hub.repo("space", SPACE).files if p.startswith("v/")}

    # 1b. A contributor's QLoRA runs on two H100s, by pull request: nothing merged.
    theirs = runs(tmp_path / "theirs", "qwen2-vl-2b-qlora", H100, generate_s=3.0)
    head = dataset.head
    outcome = submit(theirs, DATASET, api=api(), log=quiet)
    assert outcome.pr_url and outcome.pr_url.endswith("/discussions/1")
    assert dataset.head == head  # never merged
    pr_files = dataset.pull_requests[0]["files"]
    assert f"records/tester/{TASK}/qwen2-vl-2b-qlora/seed-2/samples.jsonl" in pr_files

    # 2. The pull request's records pass; a maintainer merges them.
    assert main(["verify", "--quick", f"{HF}@refs/pr/1"]) == 0
    # the pull request's ref holds the whole dataset with the contributor's runs: 6 + 3
    assert "0 verified, 9 checked, 0 rejected" in capsys.readouterr().err
    # the review job: every open pull request checked, the outcome posted on it
    assert main(["verify", "--quick", "--open-prs", HF, "--comment"]) == 0
    assert dataset.pull_requests[0]["comments"] == ["`rocobench verify`: 9 checked, 0 rejected."]
    capsys.readouterr()
    dataset.commit(dict(pr_files), "Merge pull request #1")
    dataset.pull_requests[0]["status"] = "merged"
    # ... and someone slips an edited record in: a better BLEU than its captions give.
    planted = dict(dataset.files)
    src = f"records/tester/{TASK}/qwen2-vl-2b-qlora/seed-1"
    dst = f"records/mallory/{TASK}/qwen2-vl-2b-qlora/seed-1"
    record = json.loads(planted[f"{src}/record.json"])
    record["metrics"]["bleu4"]["value"] = 0.5
    planted[f"{dst}/record.json"] = json.dumps(record).encode()
    planted[f"{dst}/samples.jsonl"] = planted[f"{src}/samples.jsonl"]
    dataset.commit(planted, "edited record")
    assert main(["verify", "--quick", "--json", HF, "--trusted", HF]) == 1
    verdicts = {
        json.loads(line)["path"].split("/records/")[1].split("/")[0]
        if "/records/" in json.loads(line)["path"]
        else "?": json.loads(line)
        for line in capsys.readouterr().out.splitlines()
    }
    assert verdicts["mallory"]["status"] == "rejected"
    assert any("bleu4: recorded 0.5" in r for r in verdicts["mallory"]["reasons"])
    assert verdicts["tester"]["status"] == "checked"
    assert verdicts[TASK]["status"] == "verified"  # the maintainer's own, from a trusted source

    # 3. The site, rendered from the dataset.
    index = render_site(HF, tmp_path / "site-2", images=False, trusted=[HF], endpoint=ENDPOINT)
    html = index.read_text(encoding="utf-8")
    assert html.count('class="reported-row"') == 9
    assert "doi:10.21528/CBIC2025-1191702" in html
    reported = html[html.index('id="reported"') : html.index("</section>")]
    assert reported.count("not yet reproduced: <code>rocobench run --task rocov2_paper327") == 7
    group = _group(reported, "qwen2-vl-2b-qlora")
    # beside the paper's row: our A100 runs and the contributor's H100 runs, with Δ
    assert "by this leaderboard&#39;s runs on A100-SXM4-40GB" in group
    assert "by tester on 2 x H100 80GB HBM3" in group
    assert group.count("Δ +") + group.count("Δ −") >= 4  # BLEU and ROUGE-L of each
    assert "0.0093 ± 0.0004" in group  # the paper's own figure
    # status badges, the filter, and efficiency per hardware
    for status in ("verified", "checked", "rejected"):
        assert f'data-status-badge="{status}"' in html
    assert 'data-hardware-filter="rocov2_paper327-table"' in html
    data = json.loads((index.parent / "results.json").read_text())
    rows = data["tasks"][0]["rows"]
    assert {(r["variant"], r["contributor"], r["status"]) for r in rows} == {
        ("qwen2-vl-2b", "", "verified"),
        ("qwen2-vl-2b-qlora", "", "verified"),
        ("qwen2-vl-2b-qlora", "tester", "checked"),
        ("qwen2-vl-2b-qlora", "mallory", "rejected"),
    }
    best = {(r["variant"], r["contributor"]): "s_per_image" in r["efficiency_best"] for r in rows}
    # fastest on each machine: the QLoRA row on the A100, the only comparable one on the H100s
    assert best[("qwen2-vl-2b-qlora", "")] and not best[("qwen2-vl-2b", "")]
    assert not data["twins"]
    assert 'id="twins-banner"' not in html

    # 4. Publishing keeps the real pages; a site of twins never reaches the Space.
    publish(index.parent, SPACE, api=api(), log=quiet, refuse_twins=True)
    space = hub.repo("space", SPACE)
    assert real_pages <= set(space.files)  # every page of the real runs is still there
    # the contributor's row has a page of its own; ours kept its address
    assert f"v/{TASK}--qwen2-vl-2b-qlora.html" in space.files
    assert f"v/{TASK}--qwen2-vl-2b-qlora--by-tester.html" in space.files
    write_all(tmp_path / "twins", fixture_records())
    twins = render_site(tmp_path / "twins", tmp_path / "site-twins", images=False)
    assert 'id="twins-banner"' in twins.read_text(encoding="utf-8")
    head = space.head
    with pytest.raises(PublishError, match="embedded twins"):
        publish(twins.parent, SPACE, api=api(), log=quiet, refuse_twins=True)
    assert space.head == head and real_page in space.files


def _group(reported: str, variant: str) -> str:
    m = re.search(
        rf'<tbody class="reported-group" data-variant="{variant}">(.*?)</tbody>', reported, re.S
    )
    assert m is not None
    return m.group(1)


def test_submit_refuses_rejected_records_and_never_replaces_one(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.add_repo("dataset", DATASET)
    mine = runs(tmp_path / "mine", "qwen2-vl-2b", A100, seeds=(0,))
    record = mine / TASK / "qwen2-vl-2b" / "seed-0" / "record.json"
    outcome = submit(mine, DATASET, contributor="alice", dry_run=True, api=api(), log=[].append)
    assert outcome.commit is None and not hub.repo("dataset", DATASET).pull_requests
    submit(mine, DATASET, contributor="alice", api=api(), log=[].append)
    dataset = hub.repo("dataset", DATASET)
    dataset.commit(dict(dataset.pull_requests[0]["files"]), "merge")
    # the same run again: nothing new; another run of the same key: refused, not replaced
    runs(mine, "qwen2-vl-2b", A100, seeds=(0,), generate_s=20.0)
    with pytest.raises(PublishError, match="never replaced"):
        submit(mine, DATASET, contributor="alice", api=api(), log=[].append)
    data = json.loads(record.read_text())
    data["metrics"]["rouge_l"]["value"] = 0.99
    record.write_text(json.dumps(data))
    with pytest.raises(PublishError, match="fail the checks"):
        submit(mine, DATASET, contributor="alice/h100", api=api(), log=[].append)
    assert len(dataset.pull_requests) == 1


def test_render_merges_a_folder_and_a_dataset_without_overwriting(
    hub: FakeHub, tmp_path: Path
) -> None:
    theirs = runs(tmp_path / "theirs", "qwen2-vl-2b", A100)
    files = {
        f"records/bob/{p.relative_to(theirs).as_posix()}": p.read_bytes()
        for p in theirs.rglob("*")
        if p.is_file()
    }
    hub.add_repo("dataset", DATASET, files)
    # the same key (task, variant, seed, hardware) locally, but another contributor: both kept
    ours = runs(tmp_path / "ours", "qwen2-vl-2b", A100, generate_s=30.0)
    index = render_site([ours, HF], tmp_path / "site", images=False, endpoint=ENDPOINT)
    rows = json.loads((index.parent / "results.json").read_text())["tasks"][0]["rows"]
    assert sorted((r["contributor"], r["n_seeds"]) for r in rows) == [("", 3), ("bob", 3)]
    # the very same records in two sources (a folder and its copy on the Hub) count once
    mirror = tmp_path / "mirror"
    shutil.copytree(ours, mirror)
    index = render_site([ours, HF, mirror], tmp_path / "site-1", images=False, endpoint=ENDPOINT)
    rows = json.loads((index.parent / "results.json").read_text())["tasks"][0]["rows"]
    assert sorted((r["contributor"], r["n_seeds"]) for r in rows) == [("", 3), ("bob", 3)]
    # a second, different record of one key in one source: both shown, neither ranked
    copy = ours / TASK / "qwen2-vl-2b" / "seed-0-copy"
    make_run(copy, "qwen2-vl-2b", 0, hardware=A100, generate_s=31.0)
    index = render_site(ours, tmp_path / "site-2", images=False)
    rows = json.loads((index.parent / "results.json").read_text())["tasks"][0]["rows"]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"rejected"}
    assert any("a second record of the same task" in w for r in rows for w in r["warnings"])
