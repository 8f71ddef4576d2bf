"""The vLLM worker process seen from the harness: find the environment, start the worker, talk to
it (JSON lines, `vllm_worker.py`), stop it, and meter its memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.models.sources import BuildError
from harness.paths import REPO_ROOT

PROTOCOL = 1
PYTHON_ENV = "ROCOBENCH_VLLM_PYTHON"  # the vLLM environment's interpreter, if not .venv-vllm
DEFAULT_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
HERE = Path(__file__).resolve().parent
WORKER = HERE / "vllm_worker.py"
SITE = HERE / "vllm_site"  # start-up hook of the worker's processes (sitecustomize.py)
CPU_KV_CACHE_GIB = "1"  # vLLM's CPU KV cache; the twins and one batch need far less
STARTUP_TIMEOUT_S = 900.0


class VllmError(BuildError):
    """The vLLM backend cannot run this; the message says why and what to do."""


def vllm_python() -> Path:
    """The vLLM environment's interpreter; VllmError if it is not installed."""
    configured = os.environ.get(PYTHON_ENV)
    path = Path(configured) if configured else DEFAULT_PYTHON
    if not path.exists():
        where = f"${PYTHON_ENV} ({configured})" if configured else str(DEFAULT_PYTHON)
        raise VllmError(
            f"the vLLM backend needs its own environment: {where} does not exist "
            "(run `make install-vllm`, or use --backend hf)"
        )
    return path


def available() -> bool:
    try:
        vllm_python()
    except VllmError:
        return False
    return True


# ------------------------------------------------------------------------------ the process


@dataclass
class EngineInfo:
    version: str
    torch: str
    device: str
    settings: dict[str, Any]
    pid: int


class VllmWorker:
    """One worker process: start, generate batches, stop. Use as a context manager."""

    def __init__(
        self,
        model: str,
        engine_args: Mapping[str, Any],
        *,
        python: Path | None = None,
        env: Mapping[str, str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        python = python or vllm_python()
        child_env = dict(os.environ)
        child_env.pop("PYTHONPATH", None)  # this environment's packages must not leak in
        child_env["PYTHONPATH"] = str(SITE)
        child_env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # one process: simple, exact
        child_env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        child_env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        child_env |= dict(env or {})
        self.env = {k: child_env[k] for k in sorted(child_env) if k.startswith("VLLM_")}
        # the engine's log, for the message when it fails; closed with the worker
        self._stderr = tempfile.TemporaryFile(  # noqa: SIM115
            mode="w+", encoding="utf-8", errors="replace"
        )
        self.proc = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            env=child_env,
        )
        try:
            hello = self.request(
                {"op": "start", "protocol": PROTOCOL, "model": model, "engine_args": engine_args},
                timeout_s=STARTUP_TIMEOUT_S,
            )
        except BaseException:
            self.close()
            raise
        self.info = EngineInfo(
            version=hello["version"],
            torch=hello["torch"],
            device=hello["device"],
            settings={"engine_args": hello["settings"], "env": self.env},
            pid=hello["pid"],
        )

    def _tail(self) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().splitlines() if ln.strip()]
        return " | ".join(lines[-3:])[-600:]

    def request(self, msg: Mapping[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one message, read its one-line reply; VllmError on a failure or a dead worker."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise VllmError(f"the vLLM worker exited: {self._tail()}") from None
        line = _readline(self.proc.stdout, timeout_s)
        if line is None:
            self.proc.kill()
            raise VllmError(f"the vLLM worker gave no answer in {timeout_s:.0f} s")
        if not line:
            self.proc.wait()
            raise VllmError(
                f"the vLLM worker exited (status {self.proc.returncode}): {self._tail()}"
            )
        reply = json.loads(line)
        if not reply.get("ok"):
            raise VllmError(f"vLLM: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(VllmError, OSError, ValueError):
                self.request({"op": "stop"}, timeout_s=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> VllmWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readline(stream: IO[str], timeout_s: float | None) -> str | None:
    """One line, or None after `timeout_s` (the worker may hang in a native library)."""
    if timeout_s is None:
        return stream.readline()
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return box[0] if box else None


class WorkerMemory:
    """Peak resident memory of this process plus the worker's process tree, sampled.

    Placed first in a Metering so that its `peak_rss_mib` is the one recorded: with the vLLM
    backend the model lives in the worker, and the run needs both processes.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.pid: int | None = None
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> float:
        import psutil

        procs = [psutil.Process()]
        if self.pid is not None:
            try:
                worker = psutil.Process(self.pid)
                procs += [worker, *worker.children(recursive=True)]
            except psutil.Error:
                pass
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._read())

    def open(self) -> None:
        self.peak = self._read()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vllm-rss", daemon=True)
        self._thread.start()

    def close(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.peak = max(self.peak, self._read())
        return {"peak_rss_mib": round(self.peak, 1)}
