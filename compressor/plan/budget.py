"""How much memory and disk a run may use: what the user states (`--memory 24GB`), else what the machine has."""

import os
import shutil
from pathlib import Path


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
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _own_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
