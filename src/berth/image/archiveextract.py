"""`docker load`, step 1: the uploaded image archive unpacked into an empty directory, safely.

Strategy: loading is split in steps so that no step both trusts and parses;
this one trusts nothing and parses nothing but tar headers. Only regular
files, directories, symlinks and hard links are accepted; every name must
stay inside the directory (no absolute names, no `..`), nothing is ever
written through a symlink (each entry is made by name in a descriptor of its
parent, berth.host.fsentries), and once everything is out each symlink must
still resolve inside the directory. The rules are those of
berth.image.archive.apply_layer, minus what an image archive never holds
(devices, fifos, ownership, modes). Reading what came out is
image.archiveread's business.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from berth.errors import FailedPrecondition, InvalidArgument
from berth.host import fsentries, fswalk
from berth.image import archive, archivestream

_CHUNK = 1 << 20


def _refuse(what: str) -> InvalidArgument:
    return InvalidArgument(f"docker load: archive refused: {what}")


def _clean(name: str, what: str) -> str:
    return archive.clean_name(name, what, refused="docker load: archive refused", inside="the archive")


def _clear(parent: int, name: str, rel: str) -> None:
    """Make room for a new non-directory entry *name* in *parent* (a later duplicate replaces the earlier)."""
    st = fsentries.lstat_at(parent, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise _refuse(f"{rel!r} is both a directory and a file")
    os.unlink(name, dir_fd=parent)


def extract_archive(stream: BinaryIO, root: Path) -> int:
    """Unpack the image archive read from *stream* (tar; gzip, bzip2 or xz allowed) into *root*.

    Every entry is made by name in a descriptor of its parent directory, reached from
    *root*'s descriptor without following a symlink (berth.host.fsentries).

    Returns:
        The bytes of file content written.
    Raises:
        InvalidArgument: not a tar, or an entry that is not a file, directory,
            symlink or hard link, or that would reach outside *root*. *root*
            then holds part of the archive: the caller removes it.
        FailedPrecondition: the disk filled up.
    """
    top = os.fspath(root)
    os.makedirs(top, exist_ok=True)
    total = 0
    root_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            tar = archivestream.open_tar(stream)  # type: ignore[arg-type]
        except tarfile.TarError as exc:
            raise InvalidArgument(f"docker load: the upload is not a tar archive (plain, gzip, bzip2 or xz): "
                                  f"{exc}") from exc
        with tar:
            try:
                for m in tar:
                    total += _extract_member(tar, m, root_fd)
            except tarfile.TarError as exc:
                raise InvalidArgument(f"docker load: the archive is not a valid tar: {exc}") from exc
        _check_symlinks(top, root_fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FailedPrecondition(f"docker load: no space left on the device holding {top}; "
                                     "free some space and load again") from exc
        raise
    finally:
        os.close(root_fd)
    return total


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int) -> int:
    rel = _clean(m.name, "entry")
    if not rel:
        return 0
    parent = archive.open_parents(root_fd, rel, refused="docker load: archive refused")
    try:
        return _make(tar, m, root_fd, parent, rel)
    finally:
        os.close(parent)


def _make(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int, parent: int, rel: str) -> int:
    """Make the entry *m* (named *rel*) by name in its *parent* directory's descriptor."""
    base = posixpath.basename(rel)
    if m.isdir():
        st = fsentries.lstat_at(parent, base)
        if st is None:
            fsentries.mkdir_at(parent, base, 0o755)
        elif not stat.S_ISDIR(st.st_mode):
            raise _refuse(f"{rel!r} is both a directory and a file")
        return 0
    if m.isreg():
        _clear(parent, base, rel)
        src = tar.extractfile(m)
        assert src is not None
        fd = fsentries.create_file_at(parent, base)
        try:
            os.fchmod(fd, 0o644)
            return fsentries.copy_stream(fd, src, _CHUNK)
        finally:
            os.close(fd)
    if m.issym():
        target = m.linkname
        if target.startswith("/"):
            raise _refuse(f"symlink {rel!r} points at the absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise _refuse(f"symlink {rel!r} -> {target!r} points outside the archive")
        _clear(parent, base, rel)
        fsentries.symlink_at(parent, base, target)
        return 0
    if m.islnk():
        target_rel = _clean(m.linkname, "hard link target")
        target_parent = archive.open_parents(root_fd, target_rel, refused="docker load: archive refused")
        try:
            target_base = posixpath.basename(target_rel)
            st = fsentries.lstat_at(target_parent, target_base)
            if st is None:
                raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not (yet) in the archive")
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not a regular file")
            _clear(parent, base, rel)
            fsentries.link_at(target_parent, target_base, parent, base)
        finally:
            os.close(target_parent)
        return 0
    kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
            tarfile.FIFOTYPE: "a fifo"}.get(m.type, f"of tar type {m.type!r}")
    raise _refuse(f"{rel!r} is {kind}; an image archive holds only files, directories and links")


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip("/") + "/")


def _check_symlinks(root: str, root_fd: int) -> None:
    """Every symlink under *root*, followed to the end, must stay inside *root* (listed by descriptor;
    the tree is berth's own, just extracted)."""
    real_root = os.path.realpath(root)
    for entry in fswalk.walk(root_fd):
        if not stat.S_ISLNK(entry.st.st_mode):
            continue
        path = os.path.join(root, entry.name)
        if not _inside(os.path.realpath(path), real_root):
            target = os.readlink(entry.base, dir_fd=entry.dir_fd)
            raise _refuse(f"symlink {entry.name!r} -> {target!r} resolves outside the archive")


__all__ = ["extract_archive"]
