"""Unpacking the build context: the tar that POST /build sends, written into a fresh directory.

Strategy: the body (plain, gzip, bzip2, xz or zstd, recognised by its first
bytes) is read as a stream, with the same care as berth.image.archive: names
are cleaned and may not leave the directory, nothing is ever written through
a symlink (every entry is made by name in a descriptor of its directory,
reached without following one: berth.host.fsentries), hard links must name an
earlier regular file or symlink, and devices or fifos are refused. Symlinks
themselves may point anywhere: they are only ever read in scope
(berth.builder.scope), never followed by the host. Directory modes and times
are set last, deepest first, so that writing inside a directory does not undo
them. A stream that ends right after the last member's content is whole, as
Go's reader takes it (see members()).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from pathlib import Path
from typing import IO, Iterator

from berth.builder.scope import split_clean
from berth.errors import FailedPrecondition, InvalidArgument
from berth.host import fsentries
from berth.image import archive

_CHUNK = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _refuse(what: str) -> InvalidArgument:
    return InvalidArgument(f"build context refused: {what}")


def _clean_name(name: str, what: str) -> list[str]:
    if name.startswith("/"):
        raise _refuse(f"{what} {name!r} is an absolute path")
    parts = split_clean(name)
    if parts is None or ".." in name.split("/"):
        raise _refuse(f"{what} {name!r} leaves the context with '..'")
    return parts


def _parent_fd(root_fd: int, parts: list[str]) -> int:
    """A descriptor of the directory holding *parts*, missing parents made, reached without following a symlink."""
    return archive.open_parents(root_fd, "/".join(parts), refused="build context refused")


def _existing(root_fd: int, parts: list[str]) -> tuple[int, str] | None:
    """(descriptor of its directory, name) of the file or symlink at *parts*, reached through real
    directories only; else None."""
    if not parts:
        return None
    try:
        parent = fsentries.open_beneath(root_fd, parts[:-1])
    except (FileNotFoundError, fsentries.NotADirectoryBelow):
        return None
    st = fsentries.lstat_at(parent, parts[-1])
    if st is None or not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        os.close(parent)
        return None
    return parent, parts[-1]


class _Prefixed:
    """A reader that returns *head* and then the rest of *stream* (a sniffed stream, unread)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(size)
        head, self._head = (self._head, b"") if size < 0 else (self._head[:size], self._head[size:])
        want = -1 if size < 0 else size - len(head)
        return head + (self._stream.read(want) if want else b"")


