"""Tar member headers that are the same on every machine: root-owned, with the time they are given.

Strategy: a tar's bytes depend on every header field, so `tar_entry` sets them
all (owner and its names, mode, size, time, link target) from its arguments:
nothing of the machine or of the user running a build leaks into a layer or
into a layout tar.
"""

from __future__ import annotations

import tarfile


def tar_entry(name: str, kind: bytes, mode: int, mtime: int, *, size: int = 0, owner: int = 0,
              link: str = "") -> tarfile.TarInfo:
    """A header for *name*: owned by *owner* (named "root" when 0, unnamed otherwise), nothing left to chance."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = owner
    info.uname = info.gname = "root" if owner == 0 else ""
    info.linkname = link
    return info
