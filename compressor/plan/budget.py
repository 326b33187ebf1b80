"""How much memory and disk a run may use: what the user states (`--memory 24GB`), else what the machine has."""

import os
import shutil
from pathlib import Path

from compressor.core.files import nearest_existing


def available_memory(device_type: str, device_index: int | None = None) -> int | None:
    """Memory this process can grow into: for the CPU what the kernel calls available plus what this process
    already holds; for CUDA the device's free memory. None when it cannot be known (no such device here)."""
    if device_type == "cpu":
        return _mem_available() + _own_rss()
    if device_type == "cuda":
        import torch

        if not torch.cuda.is_available():
            return None
        free, _total = torch.cuda.mem_get_info(device_index or 0)
        return free
    return None


def free_disk(folder: Path) -> int | None:
    """Free bytes on the file system that will hold `folder` (its nearest existing parent)."""
    path = nearest_existing(Path(folder).absolute())
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _mem_available() -> int:
    available = _proc_kib("/proc/meminfo", "MemAvailable:")
    return available if available is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _own_rss() -> int:
    return _proc_kib("/proc/self/status", "VmRSS:") or 0


def _proc_kib(path: str, field: str) -> int | None:
    """A `FIELD: N kB` line of a /proc file, in bytes; None where there is no such file or line."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
