"""mount(2) and umount2(2) through libc, and overlay mounts.

Strategy: callers describe mounts as data (snapshot.Mount); only this module
performs them. No subprocess per mount: a container start is on the hot path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re

from berth.errors import FailedPrecondition

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2
MS_BIND = 0x1000
MS_REC = 0x4000


def mount(source: str, target: str, fstype: str, options: str = "", flags: int = 0) -> None:
    """Raises FailedPrecondition with the kernel's reason when the mount fails."""
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, options.encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise FailedPrecondition(f"mount {fstype} on {target}: {os.strerror(err)}")


def unmount(target: str, lazy: bool = True) -> None:
    """Unmount *target*; a target that is not mounted is fine."""
    rc = _libc.umount2(target.encode(), MNT_DETACH if lazy else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            return
        raise FailedPrecondition(f"unmount {target}: {os.strerror(err)}")


def is_mountpoint(path: str) -> bool:
    return os.path.ismount(path)


def mount_overlay(lower: list[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay of *lower* (topmost first) with *upper*/*work* on *target*."""
    opts = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    if is_mountpoint(target):
        return
    mount("overlay", target, "overlay", opts)


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """The mount points at or below *path* (read from mountinfo: os.path.ismount misses same-device binds)."""
    prefix = path.rstrip("/") + "/"
    out = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if point == path or point.startswith(prefix):
                    out.append(point)
    return out