def _open_tar(stream: IO[bytes]) -> tarfile.TarFile | None:
    """A streaming tar reader over *stream*, or None for an empty body."""
    head = stream.read(4)
    if not head:
        return None
    source: IO[bytes] = _Prefixed(head, stream)  # type: ignore[assignment]
    try:
        if head.startswith(_ZSTD_MAGIC):
            import zstandard
            source = zstandard.ZstdDecompressor().stream_reader(source)  # type: ignore[arg-type]
            return tarfile.open(fileobj=source, mode="r|")
        return tarfile.open(fileobj=source, mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidArgument(f"the build context is not a tar archive (plain, gzip, bzip2, xz or zstd): {exc}; "
                              "send the context directory as a tar") from exc


def extract_context(stream: IO[bytes], root: Path | str) -> int:
    """Unpack the context tar read from *stream* into the directory *root* (created if missing).

    Returns:
        The bytes of file content written.
    Raises:
        InvalidArgument: not a tar, or an entry that would leave *root*, be written through a
            symlink, or is not a file, directory, symlink or hard link. *root* then holds part
            of the context: the caller removes it.
        FailedPrecondition: the disk filled up.
    """
    top = os.fspath(root)
    os.makedirs(top, exist_ok=True)
    try:
        tar = _open_tar(stream)
        if tar is None:
            return 0
        with tar:
            try:
                total = _extract_all(tar, top)
            except (tarfile.TarError, EOFError) as exc:
                raise InvalidArgument(f"the build context is not a valid tar: {exc}") from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                if exc.errno is None:  # zlib/lzma/zstd errors surface as OSError without errno
                    raise InvalidArgument(f"the build context is not a valid compressed tar: {exc}") from exc
                raise
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FailedPrecondition(f"no space left on the device holding {top} while unpacking the build "
                                     "context; free some space and build again") from exc
        raise
    return total


def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of the streaming reader *tar*, read the way Go's archive/tar reads them.

    The docker CLI (`build -f` with a Dockerfile outside the context) appends the
    Dockerfile and a .dockerignore to the context tar and ends the stream right after
    the last member's content: no padding to the 512-byte block, no end-of-archive
    blocks. Go's reader (dockerd) takes an end of stream there as the end of the
    archive; Python's raises "unexpected end of data" while skipping the padding.
    So a ReadError from advancing is the end when everything the previous member
    announced has been read; a member whose content itself is cut short still fails
    (tarfile raises while its content is read).

    Members are not kept: a streaming TarFile appends each to `tar.members`, which
    would grow with the number of entries of the context (nothing here looks them up).
    """
    last_end = -1
    while True:
        try:
            member = tar.next()
        except tarfile.ReadError:
            if 0 <= last_end <= tar.fileobj.tell():  # type: ignore[union-attr]
                return  # only the padding (and the end blocks) after the last content were missing
            raise
        if member is None:
            return
        tar.members.clear()  # type: ignore[attr-defined]
        yield member
        last_end = member.offset_data + (member.size if member.isreg() else 0)


def _extract_all(tar: tarfile.TarFile, top: str) -> int:
    """Every member of *tar* below *top*, made relative to directory descriptors; directory modes last."""
    dirs: list[tuple[list[str], tarfile.TarInfo]] = []
    total = 0
    root_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for member in members(tar):
            total += _extract_member(tar, member, root_fd, dirs)
        for parts, member in reversed(dirs):
            try:  # reached again without following a symlink a later member put in its way
                fd = fsentries.open_beneath(root_fd, parts)
            except (FileNotFoundError, fsentries.NotADirectoryBelow):
                continue
            try:
                os.fchmod(fd, member.mode & 0o7777)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return total


def _extract_member(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int,
                    dirs: list[tuple[list[str], tarfile.TarInfo]]) -> int:
    parts = _clean_name(m.name, "entry")
    if not parts:
        return 0
    parent = _parent_fd(root_fd, parts)
    try:
        return _make(tar, m, root_fd, parent, parts, dirs)
    finally:
        os.close(parent)


def _make(tar: tarfile.TarFile, m: tarfile.TarInfo, root_fd: int, parent: int, parts: list[str],
          dirs: list[tuple[list[str], tarfile.TarInfo]]) -> int:
    """Make the member *m* (at *parts*) by name in its *parent* directory's descriptor."""
    base = parts[-1]
    rel = "/".join(parts)
    if m.isdir():
        st = fsentries.lstat_at(parent, base)
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                os.unlink(base, dir_fd=parent)
            fsentries.mkdir_at(parent, base, 0o755)
        dirs.append((parts, m))
        return 0
    size = 0
    if m.isreg():
        fsentries.remove_at(parent, base)
        src = tar.extractfile(m)
        assert src is not None
        fd = fsentries.create_file_at(parent, base)
        try:
            size = fsentries.copy_stream(fd, src, _CHUNK)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return size
    if m.issym():
        fsentries.remove_at(parent, base)
        fsentries.symlink_at(parent, base, m.linkname)
    elif m.islnk():
        target_parts = _clean_name(m.linkname, "hard link target")
        target = _existing(root_fd, target_parts)
        if target is None:
            raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not an earlier file of the archive")
        target_dir, target_name = target
        try:
            if target_parts != parts:
                fsentries.remove_at(parent, base)
                fsentries.link_at(target_dir, target_name, parent, base)
        finally:
            os.close(target_dir)
        return 0
    else:
        kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a fifo"}.get(m.type, f"of tar type {m.type!r}")
        raise _refuse(f"{rel!r} is {kind}; remove it from the context directory or list it in .dockerignore")
    os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
    return size


__all__ = ["extract_context", "members"]
