"""Sizes of folders and tensors, read from the file system and safetensors headers (no weights loaded)."""

import json
import math
import struct
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """`path` if it exists, else its nearest existing parent (where a folder still to be made would live)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_size_mb(folder: Path) -> float:
    """Bytes of the files in `folder` (a link's target is not in the folder: not counted), in MB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def safetensors_header(path: Path) -> dict[str, dict]:
    """name -> {"dtype", "shape", "data_offsets"} from a .safetensors file's JSON header (no tensor data read)."""
    return read_safetensors_header(path)[1]


def read_safetensors_header(path: Path) -> tuple[int, dict[str, dict]]:
    """(offset where tensor data starts, the header as `safetensors_header` returns it); ValueError when the
    file is too short for its own header."""
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{len(prefix)} bytes, shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > Path(path).stat().st_size - 8:
            raise ValueError(f"header length {length} beyond the file's end")
        header = json.loads(handle.read(length))
    return 8 + length, {k: v for k, v in header.items() if k != "__metadata__"}


def count_params(folder: Path) -> int:
    """Elements of every tensor in the folder's safetensors files."""
    return sum(math.prod(v["shape"]) for path in Path(folder).glob("*.safetensors")
               for v in safetensors_header(path).values())
