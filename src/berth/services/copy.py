"""`docker cp`: archive and extract paths in a container's file system.

Strategy: paths are resolved by services.containerview (descriptor by
descriptor, never followed by the kernel, never above the container's root).

What crosses the boundary:
  archive   GET: a tar of the path named by its base name ("dir/...", or
            "./..." for "dir/."), walked with directory descriptors so nothing
            below the starting point is followed either; mounts inside the tree
            are walked in place of what they hide. Tar members come from
            berth.image.fsexport (PAX, numeric ids, xattrs, hard links kept).
  extract   PUT: the tar is read as a stream; each member's parent is resolved
            inside the container (missing parents are created), and the member
            is created relative to that directory's descriptor with the
            primitives of berth.host.fsentries (O_EXCL, O_NOFOLLOW, *at calls,
            attributes set through a descriptor pinned O_PATH|O_NOFOLLOW). Names are cleaned: a leading "/" is dropped,
            `..` that would leave the extraction directory is refused. Writes
            into read-only mounts or a read-only root are refused before any
            change. Directory modes, owners and times are applied last.

Container processes race with us only through the file system, and every step
above is relative to a descriptor already checked, so the worst a hostile
container can do is make its own copy fail.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any

from berth.errors import BerthError, FileTooLarge, InvalidArgument, NotFound
from berth.host import fsentries
from berth.image import fsexport
from berth.oci import passwd
from berth.services.containerview import (
    MountPoint,
    PathStat,
    View,
    absolute,
    base_name,
    locate,
    stat_path,
)

USER_FILE_LIMIT = 4 << 20  # /etc/passwd, /etc/group read for copyUIDGID


# --------------------------------------------------------------------------- #
# archive (GET)


def archive(view: View, path: str) -> tuple[PathStat, Iterator[bytes]]:
    """The stat of *path* and a tar of it (members named by the path's base name), streamed.

    The stat is taken (and NotFound raised) at the call; the tar is produced while
    iterating, from descriptors opened now, so it is of the object that was stat'ed.
    """
    abs_path = absolute(path)
    follow = abs_path.endswith("/") or abs_path.endswith("/.")
    loc = locate(view, abs_path, follow_last=follow)
    try:
        info = stat_path(view, path)
        top = base_name(abs_path)  # "/" for the root: members "/bin", "/etc"..., as Docker names them
    except BaseException:
        loc.close()
        raise

    def chunks() -> Iterator[bytes]:
        writer = fsexport.TarWriter()
        try:
            if stat.S_ISDIR(loc.st.st_mode):
                dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=loc.fd)
                try:
                    if top != "/":
                        yield from writer.entry(fsexport.Entry(top, loc.host_path, loc.st))
                    yield from _tree(view, writer, dir_fd, loc.path, top.rstrip("/") + "/")
                finally:
                    os.close(dir_fd)
            else:
                yield from writer.entry(fsexport.Entry(top, loc.host_path, loc.st))
            yield fsexport.END_OF_ARCHIVE
        finally:
            loc.close()

    return info, fsexport.coalesce(chunks())


def _tree(view: View, writer: fsexport.TarWriter, dir_fd: int, cpath: str, prefix: str) -> Iterator[bytes]:
    names = set(os.listdir(dir_fd))
    names.update(posixpath.basename(m.destination) for m in view.mounts  # not made in the root yet
                 if posixpath.dirname(m.destination) == cpath)
    for name in sorted(names):
        here = posixpath.join(cpath, name)
        mount = view.mount_at(here)
        try:
            if mount is not None:
                path = mount.source
                st = os.stat(path)
            else:
                path = f"/proc/self/fd/{dir_fd}/{name}"
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISSOCK(st.st_mode):
            continue
        yield from writer.entry(fsexport.Entry(prefix + name, path, st))
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            if mount is not None:
                child = os.open(mount.source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                continue  # vanished or swapped while we walked
            raise
        try:
            yield from _tree(view, writer, child, here, prefix + name + "/")
        finally:
            os.close(child)


# --------------------------------------------------------------------------- #
# extract (PUT)


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None   # chown everything to this (copyUIDGID); None: the tar's ids


def extract(view: View, path: str, stream: IO[bytes], options: ExtractOptions | None = None) -> None:
    """Extract the tar read from *stream* into the container directory *path*.

    Raises:
        NotFound: *path* does not exist.
        InvalidArgument: *path* is not a directory, is read-only, the tar is not one,
            a member would leave *path*, or would replace a directory by a file (or
            the reverse) with no_overwrite_dir_non_dir.
    """
    options = options or ExtractOptions()
    with locate(view, absolute(path), follow_last=True) as dest:
        if not stat.S_ISDIR(dest.st.st_mode):
            raise InvalidArgument(f"extraction point is not a directory: {path} in container {view.name}")
        why = view.readonly_at(dest.path)
        if why:
            raise InvalidArgument(f"cannot copy to {path} in container {view.name}: {why}")
        target = dest.path
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"not a tar archive (plain, gzip, bzip2 or xz): {exc}") from exc
    with tar:
        try:
            for member in tar:
                _member(view, tar, member, target, options, dirs)
        except tarfile.TarError as exc:
            raise InvalidArgument(f"the archive is not a valid tar: {exc}") from exc
    for cpath, member in reversed(dirs):
        _directory_attributes(view, cpath, member, options)


def owner_of(view: View, user: str) -> tuple[int, int] | None:
    """The uid and gid of the container's User (copyUIDGID), read from its /etc/passwd and /etc/group."""
    if not user:
        return None
    uid, gid, _ = passwd.resolve_user(user, _read_text(view, "/etc/passwd"), _read_text(view, "/etc/group"))
    return uid, gid


def _read_text(view: View, path: str) -> str | None:
    try:
        with locate(view, path, follow_last=True) as loc:
            if not stat.S_ISREG(loc.st.st_mode):
                return None
            with open(f"/proc/self/fd/{loc.fd}", "rb") as f:
                data = f.read(USER_FILE_LIMIT + 1)
            if len(data) > USER_FILE_LIMIT:
                raise FileTooLarge(f"{path} in container {view.name} is larger than {USER_FILE_LIMIT} bytes")
            return data.decode("utf-8", errors="replace")
    except NotFound:
        return None


def _clean_member(name: str) -> str:
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidArgument(f"the archive's entry {name!r} leaves the destination with '..'")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _member(view: View, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str,
            options: ExtractOptions, dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    rel = _clean_member(member.name)
    if not rel:
        if member.isdir():
            dirs.append((target, member))  # "./": the destination's own mode, owner and times
        return
    parent_path, base = posixpath.split(posixpath.join(target, rel))
    with locate(view, parent_path, follow_last=True, create_dirs=True) as parent:
        if not stat.S_ISDIR(parent.st.st_mode):
            raise InvalidArgument(f"cannot extract {member.name!r}: {parent.path} is not a directory "
                                  f"in container {view.name}")
        here = posixpath.join(parent.path, base)
        why = view.readonly_at(here)
        if why:
            raise InvalidArgument(f"cannot copy to {here} in container {view.name}: {why}")
        pfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent.fd)
        try:
            mount = view.mount_at(here)
            if mount is not None:
                _onto_mount(tar, member, mount, here)
                return
            _replace(pfd, base, here, member, options)
            if member.isdir():
                try:
                    fsentries.mkdir_at(pfd, base, 0o755)
                except FileExistsError:
                    pass  # the container put something there since: its attributes are checked last
                dirs.append((here, member))
                return
            _create(view, tar, member, pfd, base, target, options)
        finally:
            os.close(pfd)


def _replace(pfd: int, base: str, here: str, member: tarfile.TarInfo, options: ExtractOptions) -> None:
    """Make room for *member*: keep a directory it merges into, else remove what is there."""
    st = fsentries.lstat_at(pfd, base)
    if st is None:
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir and member.isdir():
        return
    if options.no_overwrite_dir_non_dir:
        if is_dir:
            raise InvalidArgument(f'cannot overwrite directory "{here}" with non-directory "{member.name}"')
        if member.isdir():
            raise InvalidArgument(f'cannot overwrite non-directory "{here}" with directory "{member.name}"')
    fsentries.remove_at(pfd, base)


def _owner(member: tarfile.TarInfo, options: ExtractOptions) -> tuple[int, int]:
    return options.owner if options.owner is not None else (member.uid, member.gid)


def _attrs(member: tarfile.TarInfo, options: ExtractOptions, *, mode: bool = True,
           xattrs: bool = True) -> fsentries.Attrs:
    uid, gid = _owner(member, options)
    return fsentries.Attrs(uid, gid, member.mode & 0o7777 if mode else None, member.mtime,
                        fsentries.pax_xattrs(member.pax_headers) if xattrs else ())


def _create(view: View, tar: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, base: str, target: str,
            options: ExtractOptions) -> None:
    """Make *member* as *base* in the directory *pfd* (emptied by _replace), by name, never followed."""
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = fsentries.create_file_at(pfd, base)
        try:
            fsentries.copy_stream(fd, src)
            fsentries.set_attrs_fd(fd, _attrs(member, options))
        finally:
            os.close(fd)
        return
    if member.issym():
        fsentries.symlink_at(pfd, base, member.linkname)
        fsentries.set_attrs_at(pfd, base, _attrs(member, options, mode=False, xattrs=False))
        return
    if member.islnk():
        link_rel = _clean_member(member.linkname)
        if not link_rel:
            raise InvalidArgument(f"the archive's hard link {member.name!r} names no file")
        try:
            with locate(view, posixpath.join(target, link_rel), follow_last=False) as src_loc:
                fsentries.link_at(src_loc.parent, src_loc.name, pfd, base)
        except NotFound:
            raise InvalidArgument(f"the archive's hard link {member.name!r} names {member.linkname!r}, "
                                  "which it does not hold") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot hard-link {member.name!r} to {member.linkname!r}: "
                                  f"{exc.strerror}") from exc
        return
    if member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        fsentries.mknod_at(pfd, base, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        fsentries.mknod_at(pfd, base, stat.S_IFIFO | (member.mode & 0o7777))
    else:
        raise InvalidArgument(f"the archive's entry {member.name!r} has an unsupported tar type {member.type!r}")
    fsentries.set_attrs_at(pfd, base, _attrs(member, options, xattrs=False))


def _onto_mount(tar: tarfile.TarFile, member: tarfile.TarInfo, mount: MountPoint, here: str) -> None:
    """A member whose path is a mount point: a directory merges, a file replaces a file mount's content."""
    is_dir = os.path.isdir(mount.source)
    if member.isdir() and is_dir:
        return  # the mount's own directory keeps its host mode and owner
    if member.isreg() and not is_dir:
        src = tar.extractfile(member)
        assert src is not None
        with open(mount.source, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        return
    raise InvalidArgument(f"cannot replace {here}: it is a mount point of the container")


def _directory_attributes(view: View, cpath: str, member: tarfile.TarInfo, options: ExtractOptions) -> None:
    if view.mount_at(cpath) is not None:
        return
    try:
        loc = locate(view, cpath, follow_last=False)
    except NotFound:
        return  # replaced later in the archive
    with loc:
        if not stat.S_ISDIR(loc.st.st_mode) or loc.mount is not None:
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=loc.fd)
        try:
            fsentries.set_attrs_fd(fd, _attrs(member, options))
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- #
# The request body as a file, for extraction in a worker thread


class _BodyReader(io.RawIOBase):
    """A blocking reader (for a worker thread) of an async iterator of bytes owned by *loop*."""

    def __init__(self, body: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._it = body.__aiter__()
        self._loop = loop
        self._buf = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes | None:
        try:
            return await self._it.__anext__()
        except StopAsyncIteration:
            return None

    def readinto(self, buf: Any) -> int:
        while not self._buf and not self._eof:
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if chunk is None:
                self._eof = True
            else:
                self._buf = chunk
        n = min(len(buf), len(self._buf))
        buf[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


async def extract_body(view: View, path: str, body: AsyncIterator[bytes], options: ExtractOptions) -> None:
    """extract() of a request body, in a worker thread while the event loop feeds it."""
    reader = io.BufferedReader(_BodyReader(body, asyncio.get_running_loop()), 1 << 20)
    try:
        await asyncio.to_thread(extract, view, path, reader, options)
    except OSError as exc:
        raise _os_error(exc, view) from exc


def _os_error(exc: OSError, view: View) -> BerthError:
    if exc.errno == errno.ENOSPC:
        return InvalidArgument(f"no space left on the device while copying into container {view.name}")
    return InvalidArgument(f"copy into container {view.name} failed: {exc.strerror or exc}"
                           + (f": {exc.filename}" if exc.filename else ""))


__all__ = ["ExtractOptions", "archive", "extract", "extract_body", "owner_of"]
