"""The vLLM backend: generation in a worker process that runs in vLLM's own environment.

vLLM pins its own torch and transformers, so it cannot share this process. The harness keeps
everything that decides what a caption is — the chat template, the image preprocessing, the
per-sample seeds, the end-of-sequence ids, decoding the tokens to text — and hands the worker
only prompts, images (lossless PNG files of the preprocessed pixels) and sampling settings
(`vllm_worker.py` documents the protocol). Captions therefore differ from the transformers
backend's only where the engines differ: greedy tokens match on the twins; sampled tokens are
reproducible within vLLM (one seed per request) but are not expected to match transformers'.

Fails before any work, with a message naming the problem, on what vLLM cannot serve here:
Mllama (gone from vLLM), bitsandbytes 4-bit and pruned layouts, beams and n-gram blocking, and
attention heads narrower than the CPU kernels' 32.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.metering.clock import BatchTiming
from harness.models.inputs import preprocess_image
from harness.models.load import LoadedVariant
from harness.pipeline.backends.vllm_process import (
    DEFAULT_PYTHON,
    PYTHON_ENV,
    VllmError,
    VllmWorker,
    WorkerMemory,
    available,
    vllm_python,
)
from harness.pipeline.prediction import Prediction, batches, sample_seed
from harness.specs.task import GenerationKwargs, ImagePreprocessing

__all__ = [
    "DEFAULT_PYTHON",
    "PYTHON_ENV",
    "VllmError",
    "VllmLoaded",
    "VllmWorker",
    "WorkerMemory",
    "available",
    "check_supported",
    "engine_args",
    "generate_all",
    "load_vllm",
    "preflight",
    "sampling_params",
]
SUPPORTED_FAMILIES = ("qwen2_vl", "llava")
CPU_HEAD_SIZES = "32, 64, 80 or more"  # what vLLM's CPU attention kernels take
# A QLoRA adapter was trained against its NF4 base; serving it over full-precision weights would
# be another model, and vLLM (0.32) has no bitsandbytes quantization to load that base with.
NO_4BIT = (
    "are not served by this backend (vLLM has no bitsandbytes quantization, and a QLoRA adapter "
    "belongs to its 4-bit base): use --backend hf"
)
PRUNED = "a pruned per-layer head layout cannot be expressed in a stock config that vLLM loads"

# ------------------------------------------------------------------------ what vLLM can serve


def check_supported(
    variant_id: str,
    config: Any,
    family_name: str,
    *,
    quantized: bool,
    pruned: bool,
    adapter: bool,
    device: str,
    gen: GenerationKwargs,
) -> None:
    """Raise VllmError for anything this backend would not run faithfully; before any work."""
    if family_name == "mllama":
        raise VllmError(
            f"{variant_id}: Llama-3.2-Vision (Mllama) is not served by vLLM (removed after "
            "v0.10.2 with its encoder-decoder path): use --backend hf"
        )
    if family_name not in SUPPORTED_FAMILIES:
        raise VllmError(f"{variant_id}: family {family_name} has no vLLM support here")
    if pruned:
        raise VllmError(f"{variant_id}: {PRUNED}: use --backend hf")
    if quantized:
        raise VllmError(f"{variant_id}: bitsandbytes 4-bit weights {NO_4BIT}")
    if adapter:
        raise VllmError(
            f"{variant_id}: PEFT adapters are not passed to vLLM's LoRA yet: use --backend hf"
        )
    if gen.no_repeat_ngram_size:
        raise VllmError(f"{variant_id}: vLLM has no no_repeat_ngram_size: use --backend hf")
    if device == "cpu":
        text = config.get_text_config()
        head = getattr(text, "head_dim", None) or (text.hidden_size // text.num_attention_heads)
        if head < 32:
            raise VllmError(
                f"{variant_id}: attention head size {head}; vLLM's CPU attention takes "
                f"{CPU_HEAD_SIZES} (the twins have 32): use --backend hf"
            )


def preflight(spec: Any, gen: GenerationKwargs) -> None:
    """What can be told from the manifest alone, before the data, the lock or any build: the
    environment, the family of a twin (Mllama), the techniques, the generation settings."""
    vllm_python()
    if spec.base.twin == "mllama":
        raise VllmError(
            f"{spec.id}: Llama-3.2-Vision (Mllama) is not served by vLLM (removed after "
            "v0.10.2 with its encoder-decoder path): use --backend hf"
        )
    kinds = {t.kind for t in spec.techniques}
    if "prune" in kinds:  # first: pruning comes last in a chain, after any adapter is merged
        raise VllmError(f"{spec.id}: {PRUNED}: use --backend hf")
    if four_bit := sorted(kinds & {"quantize", "qlora"}):
        raise VllmError(f"{spec.id}: bitsandbytes 4-bit weights ({', '.join(four_bit)}) {NO_4BIT}")
    if gen.no_repeat_ngram_size:
        raise VllmError(f"{spec.id}: vLLM has no no_repeat_ngram_size: use --backend hf")


# ----------------------------------------------------------------------------- the settings


def engine_args(
    *,
    dtype: str,
    device: str,
    batch_size: int,
    max_new_tokens: int,
    seed: int,
    mm_processor_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """vLLM engine arguments of a run; they are recorded with it."""
    args: dict[str, Any] = {
        "dtype": dtype,
        "seed": seed,  # engine default; every request carries its own seed
        "max_num_seqs": batch_size,  # one batch in flight, as the transformers backend
        "max_model_len": 1024 + max_new_tokens,  # prompt with image tokens, plus the caption
        "limit_mm_per_prompt": {"image": 1},
        "generation_config": "vllm",  # nothing from the checkpoint's generation_config.json
        "enforce_eager": device == "cpu",  # graph capture and compilation cost more than they
        # save on twins and CPUs
    }
    if device == "cpu":
        # A step that prefills only part of a prompt (chunked prefill: LLaVA's 16 prompts of ~280
        # tokens exceed the CPU default of 4,096) makes vLLM rewind that request's generator,
        # which a CPU generator cannot do ("CPU Generator does not use offset"): a budget that
        # holds every prompt of a batch whole leaves no partial prefill.
        args["max_num_batched_tokens"] = batch_size * args["max_model_len"]
    if mm_processor_kwargs:
        args["mm_processor_kwargs"] = dict(mm_processor_kwargs)
    return args


def sampling_params(
    gen: GenerationKwargs, eos: Sequence[int], fixed_new_tokens: int | None
) -> dict[str, Any]:
    """SamplingParams fields from the task: every one pinned, as the transformers backend does."""
    return {
        "n": 1,
        "temperature": gen.temperature if gen.do_sample else 0.0,
        "top_p": gen.top_p,
        "top_k": gen.top_k,  # 0: no top-k filtering
        "min_p": 0.0,
        "repetition_penalty": gen.repetition_penalty,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": fixed_new_tokens or gen.max_new_tokens,
        "min_tokens": fixed_new_tokens or gen.min_new_tokens,
        "stop_token_ids": list(eos),
        "ignore_eos": bool(fixed_new_tokens),
        "skip_special_tokens": True,
        "detokenize": False,  # the harness decodes with the checkpoint's own tokenizer
    }


def mm_processor_kwargs(family: Any, size: tuple[int, int]) -> dict[str, Any]:
    """The harness's processor options for the task's image size, as vLLM takes them."""
    kwargs = family.processor_kwargs(tuple(size))
    return dict(kwargs.get("images_kwargs", {}))


# ---------------------------------------------------------------------------- generation


@dataclass
class VllmLoaded(LoadedVariant):
    """A variant served by a vLLM worker: `model` is None, the processor is the checkpoint's."""

    worker: VllmWorker | None = None
    eos: list[int] = field(default_factory=list)
    folder: str = ""

    @property
    def n_parameters(self) -> int:
        return _weights(self.folder)[0]

    @property
    def size_bytes(self) -> int:
        return _weights(self.folder)[1]

    @property
    def device_type(self) -> str:
        assert self.worker is not None
        return self.worker.info.device

    @property
    def device_label(self) -> str:
        assert self.worker is not None
        return f"{self.worker.info.device} (vLLM {self.worker.info.version})"

    @property
    def worker_pid(self) -> int:
        assert self.worker is not None
        return self.worker.info.pid

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


