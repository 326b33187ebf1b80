"""Is a folder a checkpoint this tool can edit? Checked from its small files before any weight is read.

config.json must be a JSON mapping naming a supported `model_type` with sane sizes (positive, heads divisible
by KV heads); the weights must be safetensors whose headers parse and whose data fits the file (a truncated
download is refused before hashing gigabytes), holding exactly the decoder layers the config counts. Pickled
weights (pytorch_model.bin) are refused unless the user allows them: transformers then unpickles them with
`weights_only=True` (tensors only, no code), yet a safetensors file is the format to ship.
"""

import json
import re
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.files import read_safetensors_header
from compressor.core.yaml_io import read_text_file
from compressor.models.adapters import ADAPTERS

CONFIG_MAX_BYTES = 16 * 2**20
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_SIZES = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
          "max_position_embeddings")
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def read_config(folder: Path) -> dict:
    """config.json as a mapping; UserError for anything else."""
    path = Path(folder) / "config.json"
    text = read_text_file(path, "config", CONFIG_MAX_BYTES)
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UserError(f"{path}: invalid JSON ({str(error)[:120]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def config_problems(config: dict) -> list[str]:
    """What makes a config impossible to build (each a short phrase naming the key)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return ["no model_type (expected one of: " + ", ".join(sorted(ADAPTERS)) + ")"]
    if model_type not in ADAPTERS:
        return [f"model_type {model_type[:60]!r} is not supported (supported: {', '.join(sorted(ADAPTERS))})"]
    problems = []
    for key in _SIZES:
        value = config.get(key)
        if key in ("intermediate_size", "max_position_embeddings") and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
            problems.append(f"{key} must be a positive integer, got {str(value)[:40]}")
    heads, kv = config.get("num_attention_heads"), config.get("num_key_value_heads")
    if isinstance(heads, int) and heads > 0 and kv is not None:
        if isinstance(kv, bool) or not isinstance(kv, int) or kv <= 0:
            problems.append(f"num_key_value_heads must be a positive integer, got {str(kv)[:40]}")
        elif heads % kv:
            problems.append(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    hidden, head_dim = config.get("hidden_size"), config.get("head_dim")
    if head_dim is None and isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
        problems.append(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads} (and no head_dim)")
    layers, types = config.get("num_hidden_layers"), config.get("layer_types")
    if isinstance(types, list) and isinstance(layers, int) and len(types) != layers:
        problems.append(f"layer_types has {len(types)} entries but num_hidden_layers is {layers}")
    return problems


def weight_files(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def _check_safetensors(path: Path) -> set[int]:
    """Decoder layer indices in one file, after checking its header parses and its data is all there."""
    try:
        data_start, header = read_safetensors_header(path)
        ends = [info["data_offsets"][1] for info in header.values()]
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({type(error).__name__}: {str(error)[:80]})") \
            from None
    missing = data_start + max(ends, default=0) - path.stat().st_size
    if missing > 0:
        raise UserError(f"{path}: truncated ({missing} bytes of tensor data missing; re-download or re-save it)")
    return {int(m.group(1)) for name in header for m in [_LAYER.search(name)] if m}


def check_model_folder(folder: Path, allow_pickle: bool = False) -> dict:
    """config.json of a checkpoint that passes every check above (UserError naming the file otherwise)."""
    folder = Path(folder)
    config = read_config(folder)
    problems = config_problems(config)
    if problems:
        raise UserError(f"{folder / 'config.json'}: " + "; ".join(problems[:5]))
    files = weight_files(folder)
    if not files:
        pickled = [name for name in PICKLE_NAMES if (folder / name).is_file()]
        if pickled and allow_pickle:
            return config
        if pickled:
            raise UserError(f"{folder}: weights are pickled ({pickled[0]}); pass --allow-pickle to load them "
                            f"(unpickled with weights_only, tensors only) or convert them to safetensors")
        raise UserError(f"{folder}: no weights (*.safetensors) beside config.json")
    layers: set[int] = set()
    for path in files:
        layers |= _check_safetensors(path)
    expected = set(range(config["num_hidden_layers"]))
    if layers != expected:
        found = f"{len(layers)} ({min(layers)}..{max(layers)})" if layers else "none"
        raise UserError(f"{folder}: the weights hold decoder layers {found} but config.json's num_hidden_layers "
                        f"is {config['num_hidden_layers']}")
    return config
