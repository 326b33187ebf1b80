"""Read a user's YAML file with one-line errors naming the file (and line)."""

from pathlib import Path
from typing import Any

import yaml

from compressor.core.errors import UserError


def read_yaml_file(path: Path | str, what: str) -> Any:
    """Parsed content of `path`; `what` names the kind of file for the missing-file message."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: invalid YAML{where}: {getattr(error, 'problem', error)}") from None
