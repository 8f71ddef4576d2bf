"""The regression gate: compare a results folder's metrics with a committed baseline.

For each (task, variant) in the baseline, each metric's mean over seeds (from the records,
`harness.records.store.find_records`; natural-length runs of real weights only) is compared with the
baseline's mean. A change in the metric's bad direction (`MetricValue.higher_is_better`) larger
than its tolerance is a regression; a (task, variant) or metric missing from the results is a
failure too. The allowed change is

    max(abs, rel * |baseline|, ci * sqrt(h_baseline² + h_current²))

where h is the half-width of the metric's 95 % bootstrap interval over images (the records'
`ci95`, averaged over seeds): with `ci` 1 a change must exceed the 95 % interval of the difference
of two independent estimates, i.e. be statistically significant, not sampling noise. That matters
for variants whose weights come out of training: a different CPU (instruction set, thread count)
sums in another order, the trained weights differ in the last bits, and sampled captions diverge;
exact equality only holds for builds made on the same machine. Tolerances are stored in the
baseline file (`default` and per-metric) and may be overridden per run.

Baseline file (JSON):
    {"format": 1,
     "tolerances": {"default": {"abs": 1e-4, "rel": 0.0, "ci": 0.0}, "<metric>": {…}},
     "results": {"<task>": {"<variant>": {"<metric>": {"mean": …, "higher_is_better": …,
                                                      "n_seeds": …, "ci95_half": …}}}}}
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records.store import find_records, write_json

BASELINE_FORMAT = 1
# The embedded twins are deterministic on one machine; across CPUs floats differ at ~1e-6.
# 1e-4 absorbs that and still catches any real change of a score in [0, 1] (CIDEr: [0, 10]).
DEFAULT_TOLERANCE = {"abs": 1e-4, "rel": 0.0, "ci": 0.0}


class BaselineError(ValueError):
    pass


@dataclass(frozen=True)
class Tolerance:
    abs: float = DEFAULT_TOLERANCE["abs"]
    rel: float = DEFAULT_TOLERANCE["rel"]
    ci: float = DEFAULT_TOLERANCE["ci"]

    def allowed(self, baseline: MetricMean, current: MetricMean | None = None) -> float:
        halves = [m.ci95_half for m in (baseline, current) if m and m.ci95_half is not None]
        noise = math.hypot(*halves) if halves else 0.0
        return max(self.abs, self.rel * abs(baseline.mean), self.ci * noise)

    def as_dict(self) -> dict[str, float]:
        return {"abs": self.abs, "rel": self.rel, "ci": self.ci}


@dataclass(frozen=True)
class MetricMean:
    mean: float
    higher_is_better: bool
    n_seeds: int
    ci95_half: float | None = None  # mean half-width of the seeds' 95 % bootstrap intervals


@dataclass(frozen=True)
class Change:
    task: str
    variant: str
    metric: str
    baseline: float | None
    current: float | None
    allowed: float
    status: str  # ok | regressed | improved | missing | new
    # The allowed change reaches the metric's worst value (its registered bounds): however far
    # this metric falls, the gate cannot fail on it.
    blind: bool = False

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def failed(self) -> bool:
        return self.status in ("regressed", "missing")


Table = dict[str, dict[str, dict[str, MetricMean]]]  # task -> variant -> metric -> mean


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """`METRIC=ABS[,REL[,CI]]` (METRIC may be `default`)."""
    name, sep, values = text.partition("=")
    parts = values.split(",")
    try:
        if not sep or not name.strip() or not 1 <= len(parts) <= 3:
            raise ValueError
        nums = [float(p) for p in parts]
        if any(n < 0 or math.isnan(n) for n in nums):
            raise ValueError
    except ValueError:
        raise BaselineError(
            f"--tolerance: expected METRIC=ABS[,REL[,CI]] with non-negative numbers, got {text!r}"
        ) from None
    nums += [0.0] * (3 - len(nums))
    return name.strip(), Tolerance(*nums)


def collect(results: Path) -> Table:
    """Mean of every metric over seeds, per (task, variant), from the records under `results`."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    halves: dict[tuple[str, str, str], list[float | None]] = defaultdict(list)
    direction: dict[tuple[str, str, str], bool] = {}
    for _, record in find_records(results):
        if record.measurements.fixed_new_tokens or record.model.random_weights:
            continue  # speed runs (forced lengths, random weights) say nothing of quality
        if record.backend.name != "hf":
            continue  # the baseline is transformers'; another backend's runs are not averaged in
        for name, mv in record.metrics.items():
            key = (record.task, record.variant, name)
            values[key].append(mv.value)
            halves[key].append(None if mv.ci95 is None else (mv.ci95[1] - mv.ci95[0]) / 2)
            direction[key] = mv.higher_is_better
    table: Table = {}
    for (task, variant, name), vals in sorted(values.items()):
        known = [h for h in halves[(task, variant, name)] if h is not None and math.isfinite(h)]
        table.setdefault(task, {}).setdefault(variant, {})[name] = MetricMean(
            mean=math.fsum(vals) / len(vals),
            higher_is_better=direction[(task, variant, name)],
            n_seeds=len(vals),
            ci95_half=math.fsum(known) / len(known) if len(known) == len(vals) else None,
        )
    return table


