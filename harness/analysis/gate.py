"""The record checks the regression gate runs before it compares anything.

Every record under the results folder is checked as `rocobench verify --quick` checks it
(`harness.analysis.verify`, depth `samples`); then no (task, variant, seed) may appear twice
per engine (a vLLM run of a seed is its own run), and each (task, variant) of the baseline's
`runs` section must have all its seeds from transformers runs (the ones compared), on the same
evaluated ids. Any problem fails the gate: a record that does not follow from its samples is
never compared as if it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.analysis.verify import verify_paths


def gate_problems(results: Path, runs: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Why a results folder cannot be compared with a baseline, one line each: records that
    fail the checks (depth `samples`), duplicated (task, variant, seed) runs, and seeds or
    evaluated ids that differ from the baseline's `runs` section."""
    from harness.records.sources import find_record_files

    files = find_record_files(Path(results), str(results))
    verdicts = verify_paths(
        ((f.path, f.label, f.contributor, False) for f in files), depth="samples"
    )
    out = [f"{v.path}: {why}" for v in verdicts for why in v.reasons]
    seen: dict[tuple[str, str, int, Any, str], str] = {}
    found: dict[tuple[str, str], tuple[set[int], set[str]]] = {}
    for v in verdicts:
        r = v.record
        if r is None or r.model.random_weights:
            continue
        key = (r.task, r.variant, r.seed, r.measurements.fixed_new_tokens, r.backend.name)
        if key in seen:
            out.append(
                f"{v.path}: a second record of task {r.task}, variant {r.variant}, "
                f"seed {r.seed} (first: {seen[key]})"
            )
        seen.setdefault(key, v.path)
        if not r.measurements.fixed_new_tokens and r.backend.name == "hf":
            seeds, ids = found.setdefault((r.task, r.variant), (set(), set()))
            seeds.add(r.seed)
            ids.add(r.dataset.ids_sha256)
    for task, variants in sorted((runs or {}).items()):
        for variant, expected in sorted(variants.items()):
            seeds, ids = found.get((task, variant), (set(), set()))
            want = set(expected.get("seeds") or ())
            if want - seeds:
                missing = ", ".join(map(str, sorted(want - seeds)))
                out.append(f"{task} × {variant}: seed(s) {missing} of the baseline have no record")
            want_ids = expected.get("ids_sha256")
            if want_ids and ids and ids != {want_ids}:
                out.append(
                    f"{task} × {variant}: evaluated ids {', '.join(sorted(i[:12] for i in ids))} "
                    f"are not the baseline's {want_ids[:12]}"
                )
    return out


def baseline_runs(results: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Seeds and evaluated-ids hash per (task, variant): the baseline's `runs` section."""
    from harness.records.store import find_records

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for _, r in find_records(Path(results)):
        if r.model.random_weights or r.measurements.fixed_new_tokens or r.backend.name != "hf":
            continue  # not what `regress` compares
        entry = out.setdefault(r.task, {}).setdefault(r.variant, {"seeds": [], "ids_sha256": ""})
        entry["seeds"] = sorted({*entry["seeds"], r.seed})
        entry["ids_sha256"] = r.dataset.ids_sha256
    return out
