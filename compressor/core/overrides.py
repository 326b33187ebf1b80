"""`--set PATH=VALUE` overrides of a YAML document: dotted paths with list indices, YAML-typed values.

    stages[0].count=4     eval.suite=quick     eval.latency.batch_sizes=[1,8]     model.dtype=bfloat16

The value is parsed as YAML (`4` an int, `true` a bool, `[1, 8]` a list, `quick` a string). A path must lead
through what the document has (mappings may gain a new key; the schema then says whether it is known).
"""

import copy
import re
from typing import Any

from compressor.core.errors import UserError
from compressor.core.yaml_io import parse_yaml

_SEGMENT = re.compile(r"[A-Za-z_][\w-]*(?:\[-?\d+\])*")
_PART = re.compile(r"([A-Za-z_][\w-]*)|\[(-?\d+)\]")


def parse_path(path: str) -> list[str | int]:
    """`stages[0].count` -> ["stages", 0, "count"]; UserError for anything else."""
    segments = path.split(".")
    if not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise UserError(f"--set {path}: expected dotted keys with [index] parts, e.g. stages[0].count")
    return [m.group(1) if m.group(1) is not None else int(m.group(2))
            for segment in segments for m in _PART.finditer(segment)]


def parse_assignment(text: str) -> tuple[list[str | int], Any]:
    if "=" not in text:
        raise UserError(f"--set {text}: expected PATH=VALUE, e.g. eval.suite=quick")
    path, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw, f"--set {path}") if raw.strip() else ""
    except UserError as error:
        raise UserError(str(error).replace("invalid YAML", "the value is not valid YAML")) from None
    return parse_path(path.strip()), value


def _label(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def apply_overrides(data: Any, assignments: list[str]) -> Any:
    """A copy of `data` with each `PATH=VALUE` assignment applied in order."""
    data = copy.deepcopy(data if data is not None else {})
    for text in assignments:
        parts, value = parse_assignment(text)
        node = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = _label(parts[: depth + 1])
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise UserError(f"--set {_label(parts)}: {_label(parts[:depth]) or 'the top'} is not a list")
                if not -len(node) <= part < len(node):
                    raise UserError(f"--set {_label(parts)}: {where}: no such item (the list has {len(node)})")
            elif not isinstance(node, dict):
                raise UserError(f"--set {_label(parts)}: {_label(parts[:depth]) or 'the top'} is not a mapping")
            if last:
                node[part] = value
            else:
                if isinstance(part, str) and part not in node:
                    node[part] = {}
                node = node[part]
    return data
