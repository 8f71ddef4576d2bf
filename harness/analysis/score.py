"""Score a file of (prediction, reference) pairs with the run's metric code (`rocobench score`).

PAIRS is JSON Lines, one object per line with `id`, `prediction` and `reference`, and optionally
`concepts`, the reference's UMLS CUIs for the concept metrics (other keys are ignored, so a run's
samples.jsonl can be scored again as it is). The texts are scored as given, except under the
`imageclef` profile, which follows the ImageCLEFmedical Caption evaluator
(harness.metrics.imageclef).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.metrics import MetricOptions, MetricScore


class PairsError(ValueError):
    """A problem with the input; str() is one line naming the file (and line)."""


@dataclass(frozen=True)
class Pairs:
    ids: list[str | int]
    predictions: list[str]
    references: list[str]
    # per pair, the reference CUIs where the line has `concepts` (None: extracted from the text)
    concepts: list[list[str] | None] | None = None


def read_pairs(path: Path) -> Pairs:
    """Read and check a pairs file; raises PairsError at the first problem."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PairsError(f"{path}: cannot read ({err.strerror or err})") from None
    ids: list[str | int] = []
    predictions: list[str] = []
    references: list[str] = []
    concepts: list[list[str] | None] = []
    first_line: dict[str | int, int] = {}
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PairsError(f"{where}: not UTF-8 (byte {err.start + 1})") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PairsError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
        if not isinstance(row, dict):
            raise PairsError(
                f"{where}: expected a JSON object with id, prediction and reference, "
                f"got {type(row).__name__}"
            )
        missing = [k for k in ("id", "prediction", "reference") if k not in row]
        if missing:
            raise PairsError(f"{where}: missing {', '.join(missing)}")
        for key in ("prediction", "reference"):
            if not isinstance(row[key], str):
                raise PairsError(f"{where}: {key}: expected a string, got {_json_type(row[key])}")
        sample_id = row["id"]
        if isinstance(sample_id, bool) or not isinstance(sample_id, str | int):
            raise PairsError(
                f"{where}: id: expected a string or integer, got {_json_type(sample_id)}"
            )
        if sample_id in first_line:
            raise PairsError(
                f"{where}: duplicate id {sample_id!r} (first on line {first_line[sample_id]})"
            )
        cuis = row.get("concepts")
        if cuis is not None and (
            not isinstance(cuis, list) or not all(isinstance(c, str) for c in cuis)
        ):
            raise PairsError(f"{where}: concepts: expected a list of strings")
        first_line[sample_id] = number
        concepts.append(cuis)
        ids.append(sample_id)
        predictions.append(row["prediction"])
        references.append(row["reference"])
    if not ids:
        raise PairsError(f"{path}: no pairs (expected one JSON object per line)")
    has_concepts = any(c is not None for c in concepts)
    return Pairs(ids, predictions, references, concepts if has_concepts else None)


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "boolean", int: "number", float: "number", list: "array"}
    return names.get(type(value), "object" if isinstance(value, dict) else type(value).__name__)


def score_pairs(
    pairs: Pairs,
    metrics: list[str],
    profile: str,
    resamples: int | None = None,
    *,
    bertscore_model: str | None = None,
    vocabulary: str | None = None,
) -> dict[str, MetricScore]:
    """The run pipeline's compute_metrics on the pairs, under a profile.

    `bertscore_model` replaces the profile's BERTScore backbone (every other rule stays);
    `vocabulary` sets the concept metrics' vocabulary (map | manual). A metric the profile
    routes (imageclef: bertscore_f1, rouge_1) and the imageclef_* metrics get the raw texts and
    apply the evaluator's own normalisation; the others get the profile's text.
    """
    from harness.metrics import References, compute_metrics
    from harness.metrics.profiles import PROFILES, profile_requests
    from harness.text import imageclef_normalise

    prof = PROFILES[profile]
    plain = [n for n in metrics if n not in prof.routes and not n.startswith("imageclef_")]
    raw = [(n, prof.routes.get(n, n)) for n in metrics if n not in plain]
    requests = [_override(r, bertscore_model, vocabulary) for r in profile_requests(profile, plain)]
    raw_requests = [
        _override(r, bertscore_model, vocabulary)
        for r in profile_requests(profile, [impl for _, impl in raw])
    ]
    predictions, references = pairs.predictions, pairs.references
    if prof.imageclef_text:
        predictions = [imageclef_normalise(t) for t in predictions]
        references = [imageclef_normalise(t) for t in references]
    concepts = (
        None
        if pairs.concepts is None
        else tuple(None if c is None else tuple(c) for c in pairs.concepts)
    )
    scores: dict[str, MetricScore] = {}
    if requests:
        refs = References(tuple(references), concepts)
        scores |= compute_metrics(requests, predictions, refs, resamples=resamples)
    if raw_requests:
        # the same seed and pair count: both groups see the same bootstrap resamples
        refs = References(tuple(pairs.references), concepts)
        computed = compute_metrics(raw_requests, pairs.predictions, refs, resamples=resamples)
        scores |= {name: computed[impl] for name, impl in raw}
    return {name: scores[name] for name in metrics}


def _override(
    request: tuple[str, MetricOptions], bertscore_model: str | None, vocabulary: str | None
) -> tuple[str, MetricOptions]:
    """A request with the backbone / vocabulary given on the command line, where it has one."""
    name, options = request
    fields = {
        "model_type": bertscore_model,
        "bertscore_model": bertscore_model,
        "vocabulary": vocabulary,
        "substitute_vocabulary": vocabulary,
    }
    known = type(options).model_fields
    changes: dict[str, object] = {k: v for k, v in fields.items() if v is not None and k in known}
    if "model_type" in changes and "num_layers" in known:
        changes["num_layers"] = None  # the new backbone's own default layer
    if "bertscore_model" in changes:
        changes["bertscore_layers"] = None
    if not changes:
        return request
    return name, type(options).model_validate(options.model_dump() | changes)


def check_backbone(name: str | None) -> None:
    """A bundled backbone named on the command line must exist (PairsError otherwise)."""
    from harness.metrics.bertscore import BUNDLED_BACKBONES, BUNDLED_PREFIX

    if name is None or not name.startswith(BUNDLED_PREFIX):
        return
    if name.removeprefix(BUNDLED_PREFIX) not in BUNDLED_BACKBONES:
        known = ", ".join(BUNDLED_PREFIX + n for n in sorted(BUNDLED_BACKBONES))
        raise PairsError(f"--bertscore-model: unknown bundled backbone {name} (known: {known})")


def parse_metric_names(text: str) -> list[str]:
    from harness.metrics import METRICS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PairsError("--metrics: no metric named")
    for name in names:
        if name not in METRICS:
            raise PairsError(f"--metrics: {METRICS.unknown_message(name)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PairsError(f"--metrics: named more than once: {', '.join(repeated)}")
    return names
