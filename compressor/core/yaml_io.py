"""Read a user's YAML with one-line errors naming the file (and line): safe tags only, no duplicate keys,
UTF-8 only, regular files of sane size only."""

import stat
from pathlib import Path
from typing import Any

import yaml

from compressor.core.errors import UserError

MAX_BYTES = 4 * 2**20  # a recipe, suite or target is a few kB; this stops /dev/zero and stray blobs


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that states a key twice (by default the last one wins, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(key)[:80]!r}",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> data; UserError naming `where` (and the line) for anything that is not plain YAML."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        if isinstance(error, yaml.reader.ReaderError):  # a character YAML refuses; str() spans two lines
            detail = f"{error.reason} (character {error.position})"
        else:
            detail = getattr(error, "problem", None) or str(error)
        raise UserError(f"{where}: invalid YAML{line}: {' '.join(str(detail).split())}") from None
    except RecursionError:
        raise UserError(f"{where}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # e.g. an integer of thousands of digits (Python's int() limit)
        raise UserError(f"{where}: invalid YAML: {str(error)[:200]}") from None


def read_text_file(path: Path | str, what: str, max_bytes: int = MAX_BYTES) -> str:
    """A regular UTF-8 file's text; UserError naming `path` for a missing file, a folder, a device or FIFO,
    a file too large to be a `what` file, or bytes that are not UTF-8."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file") from None
    except OSError as error:  # a name too long, a loop of links, no permission
        raise UserError(f"{str(path)[:200]}: cannot be read as a {what} file ({error.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path}: not a regular file (a device, FIFO or socket), expected a {what} file")
    if info.st_size > max_bytes:
        raise UserError(f"{path}: {info.st_size / 2**20:.1f} MB is too large for a {what} file "
                        f"(at most {max_bytes / 2**20:.0f} MB)")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}: {raw[error.start:error.start + 1]!r})") from None
    except OSError as error:
        raise UserError(f"{path}: cannot be read ({error.strerror})") from None


def read_yaml_file(path: Path | str, what: str) -> Any:
    """Parsed content of `path`; `what` names the kind of file in messages."""
    return parse_yaml(read_text_file(path, what), str(path))
