"""`rocobench score`: score a file of (prediction, reference) pairs (`harness.analysis.score`).

Bad input stops the command with one line naming the file and line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.analysis.score import (
    PairsError,
    check_backbone,
    parse_metric_names,
    read_pairs,
    score_pairs,
)
from harness.cli.common import EXIT_SPEC, CliError, bounded_int
from harness.specs.limits import MAX_RESAMPLES

if TYPE_CHECKING:
    from harness.metrics import MetricScore


def register(sub: argparse._SubParsersAction) -> None:
    from harness.metrics.profiles import PROFILES, default_metrics

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
        default=",".join(default_metrics()),
        help=f"comma-separated metric names (default: {','.join(default_metrics())})",
    )
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="offline",
        help="text normalisation and BERTScore backbone (default: offline)",
    )
    p.add_argument(
        "--bertscore-model",
        metavar="ID_OR_PATH",
        help="BERTScore backbone instead of the profile's (Hub id, local path or "
        "bundled:all-MiniLM-L6-v2); every other rule of the profile stays",
    )
    p.add_argument(
        "--vocabulary",
        choices=("map", "manual"),
        help="concept vocabulary of concept_f1 (and of imageclef_factuality's substitute): "
        "map, every CUI of ROCOv2's map; manual, its manual modality / body-region concepts "
        "(default: the metric's default, map)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: metric -> value")
    p.add_argument(
        "--resamples",
        type=bounded_int(0, MAX_RESAMPLES),
        default=None,
        help="bootstrap resamples for the intervals (default 1000; 0: none), e.g. --resamples 0",
    )
    p.set_defaults(func=score)


def score(args: argparse.Namespace) -> int:
    from harness.metrics import MetricUnavailable
    from harness.metrics.profiles import PROFILES
    from harness.metrics.wordnet import WordNetError

    try:
        metrics = parse_metric_names(args.metrics)
        check_backbone(args.bertscore_model)
        pairs = read_pairs(args.pairs)
    except PairsError as err:
        print(f"rocobench: {err}", file=sys.stderr)
        return EXIT_SPEC
    resamples = 0 if args.json else args.resamples
    if "bertscore_f1" in metrics or any(m.startswith("imageclef_") for m in metrics):
        from harness.pipeline.runner import quiet_libraries

        quiet_libraries()  # no per-step bars from transformers when it loads the backbone
    try:
        scores = score_pairs(
            pairs,
            metrics,
            args.profile,
            resamples,
            bertscore_model=args.bertscore_model,
            vocabulary=args.vocabulary,
        )
    except (MetricUnavailable, WordNetError) as err:
        raise CliError(str(err)) from None
    if args.json:
        print(json.dumps({name: s.value for name, s in scores.items()}))
        return 0
    print(
        f"{args.pairs}: {len(pairs.ids)} pairs, profile {args.profile} "
        f"({PROFILES[args.profile].description})"
        + (f"; BERTScore backbone {args.bertscore_model}" if args.bertscore_model else "")
    )
    print(f"{'metric':<14}{'value':>9}  {'95 % CI':<19} setting")
    for name, s in scores.items():
        ci = f"[{s.ci95[0]:.4f}, {s.ci95[1]:.4f}]" if s.ci95 else "-"
        print(f"{name:<14}{s.value:>9.4f}  {ci:<19} {_setting(s)}")
    return 0


def _setting(s: MetricScore) -> str:
    d = s.details
    if "status" in d:
        return f"{d['status']}: " + "; ".join(
            str(d[k]) for k in ("parts", "substitutes", "missing_why") if k in d
        )
    if "backbone" in d and "num_layers" in d:
        return f"{d['backbone']}, layer {d['num_layers']}, idf {d['idf']}"
    if "signature" in d:
        return f"{d['signature']}, max n-gram order {d['max_ngram_order']}"
    return ", ".join(f"{k} {v}" for k, v in d.items())
