"""Data-parallel runs: one (task, variant, seed) split over the processes of `torchrun` or
`accelerate launch`.

The launcher puts WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous) in the environment;
`DataParallel.join` joins the process group (gloo on the CPU, NCCL on GPUs, each rank on
`cuda:LOCAL_RANK`) and is the runner's executor (`harness.pipeline.executor`). Per seed:

- every rank reads the checkpoints it can see; the ids done anywhere are agreed on, and the rest
  is dealt out strided by position (`shard`): each rank generates its share into its own
  checkpoint, `predictions.partial.shard-R-of-W.jsonl`. Per-sample seeding (`SeededSampler`
  in `harness.pipeline.generate`) makes a caption independent of which rank and batch made it,
  so the merged predictions equal a single process's;
- rank 0 gathers every rank's predictions and meter figures over the process group (no shared
  file system needed), scores, writes the record and hands it to the others;
- the record's generation figures combine the ranks' (`combine_phases`): wall time of the slowest
  rank, energy summed, peak memory the largest, and each rank's own figures in
  `measurements.ranks`.

Reuse decisions, run locks and builds happen on rank 0 first (the others follow its decision),
so a shared results folder or build cache is never written by two ranks at once.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.data.dataset import EvalSet
from harness.metering.clock import BatchTiming
from harness.pipeline.checkpoint import SHARD_GLOB, read_checkpoint, remove_checkpoints, run_lock
from harness.pipeline.executor import Generated, Todo
from harness.pipeline.prediction import Prediction
from harness.records.record import PhaseFigures, RankFigures, RunRecord

T = TypeVar("T")

# Rank 0 may build a technique chain (hours for a real model) while the others wait at a barrier.
TIMEOUT = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Launch:
    """What the launcher put in the environment."""

    world_size: int
    rank: int
    local_rank: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Launch | None:
        """The launch, or None outside a launcher or with a single process."""
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise RuntimeError(f"malformed WORLD_SIZE/RANK/LOCAL_RANK: {err}") from None
        return cls(world, rank, local) if world > 1 else None


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank `rank`'s share: every `world_size`-th item from position `rank` (strided, so each
    rank gets images from the whole split and the shares differ by one at most)."""
    return list(items[rank::world_size])


def shard_file(rank: int, world_size: int) -> str:
    return f"predictions.partial.shard-{rank}-of-{world_size}.jsonl"


def _known(values: Sequence[float | int | None]) -> list[float | int]:
    return [v for v in values if v is not None]


def combine_phases(per_rank: Sequence[PhaseFigures]) -> PhaseFigures:
    """One phase run by several ranks at once: wall time of the slowest rank, energy summed
    (unknown if any rank's is), peaks the largest, kernel-busy share the mean."""

    def peak(name: str) -> float | None:
        known = _known([getattr(f, name) for f in per_rank])
        return max(known) if known else None

    def total(name: str) -> float | None:
        values = [getattr(f, name) for f in per_rank]
        return None if any(v is None for v in values) else float(f"{sum(values):.4g}")

    busy = _known([f.gpu_kernel_busy_pct for f in per_rank])
    samples = _known([f.gpu_util_samples for f in per_rank])
    return PhaseFigures(
        wall_s=max(f.wall_s for f in per_rank),
        peak_rss_mib=peak("peak_rss_mib"),
        peak_gpu_allocated_mib=peak("peak_gpu_allocated_mib"),
        peak_gpu_reserved_mib=peak("peak_gpu_reserved_mib"),
        peak_gpu_process_mib=peak("peak_gpu_process_mib"),
        peak_gpu_device_mib=peak("peak_gpu_device_mib"),
        gpu_kernel_busy_pct=round(sum(busy) / len(busy), 1) if busy else None,
        gpu_util_samples=int(sum(samples)) if samples else None,
        gpu_energy_j=total("gpu_energy_j"),
        cpu_energy_j=total("cpu_energy_j"),
        ram_energy_j=total("ram_energy_j"),
    )


@dataclass
class RankShare:
    """What one rank sends rank 0 after generating."""

    rank: RankFigures
    done: list[Prediction]  # resumed from the checkpoints this rank could see
    fresh: list[Prediction]
    timings: list[BatchTiming]


class Group:
    """This process's place in the data-parallel group, and the collectives over it.

    Objects travel over gloo even when the model runs on NCCL: pickled Python objects need no
    GPU copy, and gloo's timeout applies while rank 0 builds or scores.
    """

    def __init__(self, launch: Launch, device: str, objects: Any = None) -> None:
        self.launch = launch
        self.device = device  # "cpu" or "cuda" (this rank's cuda:LOCAL_RANK is current)
        self._objects = objects  # the gloo group for objects; None: the default group

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.launch.rank == 0

    @property
    def device_name(self) -> str:
        return f"cuda:{self.launch.local_rank}" if self.device == "cuda" else "cpu"

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(group=self._objects)

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self._objects)
        return box[0]  # type: ignore[return-value]

    def all_gather(self, obj: T) -> list[T]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._objects)
        return out

    def gather(self, obj: T) -> list[T] | None:
        """Every rank's `obj` on rank 0 (in rank order); None elsewhere."""
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self._objects)
        return out

    def on_main_first(self, action: Callable[[], T]) -> T:
        """Run `action` on rank 0 and share its result, or its error, with every rank."""
        result: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                result = (True, action())
            except Exception as err:  # re-raised on every rank, so none waits forever
                result = (False, err)
        ok, value = self.broadcast(result)
        if not ok:
            raise value
        return value


