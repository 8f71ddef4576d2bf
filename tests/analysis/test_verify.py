"""`rocobench verify` and the record checks render and regress share: each tampering is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.run_records import A100, H100, IDS, captions, make_run, sample_seed

from harness.analysis.hardware import hardware_name
from harness.analysis.verify import (
    Verdict,
    check_record,
    record_key,
    repository_problems,
    seed_problems,
    verify_paths,
)
from harness.cli import main
from harness.records.record import BackendRef, Hardware
from harness.records.sources import contributor_of, open_sources
from harness.records.store import read_jsonl, read_record

VARIANT = "qwen2-vl-2b-qlora"


def run(folder: Path, seed: int = 0, **kw) -> Path:
    make_run(folder, VARIANT, seed, **kw)
    return folder / "record.json"


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def verify_folder(root: Path) -> dict[str, object]:
    with open_sources([str(root)]) as sources:
        verdicts = verify_paths(
            ((f.path, f.label, f.contributor, False) for f in sources.files), depth="samples"
        )
    return {Path(v.path).relative_to(root).parent.as_posix(): v for v in verdicts}


def test_an_honest_record_is_checked(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    v = check_record(path)
    assert (v.status, v.reasons) == ("checked", [])
    assert check_record(path, trusted=True).status == "verified"


def test_a_tampered_metric_is_rejected(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    edit(path, lambda d: d["metrics"]["rouge_l"].update(value=0.9))
    v = check_record(path)
    assert v.status == "rejected"
    assert any("metrics.rouge_l" in r and "per-sample" in r for r in v.reasons), v.reasons


def test_a_corpus_metric_edited_with_its_interval_is_recomputed(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    edit(path, lambda d: d["metrics"]["bleu4"].update(value=0.5, ci95=[0.4, 0.6]))
    v = check_record(path)
    assert any("bleu4: recorded 0.5, recomputed" in r for r in v.reasons), v.reasons


def test_scores_edited_in_samples_and_record_alike_are_recomputed(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    rows = read_jsonl(tmp_path / "seed-0" / "samples.jsonl")
    for row in rows:
        row["scores"]["rouge_l"] = 0.9
    (tmp_path / "seed-0" / "samples.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    edit(path, lambda d: d["metrics"]["rouge_l"].update(value=0.9))
    v = check_record(path)
    assert any("rouge_l: recorded 0.9, recomputed" in r for r in v.reasons), v.reasons


def test_a_missing_sample_is_rejected(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    samples = tmp_path / "seed-0" / "samples.jsonl"
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:-1]))
    reasons = check_record(path).reasons
    assert any("5 samples, but the record evaluated 6" in r for r in reasons), reasons
    assert any("do not hash to dataset.ids_sha256" in r for r in reasons)
    samples.unlink()
    assert check_record(path).reasons[-1].startswith("samples.jsonl is missing")


def test_non_finite_values_and_implausible_figures_are_rejected(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")

    def spoil(d: dict) -> None:
        d["metrics"]["bleu4"]["value"] = float("inf")
        d["measurements"]["images_per_s"] = 99.0
        d["provenance"]["packages"] = {}

    edit(path, spoil)
    reasons = check_record(path, depth="record").reasons
    assert any("bleu4: value inf is not finite" in r for r in reasons), reasons
    assert any("images_per_s" in r for r in reasons)
    assert any("no package versions" in r for r in reasons)


def test_a_broken_record_is_one_reason_naming_the_field(tmp_path: Path) -> None:
    path = run(tmp_path / "seed-0")
    edit(path, lambda d: d.pop("seed"))
    v = check_record(path)
    assert v.status == "rejected" and v.record is None
    assert v.reasons == ["not a valid record: seed: Field required"]
    path.write_text(path.read_text()[:100])
    assert check_record(path).reasons[0].startswith("not a valid record")


def test_a_manifest_that_is_not_the_repositorys_is_rejected(tmp_path: Path, repo_root) -> None:
    path = run(tmp_path / "seed-0")
    record = read_record(path)
    assert repository_problems(record, repo_root, [])[0] == []
    other = record.model_copy(
        update={"model": record.model.model_copy(update={"manifest_sha256": "0" * 64})}
    )
    problems, _ = repository_problems(other, repo_root, [])
    assert problems == [f"model.manifest_sha256: not the hash of variants/{VARIANT}.yaml"]
    # a manifest edited in the record no longer hashes to what it claims
    edit(path, lambda d: d["manifest"]["base"].update(model="someone/else"))
    assert any("does not hash to manifest_sha256" in r for r in check_record(path).reasons)


def test_the_task_spec_and_dataset_are_the_repositorys(tmp_path: Path, repo_root) -> None:
    record = read_record(run(tmp_path / "seed-0"))
    changed = record.model_copy(
        update={
            "task_sha256": "1" * 64,
            "dataset": record.dataset.model_copy(update={"revision": "2" * 40}),
        }
    )
    problems, _ = repository_problems(changed, repo_root, [])
    assert "task_sha256: not the hash of tasks/rocov2_paper327.yaml" in problems
    assert any(p.startswith("dataset: unsloth/Radiology_mini@2222") for p in problems)


def test_captions_from_another_seed_are_rejected(tmp_path: Path) -> None:
    from harness.pipeline.generate import sample_seed as real_sample_seed

    assert sample_seed(3, IDS[0]) == real_sample_seed(3, IDS[0])
    path = run(tmp_path / "seed-1", seed=1)
    predictions = read_jsonl(tmp_path / "seed-1" / "predictions.jsonl")
    record = read_record(path)
    assert seed_problems(record, predictions) == []
    relabelled = record.model_copy(update={"seed": 2})
    assert "does not derive from seed 2" in seed_problems(relabelled, predictions)[0]


def test_a_reused_seed_is_rejected(tmp_path: Path) -> None:
    same = captions(VARIANT, 0)
    run(tmp_path / "seed-0", 0)
    run(tmp_path / "seed-1", 1, preds=same)
    run(tmp_path / "seed-2", 2)
    verdicts = verify_folder(tmp_path)
    assert verdicts["seed-2"].status == "checked"
    for name in ("seed-0", "seed-1"):
        assert any("reused seed: seeds 0 and 1" in r for r in verdicts[name].reasons)


def test_two_different_records_of_one_key_are_both_rejected(tmp_path: Path) -> None:
    run(tmp_path / "a" / "seed-0", 0)
    run(tmp_path / "b" / "seed-0", 0, generate_s=13.0)
    run(tmp_path / "c" / "seed-0", 0, hardware=H100)  # another machine: another key
    verdicts = verify_folder(tmp_path)
    assert verdicts["c/seed-0"].status == "checked"
    for name in ("a/seed-0", "b/seed-0"):
        assert any(r.startswith("duplicate: 2 different records") for r in verdicts[name].reasons)


def test_a_speed_run_of_a_seed_is_not_a_duplicate_of_it(tmp_path: Path) -> None:
    v = check_record(run(tmp_path / "seed-0"))
    assert v.record is not None
    fixed = v.record.measurements.model_copy(update={"fixed_new_tokens": 32})
    speed = Verdict(v.path, v.record.model_copy(update={"measurements": fixed}))
    assert record_key(v)[-1] == "natural" and record_key(speed)[-1] == "fixed-32"
    assert record_key(v)[:-1] == record_key(speed)[:-1]


def test_a_vllm_run_of_a_seed_is_not_a_duplicate_of_it(tmp_path: Path) -> None:
    """seed-0/ and seed-0-vllm/ of one variant: two runs, both kept (the page shows both rows)."""
    run(tmp_path / "seed-0")
    path = run(tmp_path / "seed-0-vllm", generate_s=13.0)
    engine = BackendRef(name="vllm", version="0.32.0").model_dump(mode="json")
    edit(path, lambda d: d.update(backend=engine))
    verdicts = verify_folder(tmp_path)
    assert verdicts["seed-0"].reasons == [] and verdicts["seed-0-vllm"].reasons == []
    assert record_key(verdicts["seed-0-vllm"])[-1] == "natural-vllm"


def test_hardware_names_are_normalised() -> None:
    assert hardware_name(A100) == "A100-SXM4-40GB"
    assert hardware_name(H100) == "2 x H100 80GB HBM3"
    cpu = Hardware(device="cpu", cpu="Intel(R) Xeon(R) CPU @ 2.20GHz", cpu_count=2, ram_gib=8)
    assert hardware_name(cpu) == "CPU: Intel Xeon CPU (2 cores)"
    # a GPU machine that ran on its CPU is a CPU run
    assert hardware_name(A100.model_copy(update={"device": "cpu"})).startswith("CPU: AMD EPYC")


@pytest.mark.parametrize(
    ("rel", "contributor"),
    [
        ("rocov2_paper327/qwen2-vl-2b/seed-0/record.json", ""),
        ("records/rocov2_paper327/qwen2-vl-2b/seed-0/record.json", ""),
        ("records/alice/rocov2_paper327/qwen2-vl-2b/seed-0/record.json", "alice"),
        ("records/lab/bob/rocov2_paper327/qwen2-vl-2b/seed-1-fixed-64/record.json", "lab/bob"),
    ],
)
def test_contributor_comes_from_the_layout(rel: str, contributor: str) -> None:
    assert contributor_of(rel) == contributor


def test_cli_exit_status_and_json(tmp_path: Path, capsys) -> None:
    good = run(tmp_path / "ok" / "seed-0")
    assert main(["verify", "--quick", str(good)]) == 0
    assert "checked" in capsys.readouterr().out
    bad = run(tmp_path / "bad" / "seed-1", seed=1)  # seed 0 twice would be a duplicate
    edit(bad, lambda d: d["metrics"]["rouge_l"].update(value=0.9))
    assert main(["verify", "--quick", "--json", str(tmp_path)]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {(Path(x["path"]).parent.parent.name, x["status"]) for x in lines} == {
        ("ok", "checked"),
        ("bad", "rejected"),
    }
    assert main(["verify", str(tmp_path / "nothing")]) == 1
    assert "no such folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- the regression gate


def gate_results(root: Path) -> Path:
    for seed in (0, 1, 2):
        run(root / "rocov2_paper327" / VARIANT / f"seed-{seed}", seed)
    return root


def regress(capsys, *args) -> tuple[int, str]:
    rc = main(["regress", *map(str, args)])
    return rc, capsys.readouterr().out


def test_the_gate_checks_records_first(tmp_path: Path, capsys) -> None:
    results = gate_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert regress(capsys, "--baseline", baseline, results, "--update-baseline")[0] == 0
    runs = json.loads(baseline.read_text())["runs"]["rocov2_paper327"][VARIANT]
    assert runs["seeds"] == [0, 1, 2] and len(runs["ids_sha256"]) == 64
    assert regress(capsys, "--baseline", baseline, results)[0] == 0

    # a fabricated improvement (the record edited, its samples not)
    record = results / "rocov2_paper327" / VARIANT / "seed-1" / "record.json"
    edit(record, lambda d: d["metrics"]["rouge_l"].update(value=0.95))
    rc, out = regress(capsys, "--baseline", baseline, results)
    assert rc == 1 and f"{record}: metrics.rouge_l" in out
    assert "regression gate FAILED: " in out
    run(results / "rocov2_paper327" / VARIANT / "seed-1", 1)

    # a copied run folder is not a fourth seed
    copy = results / "rocov2_paper327" / VARIANT / "seed-0-copy"
    run(copy, 0)
    rc, out = regress(capsys, "--baseline", baseline, results)
    assert rc == 1 and "a second record of task rocov2_paper327" in out
    for path in copy.iterdir():
        path.unlink()
    copy.rmdir()

    # a vLLM run of a seed is another run, not a second record of it, and not compared
    engine = results / "rocov2_paper327" / VARIANT / "seed-0-vllm"
    run(engine, 0, generate_s=13.0)
    vllm = BackendRef(name="vllm", version="0.32.0").model_dump(mode="json")
    edit(engine / "record.json", lambda d: d.update(backend=vllm))
    assert regress(capsys, "--baseline", baseline, results)[0] == 0

    # one seed where the baseline has three
    for name in ("seed-1", "seed-2"):
        folder = results / "rocov2_paper327" / VARIANT / name
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    rc, out = regress(capsys, "--baseline", baseline, results)
    assert rc == 1 and "seed(s) 1, 2 of the baseline have no record" in out


def test_the_gate_refuses_other_evaluated_data_and_infinities(tmp_path: Path, capsys) -> None:
    results = gate_results(tmp_path / "results")
    baseline = tmp_path / "baseline.json"
    assert regress(capsys, "--baseline", baseline, results, "--update-baseline")[0] == 0
    data = json.loads(baseline.read_text())
    data["runs"]["rocov2_paper327"][VARIANT]["ids_sha256"] = "b" * 64
    baseline.write_text(json.dumps(data))
    rc, out = regress(capsys, "--baseline", baseline, results)
    assert rc == 1 and "are not the baseline's bbbbbbbbbbbb" in out
    record = results / "rocov2_paper327" / VARIANT / "seed-0" / "record.json"
    edit(record, lambda d: d["metrics"]["bleu4"].update(value=float("inf")))
    rc, out = regress(capsys, "--baseline", baseline, results)
    assert rc == 1 and "value inf is not finite" in out
