"""Rewrite a compressed-tensors `quantization_config` for an older compressed-tensors (a target's data).

Every QuantizationArgs block (config_groups.*.weights / input_activations / output_activations and
kv_cache_scheme) is rewritten by the target's `config.quantization_args` rules:
`drop_null: [key, ...]` drops keys whose value is null (their default), `drop_unless: {key: {field: value}}`
drops a key unless the block has those field values. Only keys whose meaning is unchanged by dropping
them belong in these rules (e.g. actorder with one scale per channel: the ordering is baked into the
weights and no g_idx is stored).
"""

import copy
from typing import Iterator

ARGS_KEYS = ("weights", "input_activations", "output_activations")


def quantization_args_blocks(qc: dict) -> Iterator[tuple[str, dict]]:
    """(path, QuantizationArgs dict) of every block in a quantization_config."""
    for group_name, group in (qc.get("config_groups") or {}).items():
        if isinstance(group, dict):
            for key in ARGS_KEYS:
                if isinstance(group.get(key), dict):
                    yield f"config_groups.{group_name}.{key}", group[key]
    if isinstance(qc.get("kv_cache_scheme"), dict):
        yield "kv_cache_scheme", qc["kv_cache_scheme"]


def rewrite_quantization_config(qc: dict, rules) -> tuple[dict, list[str]]:
    """A rewritten copy of `qc` and one line per change (the input is untouched)."""
    out, changes = copy.deepcopy(qc), []
    for path, block in quantization_args_blocks(out):
        for key in rules.drop_null:
            if key in block and block[key] is None:
                del block[key]
                changes.append(f"quantization_config.{path}: dropped {key}: null")
        for key, required in rules.drop_unless.items():
            if key in block and block[key] is not None and any(block.get(f) != v for f, v in required.items()):
                found = ", ".join(f"{f} {block.get(f)!r}" for f in required)
                changes.append(f"quantization_config.{path}: dropped {key}: {block.pop(key)!r} ({found})")
    return out, changes
