"""Write a model folder: weights (safetensors), config, tokenizer, and compressor.json provenance."""

import json
from pathlib import Path

PROVENANCE_FILE = "compressor.json"


def write_model(model, tokenizer, folder: Path, provenance: dict) -> Path:
    from compressor.export.compressed_tensors_save import is_compressed_tensors_quantized, save_compressed

    folder = Path(folder)
    # one file up to 10 GB: the competition expects model.safetensors, vLLM takes either
    save_kwargs = dict(safe_serialization=True, max_shard_size="10GB")
    if is_compressed_tensors_quantized(model):  # llm-compressor output: write it compressed
        save_compressed(model, folder, **save_kwargs)
    else:
        model.save_pretrained(folder, **save_kwargs)
    tokenizer.save_pretrained(folder)
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return folder


def read_provenance(folder: Path) -> dict | None:
    path = Path(folder) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20


def count_params(folder: Path) -> int:
    """Elements of every tensor in the folder's safetensors files (read from headers, no weights loaded)."""
    import math
    import struct

    total = 0
    for path in Path(folder).glob("*.safetensors"):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def write_artifact(path: Path, data) -> Path:
    """Write one stage artifact: dict/list as JSON, str as UTF-8 text, bytes as is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    elif isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(bytes(data))
    return path


def write_artifacts(artifacts: dict, output: Path) -> list[Path]:
    """`{name: (data, in_model)}` from the stages -> files in `output/model/` or `output/` (a staging folder)."""
    written = []
    for name, (data, in_model) in artifacts.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"artifact name {name!r} must be a plain relative path")
        written.append(write_artifact(Path(output) / ("model" if in_model else "") / relative, data))
    return written
