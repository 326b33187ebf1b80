"""Cache of baseline measurements, keyed by everything that could change them.

Key: source content hash, suite fingerprint (suite, task files, data), runtime, evaluation settings,
and the machine (CPU model, cores, device, torch version). Scores are compared only within one key's
runtime and machine.
"""

import hashlib
import json
import os
import platform
from pathlib import Path

from compressor.core.paths import compressor_home


def machine_id(device: str) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    # threads: a source timed with 2 threads must not be the baseline of a sweep trial timed with 1
    return {"cpu": cpu, "cores": os.cpu_count(), "machine": platform.machine(), "device": device, "gpu": gpu,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def cache_key(source_hash: str, suite_hash: str, runtime: str, settings: dict, device: str) -> str:
    blob = json.dumps({"source": source_hash, "suite": suite_hash, "runtime": runtime, "settings": settings,
                       "machine": machine_id(device)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    folder = os.environ.get("COMPRESSOR_BASELINES")
    return (Path(folder) if folder else compressor_home() / "baselines") / f"{key}.json"


def load_baseline(key: str) -> dict | None:
    path = _path(key)
    return json.loads(path.read_text()) if path.is_file() else None


def save_baseline(key: str, measurement: dict) -> None:
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent sweep trials may save the same key
    tmp.write_text(json.dumps(measurement, indent=2))
    tmp.replace(path)
