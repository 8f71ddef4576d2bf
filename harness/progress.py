"""Progress output that suits where it goes: bars on a terminal, finished steps in a log.

A progress bar redraws itself with carriage returns; written to a file or a CI log, every redraw
stays, and the log fills with partial lines. Bars are drawn only when stderr is a terminal;
elsewhere the callers' one line per finished step (seed, epoch, variant) is the progress.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


def log_line(msg: str) -> None:
    """One finished step on stderr, flushed: the default log of runs, builds and sweeps."""
    print(msg, file=sys.stderr, flush=True)


def bars_wanted(progress: bool) -> bool:
    """Whether to draw progress bars: asked for, and stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return progress and isatty is not None and isatty()


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class Countdown:
    """`variant k of N` with an estimate of the time left: the mean time of the items that did
    work so far (reused items take no time and do not count) times the items left."""

    total: int
    start: float = field(default_factory=time.perf_counter)
    done: int = 0
    worked: int = 0
    work_s: float = 0.0

    def begin(self, name: str) -> str:
        return f"variant {self.done + 1} of {self.total}: {name}"

    def finish(self, seconds: float, did_work: bool) -> str:
        self.done += 1
        if did_work:
            self.worked += 1
            self.work_s += seconds
        left = self.total - self.done
        elapsed = fmt_duration(time.perf_counter() - self.start)
        if left == 0:
            return f"finished {self.done} of {self.total} variants in {elapsed}"
        if self.worked == 0:
            return f"{self.done} of {self.total} variants done ({elapsed}); {left} left"
        eta = fmt_duration(self.work_s / self.worked * left)
        return f"{self.done} of {self.total} variants done ({elapsed}); about {eta} left"