class DataParallel:
    """The executor of a data-parallel run (`harness.pipeline.executor.Executor`): one seed's
    images dealt out over the group's ranks, merged and recorded on rank 0."""

    def __init__(self, group: Group) -> None:
        self.group = group

    @classmethod
    def join(cls, device: str = "auto") -> DataParallel | None:
        """The executor of this launch, or None when not launched or a single process."""
        group = join(device)
        return None if group is None else cls(group)

    @property
    def world_size(self) -> int:
        return self.group.world_size

    @property
    def is_main(self) -> bool:
        return self.group.is_main

    @property
    def checkpoint_name(self) -> str:
        return shard_file(self.group.rank, self.group.world_size)

    def cuda_devices(self) -> list[int] | None:
        """Only this rank's own device, so that the ranks' figures add up."""
        if self.group.device != "cuda":
            return None
        import torch

        return [torch.cuda.current_device()]

    def decide(self, value: T) -> T:
        return self.group.broadcast(value)

    @contextmanager
    def lock(self, out_dir: Path, force: bool) -> Iterator[None]:
        """Rank 0 holds the run folder's lock for the group; RunLocked on every rank if taken.
        `force`: every rank then drops the checkpoints it sees."""
        with ExitStack() as stack:
            self.group.on_main_first(lambda: stack.enter_context(run_lock(out_dir)))
            if force:
                remove_checkpoints(out_dir)
            yield
            # No rank still writes a checkpoint when the lock goes. Not on an error: the failing
            # rank exits, and the launcher stops the others.
            self.group.barrier()

    def build(self, build: Callable[[], T]) -> T:
        """Build on rank 0, then on each node's first rank (a cache that is not shared), then
        load from the cache everywhere: no two ranks build into one cache folder at once."""
        group = self.group
        built = group.on_main_first(build)
        if not group.is_main and group.launch.local_rank == 0:
            built = build()
        group.barrier()
        if group.launch.local_rank != 0:
            built = build()
        return built

    def split(
        self, out_dir: Path, key: Mapping[str, Any], evalset: EvalSet
    ) -> tuple[dict[str, Prediction], Todo]:
        """Resume from every checkpoint this rank sees; the ids done anywhere are agreed on
        first, so every rank deals out the same list."""
        wanted = set(evalset.ids)
        done: dict[str, Prediction] = {}
        for path in sorted(out_dir.glob(SHARD_GLOB)):
            done |= {p.id: p for p in read_checkpoint(path, key) if p.id in wanted}
        everywhere = set().union(*self.group.all_gather(sorted(done)))
        todo = [(i, load) for i, load in evalset.items() if i not in everywhere]
        return done, shard(todo, self.group.rank, self.group.world_size)

    def merge(self, generated: Generated) -> Generated | None:
        """On rank 0: every rank's resumed and fresh predictions, batch timings and combined
        generation figures; None on the other ranks."""
        group = self.group
        mine = RankFigures(
            rank=group.rank,
            host=socket.gethostname(),
            device=group.device_name,
            n_images=len(generated.fresh),
            generate=generated.figures,
        )
        share = RankShare(mine, list(generated.done.values()), generated.fresh, generated.timings)
        shares = group.gather(share)
        if shares is None:
            return None
        ranks = tuple(s.rank for s in shares)
        done = {p.id: p for s in shares for p in s.done}
        return Generated(
            done=done,
            fresh=[p for s in shares for p in s.fresh if p.id not in done],
            timings=[t for s in shares for t in s.timings],
            figures=combine_phases([r.generate for r in ranks]),
            ranks=ranks,
        )

    def finish(self, record: RunRecord | None, out_dir: Path) -> RunRecord:
        """Rank 0's finished record on every rank; then every rank drops its checkpoints."""
        record = self.group.broadcast(record)
        assert record is not None
        remove_checkpoints(out_dir)
        return record


_CURRENT: Group | None = None


def join(device: str = "auto") -> Group | None:
    """Join the launcher's process group (once; left at exit); None when not launched or a
    single process, so `rocobench run` works the same with and without a launcher."""
    global _CURRENT
    launch = Launch.from_env()
    if launch is None or _CURRENT is not None:
        return _CURRENT
    import atexit

    import torch
    import torch.distributed as dist

    from harness.models.load import resolve_device

    device = resolve_device(device)
    if device == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {launch.local_rank} but {torch.cuda.device_count()} CUDA device(s): "
                "start at most one process per GPU (--nproc-per-node)"
            )
        torch.cuda.set_device(launch.local_rank)  # "cuda" now means cuda:LOCAL_RANK
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT)
    objects = dist.new_group(backend="gloo", timeout=TIMEOUT) if backend != "gloo" else None
    _CURRENT = Group(launch, device, objects)
    atexit.register(leave)
    return _CURRENT


def leave() -> None:
    global _CURRENT
    if _CURRENT is None:
        return
    _CURRENT = None
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
