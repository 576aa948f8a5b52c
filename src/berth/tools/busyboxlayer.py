"""The busybox root file system as one layer tar, the same bytes for the same binary (pure).

    tar_bytes = busybox_layer(binary, applets, mtime=mtime, version="1.35.0")

Strategy: the layer is written entry by entry from memory, in sorted order:
the directories, users and groups of berth.image.basefiles, the busybox binary,
one symlink per applet, and /etc/os-release; everything is owned by root and
carries the binary's own timestamp (berth.tools.tarentry).
"""

from __future__ import annotations

import io
import tarfile

from berth.image import basefiles
from berth.tools.tarentry import tar_entry


def busybox_layer(busybox: bytes, applets: list[str], *, mtime: int, version: str) -> bytes:
    """A deterministic, uncompressed layer tar: busybox, its applet links, users, groups, dirs.

    *applets* are the paths `busybox --list-full` prints (bin/sh, usr/bin/env, ...).
    """
    os_release = f'NAME="busybox"\nID=busybox\nVERSION_ID="{version}"\n'.encode()
    files = {"etc/passwd": basefiles.PASSWD.encode(), "etc/group": basefiles.GROUP.encode(),
             "etc/os-release": os_release}
    members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for name, mode in basefiles.DIRS.items():
        owner = 1000 if name == "home/bob" else 0
        members[name] = (tar_entry(name, tarfile.DIRTYPE, mode, mtime, owner=owner), None)
    members["bin/busybox"] = (tar_entry("bin/busybox", tarfile.REGTYPE, 0o755, mtime, size=len(busybox)), busybox)
    for path in applets:
        path = path.strip().strip("/")
        if not path or path == "bin/busybox" or path in members:
            continue
        link = "../" * path.count("/") + "bin/busybox"
        members[path] = (tar_entry(path, tarfile.SYMTYPE, 0o777, mtime, link=link), None)
    for name, text in files.items():
        members[name] = (tar_entry(name, tarfile.REGTYPE, 0o644, mtime, size=len(text)), text)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(members):
            info, content = members[name]
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()
