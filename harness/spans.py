"""Wall-time spans for `rocobench bench --profile` and benchmarks/bench_breakdown.py.

A span is a named, timed stretch of work (a build step, a training epoch, a model load, one
metric). Spans cost nothing unless `ROCOBENCH_PROFILE` names a file: then each finished span is
appended to it as one JSON line, so worker processes started by the bench (which inherit the
environment) add theirs to the same file. One `write` per line on a file opened with O_APPEND
keeps lines whole when several processes append at once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_ENV = "ROCOBENCH_PROFILE"
_WITHIN: ContextVar[str] = ContextVar("rocobench_span_within", default="")


@contextmanager
def within(label: str) -> Iterator[None]:
    """Prefix the detail of every span opened inside with `label` (e.g. the variant built)."""
    token = _WITHIN.set(label)
    try:
        yield
    finally:
        _WITHIN.reset(token)


@contextmanager
def span(phase: str, detail: str = "") -> Iterator[None]:
    """Time the enclosed work as `phase` (a category: "build", "train epoch", "generate", …)
    with `detail` (which one: the variant, the epoch, the metric)."""
    path = os.environ.get(PROFILE_ENV)
    if not path:
        yield
        return
    detail = " ".join(x for x in (_WITHIN.get(), detail) if x)
    start, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        record(phase, detail, start, time.perf_counter() - t0, time.process_time() - c0, path)


def record(
    phase: str,
    detail: str,
    start: float,
    wall_s: float,
    cpu_s: float | None = None,
    path: str | None = None,
) -> None:
    """Append one finished span (no-op when profiling is off). `cpu_s`: the process's CPU time
    over the span, all its threads together — less inflated than wall time on a busy machine."""
    path = path or os.environ.get(PROFILE_ENV)
    if not path:
        return
    line = json.dumps(
        {
            "phase": phase,
            "detail": detail,
            "start": start,
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "pid": os.getpid(),
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Span:
    phase: str
    detail: str
    start: float
    wall_s: float
    pid: int
    cpu_s: float | None = None


def read_spans(path: Path) -> list[Span]:
    spans = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            data: dict[str, Any] = json.loads(line)
            spans.append(Span(**data))
    return spans


@dataclass(frozen=True)
class Row:
    phase: str
    detail: str
    count: int
    wall_s: float
    cpu_s: float | None = None


def summarise(spans: Iterable[Span], *, details: Iterable[str] = ("build",)) -> list[Row]:
    """One row per phase (count, summed wall time), in order of first appearance, followed by
    the phases named in `details` broken down per detail. Nested phases overlap their parents
    and parallel workers overlap each other: rows are not meant to add up to the total."""
    spans = list(spans)
    by_phase: dict[str, list[Span]] = {}
    for s in spans:
        by_phase.setdefault(s.phase, []).append(s)
    rows = [_row(p, "", ss) for p, ss in by_phase.items()]
    for phase in details:
        per: dict[str, list[Span]] = {}
        for s in by_phase.get(phase, []):
            per.setdefault(s.detail, []).append(s)
        rows += [_row(phase, d, ss) for d, ss in per.items()]
    return rows


def _row(phase: str, detail: str, spans: list[Span]) -> Row:
    cpu = [s.cpu_s for s in spans if s.cpu_s is not None]
    return Row(phase, detail, len(spans), sum(s.wall_s for s in spans), sum(cpu) if cpu else None)


def busy_s(spans: Iterable[Span], phase: str) -> float:
    """Wall time during which at least one `phase` span was running (parallel spans merged)."""
    intervals = sorted((s.start, s.start + s.wall_s) for s in spans if s.phase == phase)
    total, end = 0.0, float("-inf")
    for a, b in intervals:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def markdown_table(
    rows: Iterable[Row], total_s: float | None = None, total_cpu_s: float | None = None
) -> str:
    lines = ["| phase | which | n | wall s | CPU s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        cpu = "" if r.cpu_s is None else f"{r.cpu_s:.1f}"
        lines.append(f"| {r.phase} | {r.detail or 'all'} | {r.count} | {r.wall_s:.1f} | {cpu} |")
    if total_s is not None:
        cpu = "" if total_cpu_s is None else f"**{total_cpu_s:.1f}**"
        lines.append(f"| **total** | wall clock | 1 | **{total_s:.1f}** | {cpu} |")
    return "\n".join(lines)
