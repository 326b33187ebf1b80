"""Write a model folder: weights (safetensors), config, tokenizer, and compressor.json provenance."""

import json
from pathlib import Path

from compressor.core.layout import MODEL_DIR, PROVENANCE_FILE
from compressor.export.compressed_tensors_save import is_compressed_tensors_quantized, save_compressed


def write_model(model, tokenizer, folder: Path, provenance: dict) -> Path:
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
        written.append(write_artifact(Path(output) / (MODEL_DIR if in_model else "") / relative, data))
    return written
