"""The vLLM side of the vLLM backend: a worker process, run with the vLLM environment's Python.

It imports nothing from the harness (the two environments pin different torch and transformers
releases). Protocol (version 1): one JSON object per line on stdin, one reply per line on stdout;
everything else the engine prints goes to stderr.

    -> {"op": "start", "protocol": 1, "model": DIR, "engine_args": {...}, "lora": DIR | null}
    <- {"ok": true, "engine": "vllm", "version": "...", "torch": "...", "device": "cpu",
        "settings": {...}, "pid": N}
    -> {"op": "generate", "requests": [{"id": ..., "prompt": TEXT, "add_special_tokens": BOOL,
        "image": PNG PATH, "seed": INT}], "sampling": {...SamplingParams fields}}
    <- {"ok": true, "outputs": [{"id", "token_ids", "prompt_token_ids", "finish_reason",
        "first_token_s", "last_token_s"}], "wall_s": ..., "peak_rss_mib": ...}
    -> {"op": "stop"}
    <- {"ok": true}

A failure answers {"ok": false, "error": ONE LINE} and the worker goes on (start failures end it).
Times are seconds from the moment the generate request was read.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

PROTOCOL = 1

# This script's folder is first on sys.path and holds the harness's own `vllm.py`: drop it so
# that `import vllm` finds the engine.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _peak_rss_mib() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Worker:
    def __init__(self, msg: dict[str, Any]) -> None:
        if msg.get("protocol") != PROTOCOL:
            raise ValueError(f"protocol {msg.get('protocol')!r}; this worker speaks {PROTOCOL}")
        import torch
        import vllm
        from vllm import LLM

        args = dict(msg.get("engine_args") or {})
        self.lora_path = msg.get("lora")
        if self.lora_path:
            args.setdefault("enable_lora", True)
        self.llm = LLM(model=msg["model"], **args)
        self.engine = self.llm.llm_engine
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.hello = {
            "ok": True,
            "engine": "vllm",
            "version": vllm.__version__,
            "torch": torch.__version__,
            "device": device,
            "settings": args,
            "pid": os.getpid(),
        }
        self._next = 0

    def generate(self, msg: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image
        from vllm import SamplingParams

        start = time.perf_counter()
        lora = None
        if self.lora_path:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.lora_path)
        pending: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        for req in msg["requests"]:
            with Image.open(req["image"]) as im:
                image = im.convert("RGB")
            params = SamplingParams(**msg["sampling"], seed=req["seed"])
            self._next += 1
            rid = f"{self._next}"
            self.engine.add_request(
                rid,
                {"prompt": req["prompt"], "multi_modal_data": {"image": image}},
                params,
                lora_request=lora,
                tokenization_kwargs={"add_special_tokens": bool(req["add_special_tokens"])},
            )
            pending[rid] = {"id": req["id"], "first_token_s": None, "last_token_s": None}
            order.append(rid)
        done: dict[str, dict[str, Any]] = {}
        while self.engine.has_unfinished_requests():
            outputs = self.engine.step()
            now = time.perf_counter() - start
            for out in outputs:
                row = pending.get(out.request_id)
                if row is None:
                    continue
                completion = out.outputs[0]
                if completion.token_ids:
                    if row["first_token_s"] is None:
                        row["first_token_s"] = now
                    row["last_token_s"] = now
                if out.finished:
                    row["token_ids"] = list(completion.token_ids)
                    row["prompt_token_ids"] = list(out.prompt_token_ids or [])
                    row["finish_reason"] = completion.finish_reason
                    row["stop_reason"] = completion.stop_reason
                    done[out.request_id] = row
        return {
            "ok": True,
            "outputs": [done[rid] for rid in order],
            "wall_s": time.perf_counter() - start,
            "peak_rss_mib": _peak_rss_mib(),
        }


def main() -> int:
    # The protocol owns the real stdout; whatever the libraries print goes to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    worker: Worker | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            op = msg.get("op")
            if op == "start":
                worker = Worker(msg)
                reply(worker.hello)
            elif op == "generate":
                if worker is None:
                    raise RuntimeError("generate before start")
                reply(worker.generate(msg))
            elif op == "stop":
                reply({"ok": True})
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as err:  # reported to the harness, which decides
            traceback.print_exc()  # the whole story on stderr
            text = " ".join(f"{type(err).__name__}: {err}".split())[:2000]
            reply({"ok": False, "error": text})
            if worker is None:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
