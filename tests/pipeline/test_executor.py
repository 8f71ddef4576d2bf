"""The single-process executor: resume from its checkpoint, generate the rest, in order."""

from __future__ import annotations

from pathlib import Path

from harness.data.dataset import EvalSet
from harness.pipeline.checkpoint import PARTIAL_FILE, append_batch, open_checkpoint
from harness.pipeline.executor import Generated, SingleProcess, predictions_in_order
from harness.pipeline.prediction import Prediction


def _evalset(ids: list[str]) -> EvalSet:
    rows = [{"image": None} for _ in ids]
    return EvalSet("x", None, "r", "test", ids, ["ref"] * len(ids), rows, "image")


def test_split_resumes_what_the_checkpoint_holds(tmp_path: Path) -> None:
    evalset = _evalset(["a", "b", "c"])
    key = {"k": 1}
    done = [Prediction("b", "B", 2, 11)]
    with open_checkpoint(tmp_path / PARTIAL_FILE, key, done, str.strip) as fh:
        append_batch(fh, [Prediction("z", "not in the set", 1, 3)], str.strip)
    resumed, todo = SingleProcess().split(tmp_path, key, evalset)
    assert list(resumed) == ["b"] and resumed["b"].text == "B"
    assert [i for i, _ in todo] == ["a", "c"]
    # another run's checkpoint (another key) is not resumed
    assert SingleProcess().split(tmp_path, {"k": 2}, evalset)[0] == {}


def test_predictions_come_back_in_evaluation_order() -> None:
    figures = None
    generated = Generated(
        done={"b": Prediction("b", "B", 1, 0)},
        fresh=[Prediction("c", "C", 1, 0), Prediction("a", "A", 1, 0)],
        timings=[],
        figures=figures,  # type: ignore[arg-type]
    )
    assert [p.text for p in predictions_in_order(generated, ["a", "b", "c"])] == ["A", "B", "C"]