def _weights(folder: str) -> tuple[int, int]:
    """(parameters, bytes) of the safetensors weights in `folder`, from their headers."""
    from safetensors import safe_open

    n = size = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not iterable
                part = fh.get_slice(key)
                count = 1
                for dim in part.get_shape():
                    count *= dim
                n += count
                size += count * _DTYPE_BYTES.get(part.get_dtype(), 4)
    return n, size


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}


def generate_all(
    loaded: VllmLoaded,
    samples: Sequence[tuple[str, Callable[[], Any]]],
    prompt: str,
    gen: GenerationKwargs,
    run_seed: int,
    batch_size: int,
    image_spec: ImagePreprocessing,
    on_batch: Callable[[list[Prediction]], None] | None = None,
    *,
    fixed_new_tokens: int | None = None,
    timings: list[BatchTiming] | None = None,
) -> list[Prediction]:
    """`harness.pipeline.generate.generate_all` through the worker: same seeds, prompts, pixels."""
    from harness.models.inputs import build_prompt

    assert loaded.worker is not None
    text, add_special = build_prompt(loaded.processor, prompt)
    params = sampling_params(gen, loaded.eos, fixed_new_tokens)
    eos = set(loaded.eos)
    out: list[Prediction] = []
    with tempfile.TemporaryDirectory(prefix="rocobench-vllm-") as tmp:
        for batch in batches(samples, batch_size):
            start = time.perf_counter()
            requests: list[dict[str, Any]] = []
            failed: dict[str, str] = {}
            for n, (sample_id, load) in enumerate(batch):
                try:
                    image = preprocess_image(load(), image_spec)
                except Exception as err:  # a corrupt or missing image: that sample only
                    failed[sample_id] = f"{type(err).__name__}: {err}".splitlines()[0][:300]
                    continue
                path = Path(tmp) / f"{n}.png"
                image.save(path, format="PNG")  # lossless: the pixels the HF backend sees
                requests.append(
                    {
                        "id": sample_id,
                        "prompt": text,
                        "add_special_tokens": add_special,
                        "image": str(path),
                        "seed": sample_seed(run_seed, sample_id),
                    }
                )
            made: dict[str, Prediction] = {}
            if requests:
                sent = time.perf_counter()
                reply = loaded.worker.request(
                    {"op": "generate", "requests": requests, "sampling": params}
                )
                generated = time.perf_counter()
                for req, row in zip(requests, reply["outputs"], strict=True):
                    made[req["id"]] = _prediction(loaded, req, row, eos)
                if timings is not None:
                    timings.append(_timing(reply, start, sent, generated, made))
            done = [
                made[i] if i in made else Prediction(i, "", 0, sample_seed(run_seed, i), failed[i])
                for i, _ in batch
            ]
            out.extend(done)
            if on_batch is not None:
                on_batch(done)
    return out


