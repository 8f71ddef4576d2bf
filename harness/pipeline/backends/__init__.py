"""Generation backends, chosen once per run: transformers in this process (`hf`, the default)
or vLLM in a worker process (`vllm`, `harness.pipeline.backends.vllm`).

A backend says what it cannot serve before any work (`check`), adds the meters it needs, loads
the variant, generates a seed's captions and names itself in the record. Everything that decides
a caption (prompt, image preprocessing, per-sample seeds, sampling settings) is shared: the
runner and the seed steps call the backend and never ask which one it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.metering.base import Meter
    from harness.metering.clock import BatchTiming
    from harness.models.load import LoadedVariant
    from harness.pipeline.executor import Executor
    from harness.pipeline.modes import Mode
    from harness.pipeline.prediction import Prediction
    from harness.records.record import BackendRef
    from harness.specs.task import TaskSpec
    from harness.specs.variant import VariantSpec

Samples = Sequence[tuple[str, Callable[[], Any]]]
NAMES = ("hf", "vllm")


class Backend(Protocol):
    name: str

    def check(self, task: TaskSpec, variant: VariantSpec, mode: Mode, executor: Executor) -> None:
        """Fail, with a message naming what is unsupported, before the data, a lock or a build."""
        ...

    def meters(self) -> list[Meter]:
        """Meters this backend adds to the run's (opened before, closed after the others)."""
        ...

    def load(
        self,
        task: TaskSpec,
        variant: VariantSpec,
        mode: Mode,
        *,
        device: str,
        batch_size: int,
        fixed_new_tokens: int | None,
        progress: bool,
    ) -> LoadedVariant: ...

    def generate(
        self,
        loaded: LoadedVariant,
        todo: Samples,
        task: TaskSpec,
        seed: int,
        batch_size: int,
        *,
        on_batch: Callable[[list[Prediction]], None],
        fixed_new_tokens: int | None,
        timings: list[BatchTiming],
    ) -> list[Prediction]: ...

    def ref(self, loaded: LoadedVariant) -> BackendRef:
        """The engine, its version and settings, for the record."""
        ...


class Transformers:
    """`generate` of transformers in this process: the reference backend."""

    name = "hf"

    def check(self, task: TaskSpec, variant: VariantSpec, mode: Mode, executor: Executor) -> None:
        return None

    def meters(self) -> list[Meter]:
        return []

    def load(
        self,
        task: TaskSpec,
        variant: VariantSpec,
        mode: Mode,
        *,
        device: str,
        batch_size: int,
        fixed_new_tokens: int | None,
        progress: bool,
    ) -> LoadedVariant:
        return mode.load(variant, device=device, progress=progress, log=lambda _: None)

    def generate(
        self,
        loaded: LoadedVariant,
        todo: Samples,
        task: TaskSpec,
        seed: int,
        batch_size: int,
        *,
        on_batch: Callable[[list[Prediction]], None],
        fixed_new_tokens: int | None,
        timings: list[BatchTiming],
    ) -> list[Prediction]:
        from harness.pipeline.generate import generate_all

        return generate_all(
            loaded.model,
            loaded.processor,
            loaded.family,
            todo,
            task.doc_to_text,
            task.generation_kwargs,
            seed,
            batch_size,
            task.preprocessing.image,
            on_batch=on_batch,
            fixed_new_tokens=fixed_new_tokens,
            timings=timings,
        )

    def ref(self, loaded: LoadedVariant) -> BackendRef:
        import transformers

        from harness.records.record import BackendRef

        return BackendRef(name="hf", version=transformers.__version__)


def backend_for(name: str) -> Backend:
    """A fresh backend object for one run (the vLLM one holds its worker's meter)."""
    if name == "hf":
        return Transformers()
    if name == "vllm":
        from harness.pipeline.backends.vllm import Vllm

        return Vllm()
    raise ValueError(f"unknown backend {name!r} (known: {', '.join(NAMES)})")
