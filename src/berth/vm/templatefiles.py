"""Where a vm_dir's templates live, and the locks that decide who may touch them.

On disk, under `<vm_dir>/templates/`:

    .lock                 shared while a clone pins a template's files, exclusive to swap/clean
    <key>.lock            exclusive while that key's template is being built
    <key>/template.json   what the template is (written last, published by renaming the dir)
    <key>/state           the saved device state
    <key>.broken          a restore failed twice: clones of <key> are refused for a while
    .build-<key>/         a build in progress (or a crashed one, removed by the next build)

and the RAM at `/dev/shm/berth-templates/<vm_dir id>/<key>.<nonce>.ram` (tmpfs:
the RAM file must not be disk-backed; clones map it).

Strategy: /dev/shm is world-writable, so before a template is built every
level is checked (`ram_dir`): /dev/shm a root-owned sticky directory,
`berth-templates` and `<vm_dir id>` real directories (not symlinks) owned by
root, mode 0700 (tightened if wider); a level made by anyone else makes the
build fail, and containers cold-boot. The templates directory under vm_dir is
0700 too. The locks are flocks on the files above: `flock` blocks, for locks
held for milliseconds; `aflock` waits for a key's build lock without blocking
the event loop, since a build holds it for seconds. `TemplateUnavailable` is
what every part of the template machinery raises when no clone can be had:
whoever catches it cold-boots instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from berth.errors import FailedPrecondition, Unavailable
from berth.host import fs

SHM_ROOT = Path("/dev/shm/berth-templates")


class TemplateUnavailable(Unavailable):
    """No clone could be started (template build or restore failed); cold-boot instead."""


def shm_dir(vm_dir: Path) -> Path:
    """Where this vm_dir's template RAM files live (tmpfs)."""
    return SHM_ROOT / hashlib.sha256(str(Path(vm_dir).resolve()).encode()).hexdigest()[:12]


def ram_dir(vm_dir: Path) -> Path:
    """`shm_dir(vm_dir)`, created or checked level by level (see the module's docstring).

    Raises:
        FailedPrecondition: a level is a symlink, not a directory, owned by another user,
            or /dev/shm is writable by others without the sticky bit.
    """
    base = SHM_ROOT.parent
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or \
            (st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX):
        raise FailedPrecondition(f"{base} must be a root-owned directory, sticky when world-writable")
    fs.private_dir(str(SHM_ROOT), 0o700)
    d = shm_dir(vm_dir)
    fs.private_dir(str(d), 0o700)
    return d


def templates_dir(vm_dir: Path) -> Path:
    """`<vm_dir>/templates`, created or tightened to 0700 (root only)."""
    d = Path(vm_dir) / "templates"
    fs.private_dir(str(d), 0o700)
    return d


# ---- locks --------------------------------------------------------------------------------

@contextlib.contextmanager
def flock(path: Path, how: int) -> Iterator[None]:
    """A blocking flock, for locks only ever held for milliseconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def aflock(path: Path, *, timeout: float) -> AsyncIterator[None]:
    """An exclusive flock awaited without blocking the loop (a template build holds it for seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise TemplateUnavailable(f"timed out after {timeout}s waiting for {path}")
            await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)


def lock_free(path: Path) -> bool:
    """True when nobody holds the flock on *path* (or it does not exist)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
