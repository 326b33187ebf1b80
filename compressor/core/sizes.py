"""Sizes as people write them (24GB, 500MiB, or bytes) read into bytes, with one-line errors."""

import re

from compressor.core.errors import UserError

# what accelerate's convert_file_size_to_int reads, spelled exactly (it takes a lowercase final b for bits:
# "2gb" would be 250 MB, so lowercase units are refused rather than guessed)
SIZE = re.compile(r"^\d+(\.\d+)?\s?(GiB|MiB|KiB|GB|MB|KB)$")


def size_in_bytes(value) -> int:
    """Bytes from an int or a string like 2GB / 500MiB (accelerate's parser), more than 0; ValueError if not."""
    from accelerate.utils import convert_file_size_to_int

    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not SIZE.match(value)):
        raise ValueError(f"{repr(value)[:40]} is not a size (expected bytes, or a number with a unit: "
                         "GB, MB, KB, GiB, MiB, KiB, e.g. 2GB or 500MiB)")
    try:
        size = value if isinstance(value, int) else convert_file_size_to_int(value)
    except (ValueError, OverflowError):
        size = -1
    if size <= 0:
        raise ValueError(f"{value!r}: a size must be more than 0 bytes")
    return size


def parse_size(text, what: str) -> int:
    """`size_in_bytes` for a command-line option: a UserError naming `what`."""
    try:
        return size_in_bytes(text)
    except ValueError as error:
        raise UserError(f"{what}: {error}") from None
