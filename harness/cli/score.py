"""`rocobench score`: score a file of (prediction, reference) pairs with the run's metric code.

PAIRS is JSON Lines, one object per line with `id`, `prediction` and `reference`, and optionally
`concepts`, the reference's UMLS CUIs for the concept metrics (other keys are ignored, so a run's
samples.jsonl can be scored again as it is). The texts are scored as given,
except under `--profile imageclef`, which normalises both sides first. Bad input stops the
command with one line naming the file and line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.common import EXIT_SPEC, CliError

if TYPE_CHECKING:
    from harness.metrics import MetricScore


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
    pairs: Pairs, metrics: list[str], profile: str, resamples: int | None = None
) -> dict[str, MetricScore]:
    """The run pipeline's compute_metrics on the pairs, under a profile."""
    from harness.concepts import reference_concepts
    from harness.metrics import PROFILES, compute_metrics, imageclef_normalise, profile_requests

    requests = profile_requests(profile, metrics)
    predictions, references = pairs.predictions, pairs.references
    if PROFILES[profile].imageclef_text:
        predictions = [imageclef_normalise(t) for t in predictions]
        references = [imageclef_normalise(t) for t in references]
    with reference_concepts(pairs.concepts):
        return compute_metrics(requests, predictions, references, resamples=resamples)


def register(sub: argparse._SubParsersAction) -> None:
    from harness.metrics import DEFAULT_METRICS, PROFILES

    p = sub.add_parser(
        "score",
        help="score a JSONL file of prediction/reference pairs",
        description="Score pairs with the same metric code as `rocobench run`. PAIRS: one JSON "
        "object per line with id, prediction and reference. Prints each metric with its "
        "bootstrap 95 % interval, or with --json one object mapping metric name to value. "
        "Profiles: "
        + "; ".join(f"{name}: {prof.description}" for name, prof in PROFILES.items())
        + ".",
    )
    p.add_argument("--pairs", type=Path, required=True, metavar="PAIRS.jsonl")
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help=f"comma-separated metric names (default: {','.join(DEFAULT_METRICS)})",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="offline",
        help="text normalisation and BERTScore backbone (default: offline)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: metric -> value")
    p.add_argument(
        "--resamples",
        type=int,
        default=None,
        help="bootstrap resamples for the intervals (default 1000; 0: none)",
    )
    p.set_defaults(func=score)


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


def score(args: argparse.Namespace) -> int:
    from harness.metrics import PROFILES, MetricUnavailable
    from harness.wordnet import WordNetError

    try:
        metrics = parse_metric_names(args.metrics)
        pairs = read_pairs(args.pairs)
    except PairsError as err:
        print(f"rocobench: {err}", file=sys.stderr)
        return EXIT_SPEC
    resamples = 0 if args.json else args.resamples
    if "bertscore_f1" in metrics:
        from harness.run import quiet_libraries

        quiet_libraries()  # no per-step bars from transformers when it loads the backbone
    try:
        scores = score_pairs(pairs, metrics, args.profile, resamples)
    except (MetricUnavailable, WordNetError) as err:
        raise CliError(str(err)) from None
    if args.json:
        print(json.dumps({name: s.value for name, s in scores.items()}))
        return 0
    print(
        f"{args.pairs}: {len(pairs.ids)} pairs, profile {args.profile} "
        f"({PROFILES[args.profile].description})"
    )
    print(f"{'metric':<14}{'value':>9}  {'95 % CI':<19} setting")
    for name, s in scores.items():
        ci = f"[{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]" if s.ci95 else "-"
        print(f"{name:<14}{s.value:>9.4f}  {ci:<19} {_setting(s)}")
    return 0


def _setting(s: MetricScore) -> str:
    d = s.details
    if "backbone" in d:
        return f"{d['backbone']}, layer {d['num_layers']}, idf {d['idf']}"
    if "signature" in d:
        return f"{d['signature']}, max n-gram order {d['max_ngram_order']}"
    return ", ".join(f"{k} {v}" for k, v in d.items())