def _prediction(
    loaded: VllmLoaded, req: Mapping[str, Any], row: Mapping[str, Any], eos: set[int]
) -> Prediction:
    tokens = list(row["token_ids"])
    end = next((i for i, t in enumerate(tokens) if t in eos), None)
    if end is not None:
        body, n = tokens[:end], end + 1
    else:  # stopped on an end token vLLM did not list in the output
        body, n = tokens, len(tokens) + (1 if row.get("finish_reason") == "stop" else 0)
    return Prediction(
        id=req["id"],
        text=loaded.processor.tokenizer.decode(body, skip_special_tokens=True),
        new_tokens=n,
        sample_seed=req["seed"],
    )


def _timing(
    reply: Mapping[str, Any],
    start: float,
    sent: float,
    generated: float,
    made: Mapping[str, Prediction],
) -> BatchTiming:
    rows = reply["outputs"]
    firsts = [r["first_token_s"] for r in rows if r.get("first_token_s") is not None]
    lasts = [r["last_token_s"] for r in rows if r.get("last_token_s") is not None]
    first = max(firsts) if firsts else None  # every image has its first token: as HF's step 1
    return BatchTiming(
        n_images=len(rows),
        preprocess_s=sent - start,
        generate_s=generated - sent,
        first_token_s=first,
        decode_s=max(lasts) - first if first is not None and lasts else 0.0,
        decode_steps=max((len(r["token_ids"]) for r in rows), default=1) - 1,
        new_tokens=sum(p.new_tokens for p in made.values()),
        wall_s=time.perf_counter() - start,
    )


# ------------------------------------------------------------------------------- loading


