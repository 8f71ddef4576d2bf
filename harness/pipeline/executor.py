"""How a seed's work is spread: chosen once per command, then the same steps run either way.

`SingleProcess` is the default. `harness.scale.distributed.DataParallel` splits one seed's images
over the processes of `torchrun` / `accelerate launch` and merges them on rank 0. The runner and
the seed steps call the executor at the few points where the two differ (reuse decisions, locks,
builds, which images to generate, merging, handing the record on), and never ask which it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.data.dataset import EvalSet
from harness.metering.clock import BatchTiming
from harness.pipeline.checkpoint import PARTIAL_FILE, read_checkpoint, run_lock
from harness.pipeline.prediction import Prediction
from harness.records.record import PhaseFigures, RankFigures, RunRecord

T = TypeVar("T")
Todo = list[tuple[str, Callable[[], Any]]]  # (sample id, image loader) still to generate


@dataclass
class Generated:
    """One seed's generation as the record sees it: predictions resumed from checkpoints, fresh
    ones, the fresh batches' timings and the generate phase's figures (and, from a data-parallel
    group, each rank's own)."""

    done: dict[str, Prediction]
    fresh: list[Prediction]
    timings: list[BatchTiming]
    figures: PhaseFigures
    ranks: tuple[RankFigures, ...] = ()


class Executor(Protocol):
    @property
    def world_size(self) -> int:
        """How many processes share each seed's images."""
        ...

    @property
    def is_main(self) -> bool:
        """Whether this process speaks for the run: logs, progress bars, records."""
        ...

    @property
    def checkpoint_name(self) -> str:
        """This process's checkpoint file in a run folder."""
        ...

    def cuda_devices(self) -> list[int] | None:
        """The CUDA devices this process meters (None: every visible one)."""
        ...

    def decide(self, value: T) -> T:
        """The main process's `value` (reuse decisions) on every process."""
        ...

    def lock(self, out_dir: Path, force: bool) -> AbstractContextManager[None]:
        """Hold the run folder for this run; `force` drops its checkpoints first."""
        ...

    def build(self, build: Callable[[], T]) -> T:
        """Build the variant once, so no two processes write one cache folder."""
        ...

    def split(
        self, out_dir: Path, key: Mapping[str, Any], evalset: EvalSet
    ) -> tuple[dict[str, Prediction], Todo]:
        """(predictions resumed from checkpoints, this process's share of the rest)."""
        ...

    def merge(self, generated: Generated) -> Generated | None:
        """Every process's generation on the main process; None on the others."""
        ...

    def finish(self, record: RunRecord | None, out_dir: Path) -> RunRecord:
        """The finished record on every process, checkpoints removed."""
        ...


class SingleProcess:
    """One process does everything: the default."""

    world_size = 1
    is_main = True
    checkpoint_name = PARTIAL_FILE

    def cuda_devices(self) -> list[int] | None:
        return None

    def decide(self, value: T) -> T:
        return value

    @contextmanager
    def lock(self, out_dir: Path, force: bool) -> Iterator[None]:
        with run_lock(out_dir):
            if force:
                (out_dir / PARTIAL_FILE).unlink(missing_ok=True)
            yield

    def build(self, build: Callable[[], T]) -> T:
        return build()

    def split(
        self, out_dir: Path, key: Mapping[str, Any], evalset: EvalSet
    ) -> tuple[dict[str, Prediction], Todo]:
        wanted = set(evalset.ids)
        done = {p.id: p for p in read_checkpoint(out_dir / PARTIAL_FILE, key) if p.id in wanted}
        return done, [(i, load) for i, load in evalset.items() if i not in done]

    def merge(self, generated: Generated) -> Generated | None:
        return generated

    def finish(self, record: RunRecord | None, out_dir: Path) -> RunRecord:
        assert record is not None
        (out_dir / PARTIAL_FILE).unlink(missing_ok=True)
        return record


def predictions_in_order(generated: Generated, ids: Sequence[str]) -> list[Prediction]:
    by_id = generated.done | {p.id: p for p in generated.fresh}
    return [by_id[i] for i in ids]
