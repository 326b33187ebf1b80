"""Write a folder or file completely, or not at all."""

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from compressor.errors import UserError


def refuse_existing(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise UserError(f"{target}: already exists (pass --force to overwrite)")


@contextmanager
def atomic_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target`, on error it vanishes."""
    target = Path(target)
    refuse_existing(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(trash / "old")
            staging.rename(target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; renamed onto it when the block succeeds."""
    target = Path(target)
    refuse_existing(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    import os

    os.close(fd)
    staging = Path(name)
    try:
        yield staging
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
