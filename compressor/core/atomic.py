"""Write a folder or file completely, or not at all; one writer per target; nothing left behind.

- A folder is built in a staging folder beside the target (`.NAME.tmp-XXXX`, holding an owner record) and
  renamed into place only when complete; on any error, interrupt or full disk it is removed.
- `output_lock(target)` (filelock) makes a second run writing the same target refuse at once, in one line.
  `atomic_dir` takes it too (re-entrant within a process).
- Under that lock, staging folders of the same target left by killed runs (their owner process is gone)
  are removed before a new one is made, and said so.
- `refuse_existing` is checked again right before the rename: without --force an existing target is never
  replaced, even one that appeared while this run worked.
"""

import errno
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from compressor.core.errors import UserError
from compressor.core.files import folder_size_mb
from compressor.core.progress import quiet

OWNER_FILE = ".compressor-staging.json"
_HELD: dict[str, list] = {}  # lock path -> [FileLock, depth]: re-entrant within this process


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_existing(target: Path, force: bool) -> None:
    if os.path.lexists(target) and not force:
        raise UserError(f"{target}: already exists (pass --force to overwrite)")


def lock_path(target: Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """Hold the target's lock for the block; UserError at once when another process holds it."""
    from filelock import FileLock, Timeout

    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())  # one key however the target is spelled (relative, absolute, before its parent existed)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{target}: another compressor run is writing it right now (lock {path}); wait for it "
                        f"or choose another output") from None
    _HELD[key] = [lock, 1]
    try:
        yield
    finally:
        _HELD.pop(key, None)
        Path(path).unlink(missing_ok=True)  # while still held: nothing is left behind, and the work is done
        lock.release()


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: not ours to judge
    try:
        os.kill(int(owner["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned(target: Path, progress=quiet) -> list[Path]:
    """Staging folders of `target` whose writer is gone (killed runs); removed, and said so in one line.

    Called with the target's lock held, so no live run of this machine can be writing them."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    removed, freed = [], 0.0
    for candidate in target.parent.glob(f".{target.name}.*-*"):
        if candidate.is_symlink() or not candidate.name.startswith((f".{target.name}.tmp-",
                                                                     f".{target.name}.old-")):
            continue
        if candidate.is_file():  # an atomic_file's partial file
            freed += candidate.stat().st_size / 2**20
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
            continue
        if not candidate.is_dir():
            continue
        owner_file = candidate / OWNER_FILE
        try:
            owner = json.loads(owner_file.read_text()) if owner_file.is_file() else {}
        except (OSError, ValueError):
            owner = {}
        if owner and _alive(owner):
            continue
        freed += folder_size_mb(candidate)
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    if removed:
        progress(f"removed {len(removed)} staging folder(s) of {target} left by interrupted runs ({freed:.1f} MB)")
    return removed


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "StorageFull" in text or "os error 28" in text


def _disk_full(target: Path) -> UserError:
    try:
        free = shutil.disk_usage(Path(target).parent).free / 2**20
        where = f" ({free:.0f} MB free)"
    except OSError:
        where = ""
    return UserError(f"{target}: the disk is full{where}; nothing was written (free space, or choose another --out)")


@contextmanager
def atomic_dir(target: Path, force: bool = False, progress=quiet) -> Iterator[Path]:
    """Yield a staging folder beside `target`; on success it replaces `target`, on error it vanishes."""
    target = Path(target)
    refuse_existing(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):
        remove_abandoned(target, progress)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            (staging / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                          "started": time.time(), "target": str(target)}))
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the final folder should look normal
            yield staging
            (staging / OWNER_FILE).unlink()
            refuse_existing(target, force)  # again: it may have appeared while this run worked
            if os.path.lexists(target):
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                target.rename(trash / "old")
                staging.rename(target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                staging.rename(target)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if is_disk_full(error):
                raise _disk_full(target) from error
            raise


@contextmanager
def atomic_file(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; renamed onto it when the block succeeds."""
    target = Path(target)
    refuse_existing(target, force)
    if target.is_dir() and not target.is_symlink():
        raise UserError(f"{target}: a folder is in the way (expected a file there)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    staging = Path(name)
    try:
        yield staging
        staging.replace(target)
    except BaseException as error:
        staging.unlink(missing_ok=True)
        if is_disk_full(error):
            raise _disk_full(target) from error
        raise
