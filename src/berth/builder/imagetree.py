"""An image's file system read through its layers, as overlayfs would show it.

Strategy: a build step that copies into an image must see the image as a
container would, without mounting it: a path is looked up in the layer
directories topmost first, one component at a time, honouring overlay
whiteouts (a 0:0 character device hides what is below), opaque directories
(the trusted.overlay.opaque xattr hides the lower layers' entries) and a
non-directory that hides everything below it. Symlinks are followed in scope
(berth.builder.scope's walk, fed this tree's lstat and readlink), so nothing
read ever leaves the image. ".." in an image path is lexical and stops at
"/": it is never handed to the host.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence

from berth.builder.scope import resolve_scoped

_OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def image_parts(path: str | Sequence[str]) -> list[str]:
    """Components of an image path; ".." is taken lexically, stopping at "/" (never handed to the host)."""
    out: list[str] = []
    for part in path.split("/") if isinstance(path, str) else path:
        if part == "..":
            if out:
                out.pop()
        elif part not in ("", "."):
            out.append(part)
    return out


class ImageTree:
    """A read-only view of an image's file system as overlayfs would show it.

    Args:
        lowers: the layer directories, topmost first (berth's snapshot directories, with
            overlay whiteouts and opaque markers), or a single directory holding a whole
            root (an unpacked or mounted root file system).
    Paths are absolute in the image ("/etc/passwd") or component lists; lstat() and
    readlink() expect paths without symlinks on the way (resolve() makes them).
    """

    def __init__(self, lowers: Sequence[Path | str]) -> None:
        self.lowers = tuple(os.fspath(p) for p in lowers)

    def _find(self, path: str | Sequence[str]) -> tuple[str, os.stat_result] | None:
        parts = image_parts(path)
        if not self.lowers:
            return None
        if not parts:
            return self.lowers[0], os.lstat(self.lowers[0])
        layers = list(self.lowers)
        found: tuple[str, os.stat_result] | None = None
        for depth in range(len(parts)):
            rel = os.path.join(*parts[: depth + 1])
            below: list[str] = []
            found = None
            for layer in layers:
                full = os.path.join(layer, rel)
                try:
                    st = os.lstat(full)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if found is None:
                    if _is_whiteout(st):
                        return None
                    found = (full, st)
                elif _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                    break
                if not stat.S_ISDIR(st.st_mode):
                    break
                below.append(layer)
                if _is_opaque(full):
                    break
            if found is None:
                return None
            layers = below
        return found

    def lstat(self, path: str | Sequence[str]) -> os.stat_result | None:
        """The lstat of the topmost visible entry at *path*, or None."""
        hit = self._find(path)
        return hit[1] if hit else None

    def readlink(self, path: str | Sequence[str]) -> str:
        """The target of the symlink at *path*."""
        hit = self._find(path)
        if hit is None:
            raise FileNotFoundError(errno.ENOENT, "no such file in the image", "/" + "/".join(image_parts(path)))
        return os.readlink(hit[0])

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """*path* with its symlinks followed inside the image ("/bin/sh" -> "/usr/bin/dash")."""
        return "/" + "/".join(resolve_scoped(image_parts(path), self.lstat, self.readlink, follow_last=follow_last))

    def is_dir(self, path: str) -> bool:
        """True when *path*, symlinks followed, is a directory in the image (a dest_is_dir)."""
        st = self.lstat(self.resolve(path))
        return st is not None and stat.S_ISDIR(st.st_mode)

    def read_text(self, path: str, limit: int = 16 << 20) -> str | None:
        """The text of the regular file at *path* (symlinks followed), or None (for /etc/passwd)."""
        hit = self._find(self.resolve(path))
        if hit is None or not stat.S_ISREG(hit[1].st_mode):
            return None
        fd = os.open(hit[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit).decode("utf-8", "surrogateescape")



__all__ = ["ImageTree", "image_parts"]