def load_vllm(
    spec: Any,
    *,
    device: str,
    batch_size: int,
    max_new_tokens: int,
    gen: GenerationKwargs,
    image_size: tuple[int, int],
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> VllmLoaded:
    """Check the variant, then start a worker serving it (the transformers side loads only the
    processor and config). The worker stays up until `loaded.worker.close()`."""
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    from harness.models.build import ensure_built
    from harness.models.device import dtype_for, resolve_device
    from harness.models.families import family_for_model_type
    from harness.models.sources import base_location

    python = vllm_python()  # before any work: is the environment there?
    device = resolve_device(device)
    _, _, base_name = base_location(spec)
    built = ensure_built(spec, device=device, progress=progress, log=log or (lambda _: None))
    state = built.state
    config = AutoConfig.from_pretrained(state.location, revision=state.revision)
    family = family_for_model_type(config.model_type)
    check_supported(
        spec.id,
        config,
        family.name,
        quantized=bool(state.quantization),
        pruned=state.pruned,
        adapter=state.adapter is not None,
        device=device,
        gen=gen,
    )
    folder = _local_folder(state.location, state.revision)
    processor = AutoProcessor.from_pretrained(folder)
    shipped = GenerationConfig.from_pretrained(folder) if _has_gen_config(folder) else None
    eos = shipped.eos_token_id if shipped is not None else None
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    eos_ids = list(eos) if isinstance(eos, list | tuple) else [int(eos)]
    dtype = str(dtype_for(spec.base.dtype, device)).removeprefix("torch.")
    args = engine_args(
        dtype=dtype,
        device=device,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        seed=seed,
        mm_processor_kwargs=mm_processor_kwargs(family, image_size),
    )
    env = {"VLLM_BATCH_INVARIANT": "1"} if device == "cuda" else {}
    worker = VllmWorker(folder, args, python=python, env=env)
    return VllmLoaded(
        spec=spec,
        model=None,
        processor=processor,
        family=family,
        base=base_name,
        revision=spec.base.revision,
        dtype=dtype,
        built=built,
        worker=worker,
        eos=eos_ids,
        folder=folder,
    )


def _has_gen_config(folder: str) -> bool:
    return (Path(folder) / "generation_config.json").exists()


def _local_folder(location: str, revision: str | None) -> str:
    """A folder for the worker: local as is; a Hub id resolved in the local Hugging Face cache
    (the worker runs offline like every test and reads the same files)."""
    if Path(location).is_dir():
        return location
    from huggingface_hub import snapshot_download

    return snapshot_download(location, revision=revision)


def backend_ref(loaded: VllmLoaded) -> dict[str, Any]:
    assert loaded.worker is not None
    info = loaded.worker.info
    return {
        "name": "vllm",
        "version": info.version,
        "settings": info.settings | {"torch": info.torch, "device": info.device},
    }


class Vllm:
    """The vLLM backend (`harness.pipeline.backends.Backend`): one worker per run, metered with
    the harness's own process (the model lives in the worker)."""

    name = "vllm"

    def __init__(self) -> None:
        from harness.pipeline.backends.vllm_process import WorkerMemory

        self._memory = WorkerMemory()

    def check(self, task: Any, variant: Any, mode: Any, executor: Any) -> None:
        if mode.random_weights or executor.world_size > 1:
            raise VllmError("--backend vllm runs trained weights in a single process")
        preflight(variant, task.generation_kwargs)

    def meters(self) -> list[Any]:
        return [self._memory]  # first: its peak_rss_mib (both processes) is the one recorded

    def load(
        self,
        task: Any,
        variant: Any,
        mode: Any,
        *,
        device: str,
        batch_size: int,
        fixed_new_tokens: int | None,
        progress: bool,
    ) -> VllmLoaded:
        loaded = load_vllm(
            variant,
            device=device,
            batch_size=batch_size,
            max_new_tokens=fixed_new_tokens or task.generation_kwargs.max_new_tokens,
            gen=task.generation_kwargs,
            image_size=task.preprocessing.image.size,
            progress=False,
        )
        self._memory.pid = loaded.worker_pid
        return loaded

    def generate(
        self,
        loaded: Any,
        todo: Sequence[tuple[str, Callable[[], Any]]],
        task: Any,
        seed: int,
        batch_size: int,
        *,
        on_batch: Callable[[list[Prediction]], None],
        fixed_new_tokens: int | None,
        timings: list[BatchTiming],
    ) -> list[Prediction]:
        return generate_all(
            loaded,
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

    def ref(self, loaded: Any) -> Any:
        from harness.records.record import BackendRef

        return BackendRef.model_validate(backend_ref(loaded))