def load_baseline(path: Path) -> tuple[dict[str, Tolerance], Table]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BaselineError(f"{path}: cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise BaselineError(f"{path}:{err.lineno}: not JSON: {err.msg}") from None
    try:
        if data.get("format") != BASELINE_FORMAT:
            raise BaselineError(f"{path}: format must be {BASELINE_FORMAT}")
        tolerances = {
            name: Tolerance(
                float(t.get("abs", 0.0)), float(t.get("rel", 0.0)), float(t.get("ci", 0.0))
            )
            for name, t in (data.get("tolerances") or {}).items()
        }
        table: Table = {
            task: {
                variant: {
                    name: MetricMean(
                        float(m["mean"]),
                        bool(m["higher_is_better"]),
                        int(m.get("n_seeds", 0)),
                        None if m.get("ci95_half") is None else float(m["ci95_half"]),
                    )
                    for name, m in metrics.items()
                }
                for variant, metrics in variants.items()
            }
            for task, variants in data["results"].items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        if isinstance(err, BaselineError):
            raise
        raise BaselineError(f"{path}: malformed baseline ({type(err).__name__}: {err})") from None
    return tolerances, table


def baseline_json(
    tolerances: dict[str, Tolerance], table: Table, runs: dict[str, Any] | None = None
) -> dict[str, Any]:
    tol = {"default": Tolerance().as_dict()} | {n: t.as_dict() for n, t in tolerances.items()}
    # `runs`: each (task, variant)'s seeds and evaluated-ids hash, required of the results
    extra = {} if runs is None else {"runs": runs}  # last: an update's diff starts at the means
    return {
        "format": BASELINE_FORMAT,
        "tolerances": dict(sorted(tol.items(), key=lambda kv: (kv[0] != "default", kv[0]))),
        "results": {
            task: {
                variant: {
                    name: {
                        "mean": m.mean,
                        "higher_is_better": m.higher_is_better,
                        "n_seeds": m.n_seeds,
                        "ci95_half": m.ci95_half,
                    }
                    for name, m in sorted(metrics.items())
                }
                for variant, metrics in sorted(variants.items())
            }
            for task, variants in sorted(table.items())
        },
    } | extra


def write_baseline(
    path: Path, tolerances: dict[str, Tolerance], table: Table, runs: dict[str, Any] | None = None
) -> None:
    write_json(path, baseline_json(tolerances, table, runs))  # temp file + fsync + rename


def tolerance_for(tolerances: dict[str, Tolerance], metric: str) -> Tolerance:
    return tolerances.get(metric) or tolerances.get("default") or Tolerance()


def compare(base: Table, current: Table, tolerances: dict[str, Tolerance]) -> list[Change]:
    changes: list[Change] = []
    for task, variants in sorted(base.items()):
        for variant, metrics in sorted(variants.items()):
            now = current.get(task, {}).get(variant)
            for name, b in sorted(metrics.items()):
                c = None if now is None else now.get(name)
                allowed = tolerance_for(tolerances, name).allowed(b, c)
                if c is None:
                    changes.append(Change(task, variant, name, b.mean, None, allowed, "missing"))
                    continue
                delta = c.mean - b.mean
                worse = -delta if b.higher_is_better else delta
                if math.isnan(b.mean) and math.isnan(c.mean):
                    status = "ok"
                elif math.isnan(b.mean) or math.isnan(c.mean) or worse > allowed:
                    status = "regressed"
                elif -worse > allowed:
                    status = "improved"
                else:
                    status = "ok"
                blind = _blind(name, b, allowed)
                changes.append(Change(task, variant, name, b.mean, c.mean, allowed, status, blind))
    for task, variants in sorted(current.items()):
        for variant, metrics in sorted(variants.items()):
            known = base.get(task, {}).get(variant, {})
            for name, c in sorted(metrics.items()):
                if name not in known:
                    changes.append(Change(task, variant, name, None, c.mean, 0.0, "new"))
    return changes


def _blind(metric: str, baseline: MetricMean, allowed: float) -> bool:
    from harness.metrics import METRICS

    if metric not in METRICS or math.isnan(baseline.mean):
        return False
    lo, hi = METRICS.get(metric).bounds
    return (
        baseline.mean - allowed <= lo
        if baseline.higher_is_better
        else baseline.mean + allowed >= hi
    )


def blind_summary(changes: list[Change]) -> str | None:
    """One line naming the metrics the gate cannot fail on, or None."""
    blind = [c for c in changes if c.blind]
    if not blind:
        return None
    names = sorted({c.metric for c in blind})
    return (
        f"note: {len(blind)} of {len(changes)} rows cannot fail: their allowed change reaches "
        f"the metric's worst value ({', '.join(names)}); a tighter tolerance for them: "
        "--tolerance METRIC=ABS"
    )


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.6f}" if signed else f"{x:.6f}"


def format_table(changes: list[Change], *, all_rows: bool = False) -> str:
    """The changes (every row when `all_rows`; otherwise those not `ok`), as aligned text."""
    rows = [c for c in changes if all_rows or c.status != "ok"]
    head = ("task", "variant", "metric", "baseline", "current", "delta", "allowed", "status")
    body = [
        (
            c.task,
            c.variant,
            c.metric,
            _num(c.baseline),
            _num(c.current),
            _num(c.delta, True),
            _num(c.allowed),
            c.status.upper() if c.failed else c.status,
        )
        for c in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *body]
    ]
    return "\n".join(lines)
