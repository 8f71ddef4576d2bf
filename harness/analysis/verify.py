"""Check run records before anyone believes them: `rocobench verify`, and the record checks that
`render` and `regress` apply on read.

A record is untrusted input (a community submission, or a file edited by hand). Each record gets
one status:

- `verified`: passes every check and comes from a source a maintainer's job wrote (its runs were
  redone by the project, not only checked);
- `checked`: passes every check (a community record);
- `rejected`: at least one check failed; the reasons say which, each naming the file.

What is checked, cheapest first (`Depth`):

- `record` (the record alone): it parses; every metric value and interval is finite; the
  metric's `n` and the dataset's sample count agree; the efficiency figures are plausible
  (finite, non-negative, throughput and tokens per image consistent with their totals); the
  provenance is complete (package versions, hardware, git SHA, a seed >= 0); the manifest
  carried in the record hashes to its `manifest_sha256`.
- `samples` (+ samples.jsonl): one line per evaluated image, no id twice, the ids hash to the
  record's `ids_sha256`; per-sample scores average to the record's value; new tokens add up to
  the measured total; cheap metrics (BLEU, ROUGE, CIDEr) are recomputed from the captions.
- `full` (+ the repository and predictions.jsonl): every metric recomputed with the task's own
  settings (a metric whose backbone is not on this machine is noted, or rejected under
  `strict`); the task spec and manifest hashes equal this repository's files (at the record's
  git SHA when this checkout has that commit, else the current files); the dataset path,
  revision and split are the task's; when that dataset is on this machine, the evaluated ids
  and the references are its own (so a reference edited to match its caption is caught); each
  caption's sampling seed derives from the declared run seed. The lighter depths cannot see an
  edited reference: only `full` (the review of a submission) compares with the data.

Across records (`check_set`): two records of one key (task, variant, seed, hardware,
contributor) with different content are both rejected, and records of one (task, variant,
hardware, contributor) whose sampled captions are identical under different seed numbers are a
reused seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from harness.records.layout import PREDICTIONS_FILE
from harness.records.record import RunRecord

Status = Literal["verified", "checked", "rejected"]
Depth = Literal["record", "samples", "full"]
STATUSES: tuple[Status, ...] = ("verified", "checked", "rejected")
# Metrics recomputed at depth `samples`: reference-library code that needs no model or corpus.
CHEAP_METRICS = frozenset({"bleu", "bleu1", "bleu4", "rouge_1", "rouge_l", "cider"})
ABS_TOL = 1e-6  # a recomputed score, or a mean of per-sample scores, against the record
REL_TOL = 1e-6
TIME_TOL = 0.02  # relative: throughput figures against their own totals (rounding)


def close(a: float, b: float, abs_tol: float = ABS_TOL, rel_tol: float = REL_TOL) -> bool:
    return math.isclose(a, b, abs_tol=abs_tol, rel_tol=rel_tol)


@dataclass
class Verdict:
    """The outcome for one record file."""

    path: str  # where it was read, for messages
    record: RunRecord | None
    reasons: list[str] = field(default_factory=list)  # failed checks: any makes it rejected
    notes: list[str] = field(default_factory=list)  # checks that could not be made here
    trusted: bool = False  # from a maintainer's job: `verified` when it passes
    contributor: str = ""

    @property
    def status(self) -> Status:
        if self.reasons or self.record is None:
            return "rejected"
        return "verified" if self.trusted else "checked"

    def reject(self, reason: str) -> None:
        self.reasons.append(reason)

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.status}"]
        out += [f"  - {r}" for r in self.reasons]
        out += [f"  note: {n}" for n in self.notes]
        return out


# --------------------------------------------------------------------------- reading


def read_record(path: Path, label: str | None = None) -> Verdict:
    """Parse a record file; a broken one becomes a rejected verdict naming the file."""
    label = label or str(path)
    try:
        record = RunRecord.model_validate_json(path.read_bytes())
    except OSError as err:
        return Verdict(label, None, [f"cannot read: {err.strerror or err}"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        return Verdict(label, None, [f"not a valid record: {where}: {first['msg']}{more}"])
    return Verdict(label, record)


def read_rows(path: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The lines of a JSONL file, or why they cannot be read."""
    if not path.is_file():
        return None, f"{path.name} is missing"
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict):
                    return None, f"{path.name}:{n}: expected a JSON object"
                rows.append(row)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{path.name}: unreadable ({type(err).__name__})"
    return rows, None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the record alone


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def record_problems(r: RunRecord) -> list[str]:
    """What the record alone shows to be wrong: non-finite values, implausible figures, gaps in
    its provenance."""
    out: list[str] = []
    for name, mv in sorted(r.metrics.items()):
        if not math.isfinite(mv.value):
            out.append(f"metrics.{name}: value {mv.value} is not finite")
        if mv.ci95 is not None:
            lo, hi = mv.ci95
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                out.append(f"metrics.{name}.ci95: [{lo}, {hi}] is not a finite interval")
            elif math.isfinite(mv.value) and not lo - ABS_TOL <= mv.value <= hi + ABS_TOL:
                out.append(f"metrics.{name}: value {mv.value} outside its own ci95 [{lo}, {hi}]")
        if mv.n is not None and mv.n != r.dataset.n_samples:
            out.append(f"metrics.{name}.n: {mv.n} pairs, but {r.dataset.n_samples} evaluated")
    if r.seed < 0:
        out.append(f"seed: {r.seed} is negative")
    if r.dataset.n_samples <= 0:
        out.append("dataset.n_samples: no evaluated samples")
    out += _measurement_problems(r)
    out += _provenance_problems(r)
    if r.manifest:
        blob = json.dumps(r.manifest, sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(blob.encode()).hexdigest() != r.model.manifest_sha256:
            out.append("manifest: the manifest in the record does not hash to manifest_sha256")
    return out


def _measurement_problems(r: RunRecord) -> list[str]:
    m = r.measurements
    out: list[str] = []
    figures = m.model_dump(mode="json")
    for name, value in figures.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            out.append(f"measurements.{name}: {value} is not finite")
        elif value < 0:
            out.append(f"measurements.{name}: {value} is negative")
    if out:
        return out
    if m.n_images > r.dataset.n_samples:
        out.append(
            f"measurements.n_images: {m.n_images} images measured, {r.dataset.n_samples} evaluated"
        )
    if m.n_images <= 0 or out:  # a run resumed in full generated nothing itself
        return out
    if not close(m.new_tokens_per_image, m.new_tokens_total / m.n_images, 1e-3, TIME_TOL):
        out.append(
            f"measurements.new_tokens_per_image: {m.new_tokens_per_image} is not "
            f"new_tokens_total / n_images = {m.new_tokens_total / m.n_images:.6g}"
        )
    if m.generate_s > 0 and not close(m.images_per_s, m.n_images / m.generate_s, 1e-3, TIME_TOL):
        out.append(
            f"measurements.images_per_s: {m.images_per_s} is not n_images / generate_s = "
            f"{m.n_images / m.generate_s:.6g}"
        )
    if m.generate_s <= 0 and m.n_images > 0:
        out.append("measurements.generate_s: no generation time for generated images")
    if m.fixed_new_tokens and not close(m.new_tokens_per_image, m.fixed_new_tokens, 1e-3, 0):
        out.append(
            f"measurements.new_tokens_per_image: {m.new_tokens_per_image}, but every caption "
            f"was fixed at {m.fixed_new_tokens} tokens"
        )
    return out


def _provenance_problems(r: RunRecord) -> list[str]:
    p = r.provenance
    out: list[str] = []
    if not p.packages:
        out.append("provenance.packages: no package versions")
    hw = p.hardware
    if hw.device not in ("cpu", "cuda"):
        out.append(f"provenance.hardware.device: {hw.device!r} is neither cpu nor cuda")
    if hw.device == "cuda" and not hw.gpus:
        out.append("provenance.hardware.gpus: a CUDA run names no GPU")
    if hw.cpu_count <= 0 or not hw.cpu.strip():
        out.append("provenance.hardware: no CPU model or count")
    if not p.git_sha:
        out.append("provenance.git_sha: missing (which code produced this run?)")
    return out


# --------------------------------------------------------------------------- samples


def sample_problems(r: RunRecord, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The record's numbers against its own per-sample file."""
    out: list[str] = []
    name = r.samples_file
    if len(rows) != r.dataset.n_samples:
        out.append(f"{name}: {len(rows)} samples, but the record evaluated {r.dataset.n_samples}")
    ids = [str(row.get("id")) for row in rows]
    if len(set(ids)) != len(ids):
        out.append(f"{name}: some sample ids appear twice")
    if hashlib.sha256("\n".join(ids).encode()).hexdigest() != r.dataset.ids_sha256:
        out.append(f"{name}: the sample ids do not hash to dataset.ids_sha256")
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("prediction"), str) or not isinstance(row.get("reference"), str):
            out.append(f"{name}:{n}: no prediction or reference text")
            return out
    out += _score_mean_problems(r, rows)
    tokens = [row.get("new_tokens") for row in rows if "error" not in row]
    m = r.measurements
    if (
        m.n_images == len(tokens)
        and all(isinstance(t, int) for t in tokens)
        and sum(tokens) != m.new_tokens_total  # type: ignore[arg-type]
    ):
        out.append(
            f"{name}: new tokens add up to {sum(tokens)}, but "  # type: ignore[arg-type]
            f"measurements.new_tokens_total is {m.new_tokens_total}"
        )
    return out


def _score_mean_problems(r: RunRecord, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    from harness.metrics import METRICS

    out: list[str] = []
    for metric, mv in sorted(r.metrics.items()):
        if metric not in METRICS or METRICS.get(metric).resampler is not None:
            continue  # corpus metrics are not means of their per-sample scores
        values = [row.get("scores", {}).get(metric) for row in rows]
        if all(v is None for v in values):
            out.append(f"{r.samples_file}: no per-sample {metric} scores")
            continue
        kept = [v for v in values if v is not None]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in kept):
            out.append(f"{r.samples_file}: per-sample {metric} scores are not all finite numbers")
            continue
        mean = math.fsum(kept) / len(kept)
        if not close(mean, mv.value):
            out.append(
                f"metrics.{metric}: {mv.value:.6g} is not the mean of its per-sample scores "
                f"({mean:.6g})"
            )
    return out


def rescore_problems(
    r: RunRecord,
    rows: Sequence[Mapping[str, Any]],
    requests: Sequence[tuple[str, Any]],
    notes: list[str],
    *,
    strict: bool = False,
    complete: bool = False,
) -> list[str]:
    """Recompute the requested metrics from the captions and compare them with the record;
    `complete`: `requests` is the task's whole list, so any other metric is out of place."""
    from harness.metrics import MetricUnavailable, References, compute_metrics

    predictions = [str(row["prediction"]) for row in rows]
    concepts = [row.get("concepts") for row in rows]
    references = References(
        tuple(str(row["reference"]) for row in rows),
        tuple(None if c is None else tuple(map(str, c)) for c in concepts)
        if any(c is not None for c in concepts)
        else None,
    )
    out: list[str] = []
    for metric, options in requests:
        recorded = r.metrics.get(metric)
        if recorded is None:
            out.append(f"metrics.{metric}: the task scores it, the record has no value")
            continue
        try:
            score = compute_metrics([(metric, options)], predictions, references, resamples=0)
        except MetricUnavailable as err:
            text = f"metrics.{metric}: not recomputed here ({err})"
            (out if strict else notes).append(text)
            continue
        value = score[metric].value
        if not close(value, recorded.value, 1e-5, 1e-5):
            out.append(
                f"metrics.{metric}: recorded {recorded.value:.6g}, recomputed from the "
                f"captions {value:.6g}"
            )
    if complete:
        out += [
            f"metrics.{m}: not a metric of the task"
            for m in sorted(set(r.metrics) - {m for m, _ in requests})
        ]
    return out


def cheap_requests(r: RunRecord) -> list[tuple[str, Any]]:
    """The record's cheap metrics, with default options (their details name no option)."""
    from harness.metrics import METRICS

    return [
        (name, METRICS.get(name).options())
        for name in sorted(r.metrics)
        if name in CHEAP_METRICS and name in METRICS
    ]


# --------------------------------------------------------------------------- the repository


def _git_file(sha: str, rel: str, repo: Path) -> bytes | None:
    try:
        out = subprocess.run(
            ["git", "show", f"{sha}:{rel}"], cwd=repo, capture_output=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _spec_at(kind: str, name: str, sha: str | None, repo: Path) -> tuple[Any, str] | None:
    """The task or variant spec `name` at commit `sha` (else the current file), and which."""
    from harness.specs.task import load_task
    from harness.specs.variant import load_variant

    loader = load_task if kind == "tasks" else load_variant
    rel = f"{kind}/{name}.yaml"
    if sha:
        data = _git_file(sha, rel, repo)
        if data is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}.yaml"
                path.write_bytes(data)
                return loader(path), f"{rel} at {sha[:12]}"
    path = repo / rel
    if path.is_file():
        return loader(path), rel
    return None


def repository_problems(r: RunRecord, repo: Path, notes: list[str]) -> tuple[list[str], Any]:
    """Task-spec and manifest hashes and the dataset against this repository; the task spec."""
    from harness.specs.common import spec_hash
    from harness.specs.yamlio import SpecError

    out: list[str] = []
    sha = r.provenance.git_sha
    try:
        task_at = _spec_at("tasks", r.task, sha, repo)
        variant_at = _spec_at("variants", r.variant, sha, repo)
    except (SpecError, ValidationError) as err:
        return [f"cannot load the repository's spec: {str(err).splitlines()[0]}"], None
    task = None
    if task_at is None:
        out.append(f"task: no task {r.task!r} in this repository's tasks/")
    else:
        task, where = task_at
        if spec_hash(task) != r.task_sha256:
            out.append(f"task_sha256: not the hash of {where}")
        d = r.dataset
        revision = task.dataset_kwargs.revision if task.dataset_kwargs else None
        if d.split != task.test_split:
            out.append(f"dataset.split: {d.split!r}, the task evaluates {task.test_split!r}")
        if not task.is_local:
            if d.path != task.dataset_path or (revision and d.revision != revision):
                out.append(
                    f"dataset: {d.path}@{d.revision}, the task names {task.dataset_path}@{revision}"
                )
        elif not (d.revision or "").startswith("sha256:"):
            out.append("dataset.revision: a local dataset is identified by its content hash")
    if variant_at is None:
        out.append(f"variant: no manifest {r.variant!r} in this repository's variants/")
    else:
        variant, where = variant_at
        if spec_hash(variant) != r.model.manifest_sha256:
            out.append(f"model.manifest_sha256: not the hash of {where}")
    return out, task


def dataset_problems(
    r: RunRecord, rows: Sequence[Mapping[str, Any]], task: Any, notes: list[str]
) -> list[str]:
    """The evaluated ids and the references against the task's dataset at its revision, when
    that dataset is on this machine (a local folder, or the Hub cache)."""
    from harness.data.dataset import DatasetError, load_split

    try:
        evalset = load_split(task, limit=r.dataset.n_samples)
    except (DatasetError, OSError) as err:
        notes.append(f"dataset: not loaded here, ids and references not checked ({err})")
        return []
    if evalset.revision != r.dataset.revision:
        return [f"dataset.revision: {r.dataset.revision}, the task's data is {evalset.revision}"]
    out = []
    if evalset.ids_sha256 != r.dataset.ids_sha256:
        out.append(
            f"dataset.ids_sha256: not the first {r.dataset.n_samples} ids of "
            f"{evalset.path} split {evalset.split}"
        )
    for n, (row, reference) in enumerate(zip(rows, evalset.references, strict=False), 1):
        if row.get("reference") != reference:
            out.append(f"{r.samples_file}:{n}: the reference is not the dataset's")
            break
    return out


def seed_problems(r: RunRecord, predictions: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """Each caption's sampling seed derives from (declared run seed, sample id)."""
    from harness.pipeline.prediction import sample_seed

    if predictions is None:
        return [f"{PREDICTIONS_FILE} is missing: the captions' seeds cannot be checked"]
    for n, row in enumerate(predictions, 1):
        expected = sample_seed(r.seed, str(row.get("id")))
        if row.get("sample_seed") != expected:
            return [
                f"{PREDICTIONS_FILE}:{n}: sample_seed {row.get('sample_seed')} does not derive "
                f"from seed {r.seed}: the captions came from another seed"
            ]
    return []


# --------------------------------------------------------------------------- one record


def check_record(
    path: Path,
    *,
    depth: Depth = "samples",
    label: str | None = None,
    repo: Path | None = None,
    trusted: bool = False,
    strict: bool = False,
) -> Verdict:
    """Every check of `depth` on the record file at `path` (its samples beside it)."""
    verdict = read_record(path, label)
    verdict.trusted = trusted
    r = verdict.record
    if r is None:
        return verdict
    verdict.reasons += record_problems(r)
    if depth == "record":
        return verdict
    if Path(r.samples_file).name != r.samples_file or r.samples_file in ("", ".", ".."):
        verdict.reject(f"samples_file: {r.samples_file!r} is not a plain file name")
        return verdict
    rows, why = read_rows(path.parent / r.samples_file)
    if rows is None:
        verdict.reject(f"{why}: the scores cannot be checked")
        return verdict
    verdict.reasons += sample_problems(r, rows)
    if depth == "samples":
        verdict.reasons += rescore_problems(r, rows, cheap_requests(r), verdict.notes)
        return verdict
    from harness.metrics import parse_options
    from harness.paths import REPO_ROOT

    problems, task = repository_problems(r, repo or REPO_ROOT, verdict.notes)
    verdict.reasons += problems
    if task is not None and not r.model.random_weights:
        current = _spec_at("tasks", r.task, None, repo or REPO_ROOT)
        if current is not None:  # the data is found from the current file's folder
            verdict.reasons += dataset_problems(r, rows, current[0], verdict.notes)
        requests = [(m.metric, parse_options(m.metric, m.kwargs)) for m in task.metric_list]
        verdict.reasons += rescore_problems(
            r, rows, requests, verdict.notes, strict=strict, complete=True
        )
    predictions, _ = read_rows(path.parent / PREDICTIONS_FILE)
    verdict.reasons += seed_problems(r, predictions)
    return verdict


# --------------------------------------------------------------------------- across records


def record_key(v: Verdict) -> tuple[str, str, int, str, str, str] | None:
    """(task, variant, seed, hardware, contributor, run kind): what may exist once."""
    from harness.analysis.hardware import hardware_name

    r = v.record
    if r is None:
        return None
    m = r.measurements
    kind = f"fixed-{m.fixed_new_tokens}" if m.fixed_new_tokens else "natural"
    kind += "-random" if r.model.random_weights else ""
    kind += "" if r.backend.name == "hf" else f"-{r.backend.name}"  # another engine: another run
    return (r.task, r.variant, r.seed, hardware_name(r.provenance.hardware), v.contributor, kind)


def _captions(v: Verdict, path: Path) -> tuple[str, ...] | None:
    r = v.record
    if r is None or Path(r.samples_file).name != r.samples_file:
        return None
    rows, _ = read_rows(path.parent / r.samples_file)
    return None if rows is None else tuple(str(row.get("prediction")) for row in rows)


def check_set(verdicts: Sequence[Verdict], paths: Sequence[Path]) -> None:
    """Duplicated keys and reused seeds among records read together (reasons added in place)."""
    by_key: dict[tuple[str, str, int, str, str, str], list[int]] = {}
    for i, v in enumerate(verdicts):
        key = record_key(v)
        if key is not None:
            by_key.setdefault(key, []).append(i)
    for key, idx in by_key.items():
        if len(idx) > 1 and len({file_sha256(paths[i]) for i in idx}) > 1:
            where = ", ".join(verdicts[i].path for i in idx)
            for i in idx:
                verdicts[i].reject(
                    f"duplicate: {len(idx)} different records of task {key[0]}, variant "
                    f"{key[1]}, seed {key[2]} on {key[3]}: {where}"
                )
    # Sampled captions under two seed numbers of one (task, variant, machine, contributor, kind)
    # are the same seed relabelled. Greedy captions repeat across seeds by design.
    first_seen: dict[tuple[Any, ...], tuple[int, int]] = {}  # -> (seed, index)
    for i, v in sorted(enumerate(verdicts), key=lambda iv: record_key(iv[1]) or ()):
        key = record_key(v)
        if key is None or v.record is None or not v.record.generation.get("do_sample", False):
            continue
        captions = _captions(v, paths[i])
        if not captions or not any(captions):
            continue
        group = (*key[:2], *key[3:], captions)
        seed, j = first_seen.setdefault(group, (key[2], i))
        if seed != key[2]:
            for k in (j, i):
                verdicts[k].reject(
                    f"reused seed: seeds {seed} and {key[2]} have identical sampled captions "
                    f"({verdicts[j].path}, {v.path})"
                )


def verify_paths(
    files: Iterable[tuple[Path, str, str, bool]],
    *,
    depth: Depth = "full",
    repo: Path | None = None,
    strict: bool = False,
) -> list[Verdict]:
    """Check records given as (file, label, contributor, trusted), then across them."""
    items = list(files)
    verdicts = []
    for path, label, contributor, trusted in items:
        v = check_record(path, depth=depth, label=label, repo=repo, trusted=trusted, strict=strict)
        v.contributor = contributor
        verdicts.append(v)
    check_set(verdicts, [p for p, *_ in items])
    return verdicts
