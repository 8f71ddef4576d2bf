"""How long the metrics take on a full ROCOv2 test split's worth of pairs (9,927 by default).

Pairs are real radiology captions matched to other captions: ROCO v1 test captions
(`--captions`, the `ID<TAB>caption` file of ROCO v1) when the file is there, else the bundled
sample's captions. Prediction i is caption i mod m, its reference caption (i + 1 + i div m) mod
m, so no caption is paired with itself and the pairs keep real lengths and vocabulary.

Each metric is timed alone, after a one-pair warm-up that imports its library (and loads
WordNet or the BERTScore backbone), so the figures are the scoring itself; then the bootstrap
95 % intervals (1,000 resamples) of all of them together, as a run computes them. Wall and
process CPU seconds are both printed: CPU time is less disturbed on a shared machine. Goal: the
lexical metrics (BLEU-4, ROUGE-L, METEOR, CIDEr) in at most 30 s on 2 cores.

    .venv/bin/python benchmarks/metrics_speed.py [--pairs 9927] [--no-bertscore] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROCO_V1 = Path("/work/shared/data/roco_v1_test/captions.txt")
GOAL_S = 30.0
LEXICAL = ("bleu4", "rouge_l", "meteor", "cider")
EXTRA = ("bleu1", "rouge_1")


def load_captions(path: Path | None) -> tuple[list[str], str]:
    if path is not None and path.is_file():
        with path.open(encoding="utf-8") as fh:
            rows = [line.rstrip("\n").split("\t", 1) for line in fh if "\t" in line]
        return [" ".join(c.split()) for _, c in rows if c.strip()], str(path)
    import datasets

    datasets.disable_progress_bars()
    folder = REPO / "tasks/data/rocov2_sample"
    captions = []
    for split in ("train", "validation", "test"):
        ds = datasets.load_dataset(str(folder), split=split).select_columns(["caption"])
        captions += [" ".join(c.split()) for c in ds["caption"] if c.strip()]
    return captions, f"{folder} (bundled sample)"


def make_pairs(captions: list[str], n: int) -> tuple[list[str], list[str]]:
    m = len(captions)
    predictions = [captions[i % m] for i in range(n)]
    references = [captions[(i + 1 + i // m) % m] for i in range(n)]
    return predictions, references


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=9927)
    parser.add_argument("--captions", type=Path, default=ROCO_V1, help="ROCO v1 captions.txt")
    parser.add_argument("--no-bertscore", action="store_true", help="skip the offline BERTScore")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from harness.metrics import METRICS, compute_metrics, parse_options, stats
    from harness.metrics.profiles import PROFILES

    captions, source = load_captions(args.captions)
    preds, refs = make_pairs(captions, args.pairs)
    names = [*LEXICAL, *EXTRA] + ([] if args.no_bertscore else ["bertscore_f1"])
    options = {
        n: PROFILES["offline"].bertscore if n == "bertscore_f1" else parse_options(n, {})
        for n in names
    }
    rows: dict[str, dict[str, float]] = {}
    scores = {}
    for name in names:
        compute_metrics([(name, options[name])], preds[:1], refs[:1], resamples=0)  # warm-up
        score, wall, cpu = timed(
            lambda name=name: compute_metrics([(name, options[name])], preds, refs, resamples=0)[
                name
            ]
        )
        scores[name] = score
        rows[name] = {"value": score.value, "wall_s": wall, "cpu_s": cpu}

    def intervals() -> dict[str, tuple[float, float]]:
        statistics_ = {
            n: METRICS.get(n).statistic(preds, refs, options[n], scores[n].per_sample)
            for n in names
        }
        return stats.confidence_intervals(statistics_, len(preds))

    cis, ci_wall, ci_cpu = timed(intervals)
    lexical_wall = sum(rows[n]["wall_s"] for n in LEXICAL)
    lexical_cpu = sum(rows[n]["cpu_s"] for n in LEXICAL)
    report = {
        "pairs": len(preds),
        "captions": source,
        "cpus": os.cpu_count(),
        "metrics": {n: {**rows[n], "ci95": cis[n]} for n in names},
        "lexical_wall_s": lexical_wall,
        "lexical_cpu_s": lexical_cpu,
        "bootstrap_wall_s": ci_wall,
        "bootstrap_cpu_s": ci_cpu,
        "goal_s": GOAL_S,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(preds):,} pairs from {source}; {os.cpu_count()} CPUs")
    print(f"{'metric':<14}{'value':>10}  {'95 % CI':<20}{'wall s':>8}{'CPU s':>8}")
    for n in names:
        r, (lo, hi) = rows[n], cis[n]
        print(
            f"{n:<14}{r['value']:>10.4f}  [{lo:.4f}, {hi:.4f}]    "
            f"{r['wall_s']:>8.2f}{r['cpu_s']:>8.2f}"
        )
    verdict = "within" if lexical_wall <= GOAL_S else "over"
    print(
        f"lexical (BLEU-4, ROUGE-L, METEOR, CIDEr): {lexical_wall:.1f} s wall, "
        f"{lexical_cpu:.1f} s CPU ({verdict} the {GOAL_S:.0f} s goal)"
    )
    print(
        f"bootstrap intervals, {stats.RESAMPLES} resamples, all {len(names)} metrics: "
        f"{ci_wall:.1f} s wall, {ci_cpu:.1f} s CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
