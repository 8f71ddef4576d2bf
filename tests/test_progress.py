"""Output of long work: no bar redraws in a log, `variant k of N` with an estimate of the time
left, and a page while it runs and on an interruption, so that a stopped benchmark leaves one."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from fixtures.board_records import write_board

from harness.cli import main
from harness.progress import Countdown, bars_wanted, fmt_duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.auto import tqdm

    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert not bars_wanted(True)
    for _ in tqdm(range(50), disable=not bars_wanted(True), file=sys.stderr):
        pass
    assert log.getvalue() == ""  # not one carriage return in a log
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert bars_wanted(True) and not bars_wanted(False)


def test_countdown_estimates_from_the_variants_that_did_work() -> None:
    clock = Countdown(4, start=0.0)
    assert clock.begin("a") == "variant 1 of 4: a"
    assert clock.finish(0.1, did_work=False).endswith("3 left")  # reused: no estimate yet
    assert clock.begin("b") == "variant 2 of 4: b"
    assert clock.finish(90.0, did_work=True).endswith("about 3:00 left")  # 2 left × 90 s
    assert clock.finish(30.0, did_work=True).endswith("about 1:00 left")  # 1 left × 60 s
    assert clock.finish(60.0, did_work=True).startswith("finished 4 of 4 variants in ")
    assert fmt_duration(3725) == "1:02:05"


def test_bench_renders_as_it_goes_and_an_interruption_leaves_a_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.scale import pool
    from harness.scale.sweep import RunResult

    results, site = tmp_path / "results", tmp_path / "site"
    done: list[str] = []

    def fake_pool(task: Any, variants: Any, location: str, options: Any, **kw: Any) -> Any:
        for variant in variants:
            if len(done) == 2:
                raise KeyboardInterrupt  # Ctrl-C during the third variant
            records = write_board(Path(location), [variant.id])
            done.append(variant.id)
            kw["on_variant"](
                variant.id,
                [RunResult(r.task, r.variant, r.seed, location, False) for r in records],
            )
        raise AssertionError("not reached")

    monkeypatch.setattr(pool, "sweep_pool", fake_pool)
    code = main(["bench", "--results", str(results), "--site", str(site), "--no-progress"])
    assert code == 130
    html = (site / "index.html").read_text(encoding="utf-8")
    for variant in done:
        assert f'data-variant="{variant}"' in html
    err = capsys.readouterr().err
    assert "1 of 10 variants done" in err and "2 of 10 variants done" in err and "left" in err
    assert "\r" not in err
