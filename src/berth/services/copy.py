"""`docker cp`: stat, archive and extract paths in a container's file system.

Strategy: a View is the container's file system as its processes see it --
the root (the mounted overlay) plus its volume and bind mounts, each mapped to
the host path it comes from. Every path is resolved here, in userspace, one
component at a time, with file descriptors: each component is opened with
O_PATH|O_NOFOLLOW relative to the descriptor of its parent, a symlink is read
from its own descriptor and its target resolved again from the container's
root (absolute) or from the directory holding it (relative), and `..` pops
back to the previous descriptor, never above the root. So the kernel never
follows a link for us, a component a running container swaps for a symlink
while we walk is seen as that symlink (and resolved inside the container), and
no path can leave the container's root. A component that is a mount's
destination is replaced by the mount's host source (trusted configuration).

What crosses the boundary:
  stat      HEAD/GET ?path=: the last component is not followed (as `lstat`)
            unless the path ends in "/" or "/."; PathStat is what Docker puts,
            base64 JSON, in X-Docker-Container-Path-Stat (mode in Go's FileMode
            bits, linkTarget the fully resolved container path of a symlink).
  archive   GET: a tar of the path named by its base name ("dir/...", or
            "./..." for "dir/."), walked with directory descriptors so nothing
            below the starting point is followed either; mounts inside the tree
            are walked in place of what they hide. Tar members come from
            berth.image.fsexport (PAX, numeric ids, xattrs, hard links kept).
  extract   PUT: the tar is read as a stream; each member's parent is resolved
            inside the container (missing parents are created), and the member
            is created relative to that directory's descriptor with the
            primitives of berth.host.fstree (O_EXCL, O_NOFOLLOW, *at calls,
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
import base64
import errno
import io
import json
import os
import posixpath
import shutil
import stat
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from berth import timefmt
from berth.errors import BerthError, FileTooLarge, InvalidArgument, NotFound
from berth.host import fstree
from berth.image import fsexport
from berth.oci import passwd

MAX_SYMLINKS = 40
USER_FILE_LIMIT = 4 << 20  # /etc/passwd, /etc/group read for copyUIDGID
STAT_HEADER = "X-Docker-Container-Path-Stat"
ETC_FILES = ("hostname", "hosts", "resolv.conf")  # bind-mounted from the bundle as /etc/<name>

# Go's os.FileMode type bits (what Docker's ContainerPathStat.mode carries).
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_DEVICE = 1 << 26
GO_NAMED_PIPE = 1 << 25
GO_SOCKET = 1 << 24
GO_SETUID = 1 << 23
GO_SETGID = 1 << 22
GO_CHAR_DEVICE = 1 << 21
GO_STICKY = 1 << 20


# --------------------------------------------------------------------------- #
# Pure parts: paths and the stat header


def go_file_mode(st_mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode bits."""
    mode = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= GO_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= GO_SYMLINK
    elif stat.S_ISBLK(st_mode):
        mode |= GO_DEVICE
    elif stat.S_ISCHR(st_mode):
        mode |= GO_DEVICE | GO_CHAR_DEVICE
    elif stat.S_ISFIFO(st_mode):
        mode |= GO_NAMED_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= GO_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_STICKY
    return mode


def absolute(path: str) -> str:
    """*path* as an absolute, cleaned container path that keeps a trailing "/" or "/." (as Docker does)."""
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if (path.endswith("/.") or path == ".") and cleaned != "/":
        return cleaned + "/."
    if path.endswith("/") and cleaned != "/":
        return cleaned + "/"
    return cleaned


def base_name(path: str) -> str:
    """Go's filepath.Base: the last element, "/" for the root, "." for "dir/."."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")] if path else []


@dataclass(frozen=True, slots=True)
class PathStat:
    """What Docker reports about a container path (ContainerPathStat)."""

    name: str
    size: int
    mode: int           # Go FileMode bits
    mtime_ns: int
    link_target: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode,
                "mtime": timefmt.format_ns(self.mtime_ns), "linkTarget": self.link_target}

    def header(self) -> str:
        """The X-Docker-Container-Path-Stat value: base64 of the JSON."""
        return base64.b64encode(json.dumps(self.to_json()).encode()).decode()

    @property
    def is_dir(self) -> bool:
        return bool(self.mode & GO_DIR)


# --------------------------------------------------------------------------- #
# A container's file system


@dataclass(frozen=True, slots=True)
class MountPoint:
    destination: str   # clean absolute container path
    source: str        # host path of a directory or a file
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class View:
    """A container's root plus the mounts over it, as its processes see them."""

    root: str
    mounts: tuple[MountPoint, ...] = ()
    readonly_root: bool = False
    name: str = ""     # the container, for messages

    @classmethod
    def of_container(cls, doc: dict[str, Any], bundle: str, rootfs: str, name: str) -> View:
        """The view of a container record (its Binds entries: binds and volumes) over *rootfs*."""
        mounts = [MountPoint(f"/etc/{n}", os.path.join(bundle, n), False)
                  for n in ETC_FILES if os.path.isfile(os.path.join(bundle, n))]
        for entry in doc.get("Binds") or []:
            if entry.get("Type", "bind") not in ("bind", "volume") or not entry.get("Source"):
                continue
            if os.path.lexists(entry["Source"]):
                mounts.append(MountPoint(posixpath.normpath(entry["Destination"]), entry["Source"],
                                         not entry.get("RW", True)))
        return cls(rootfs, tuple(mounts), bool(doc["HostConfig"].get("ReadonlyRootfs")), name)

    def mount_at(self, path: str) -> MountPoint | None:
        """The mount whose destination is exactly *path* (the last one wins, as in mount order)."""
        found = None
        for m in self.mounts:
            if m.destination == path:
                found = m
        return found

    def readonly_at(self, path: str) -> str:
        """Why *path* may not be written ("" when it may): a read-only mount or root holds it."""
        best: MountPoint | None = None
        for m in self.mounts:
            if path == m.destination or path.startswith(m.destination.rstrip("/") + "/"):
                if best is None or len(m.destination) >= len(best.destination):
                    best = m
        if best is not None:
            return "mounted volume is marked read-only" if best.readonly else ""
        return "container rootfs is marked read-only" if self.readonly_root else ""

    def not_found(self, path: str) -> NotFound:
        return NotFound(f"Could not find the file {path} in container {self.name}")


@dataclass
class Located:
    """A resolved container path: descriptors of the object and its parent (O_PATH), and its lstat."""

    path: str                   # the container path, every followed link resolved
    parent: int                 # O_PATH descriptor of the parent directory (-1 for the root)
    name: str                   # the last component ("" for the root)
    fd: int                     # O_PATH descriptor of the object itself
    st: os.stat_result
    mount: MountPoint | None    # the mount whose destination this is, if any
    _closed: bool = field(default=False, repr=False)

    @property
    def host_path(self) -> str:
        """A host path naming exactly this object (through the parent's descriptor, never re-resolved)."""
        if self.mount is not None:
            return self.mount.source
        if self.parent < 0:
            return f"/proc/self/fd/{self.fd}"
        return f"/proc/self/fd/{self.parent}/{self.name}"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in {self.fd, self.parent}:
                if fd >= 0:
                    os.close(fd)

    def __enter__(self) -> Located:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def locate(view: View, path: str, follow_last: bool, create_dirs: bool = False) -> Located:
    """Resolve *path* inside *view* as the container would (see the module's strategy).

    Args:
        path: a container path (relative paths are taken from "/").
        follow_last: also follow the last component when it is a symlink.
        create_dirs: create missing directories on the way (for extraction), refusing
            read-only places.
    Raises:
        NotFound: a component does not exist (or a non-directory is in the middle).
        InvalidArgument: too many symlinks, or a directory to create is read-only.
    """
    todo = list(reversed(components(path)))
    root = os.open(view.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack: list[tuple[str, int, MountPoint | None]] = [("", root, None)]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[1])
                continue
            here = "/" + "/".join([s[0] for s in stack[1:]] + [name])
            parent = stack[-1][1]
            mount = view.mount_at(here)
            fd = _open_component(view, parent, name, here, mount, create_dirs)
            if fd < 0:
                raise view.not_found(path)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                links += 1
                if links > MAX_SYMLINKS:
                    os.close(fd)
                    raise InvalidArgument(f"{path}: too many levels of symbolic links in container {view.name}")
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                if not target:
                    raise view.not_found(path)  # an empty link names nothing
                if target.startswith("/"):  # from the container's root
                    while len(stack) > 1:
                        os.close(stack.pop()[1])
                todo.extend(reversed(components(target)))  # else from the directory holding the link
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise view.not_found(path)
            stack.append((name, fd, mount))
        for _, fd, _ in stack[:-2]:
            os.close(fd)
        if len(stack) == 1:
            return Located("/", -1, "", root, os.fstat(root), None)
        (name, fd, mount), parent = stack[-1], stack[-2][1]
        resolved = "/" + "/".join(s[0] for s in stack[1:])
        stack.clear()
        return Located(resolved, parent, name, fd, os.fstat(fd), mount)
    except BaseException:
        for _, fd, _ in stack:
            os.close(fd)
        raise


def _open_component(view: View, parent: int, name: str, here: str, mount: MountPoint | None,
                    create: bool) -> int:
    """An O_PATH descriptor of *name* in *parent* (or of the mount's source); -1 if it does not exist."""
    flags = os.O_PATH | os.O_CLOEXEC
    try:
        if mount is not None:
            return os.open(mount.source, flags)
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        if not create or mount is not None:
            return -1
    why = view.readonly_at(here)
    if why:
        raise InvalidArgument(f"cannot create {here} in container {view.name}: {why}")
    try:
        fstree.mkdir_at(parent, name, 0o755)
    except FileExistsError:
        pass  # made (as anything) since we looked: opened unfollowed below, and checked by the caller
    return os.open(name, flags | os.O_NOFOLLOW, dir_fd=parent)


# --------------------------------------------------------------------------- #
# stat


def stat_path(view: View, path: str) -> PathStat:
    """What HEAD /containers/{id}/archive reports for *path*.

    Raises:
        NotFound: "Could not find the file <path> in container <name>".
    """
    abs_path = absolute(path)
    follow = abs_path.endswith("/") or abs_path.endswith("/.")
    with locate(view, abs_path, follow_last=follow) as loc:
        st = loc.st
        target = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                with locate(view, abs_path, follow_last=True) as final:
                    target = final.path
            except NotFound:
                target = _dangling_target(view, loc)
        return PathStat(base_name(abs_path), st.st_size, go_file_mode(st.st_mode), st.st_mtime_ns, target)


def _dangling_target(view: View, loc: Located) -> str:
    """A symlink whose target does not exist: its target as a cleaned container path."""
    text = os.readlink("", dir_fd=loc.fd)
    start = "/" if text.startswith("/") else posixpath.dirname(loc.path)
    return posixpath.normpath(posixpath.join(start, text))


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
                    fstree.mkdir_at(pfd, base, 0o755)
                except FileExistsError:
                    pass  # the container put something there since: its attributes are checked last
                dirs.append((here, member))
                return
            _create(view, tar, member, pfd, base, target, options)
        finally:
            os.close(pfd)


def _replace(pfd: int, base: str, here: str, member: tarfile.TarInfo, options: ExtractOptions) -> None:
    """Make room for *member*: keep a directory it merges into, else remove what is there."""
    st = fstree.lstat_at(pfd, base)
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
    fstree.remove_at(pfd, base)


def _owner(member: tarfile.TarInfo, options: ExtractOptions) -> tuple[int, int]:
    return options.owner if options.owner is not None else (member.uid, member.gid)


def _attrs(member: tarfile.TarInfo, options: ExtractOptions, *, mode: bool = True,
           xattrs: bool = True) -> fstree.Attrs:
    uid, gid = _owner(member, options)
    return fstree.Attrs(uid, gid, member.mode & 0o7777 if mode else None, member.mtime,
                        fstree.pax_xattrs(member.pax_headers) if xattrs else ())


def _create(view: View, tar: tarfile.TarFile, member: tarfile.TarInfo, pfd: int, base: str, target: str,
            options: ExtractOptions) -> None:
    """Make *member* as *base* in the directory *pfd* (emptied by _replace), by name, never followed."""
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = fstree.create_file_at(pfd, base)
        try:
            fstree.copy_stream(fd, src)
            fstree.set_attrs_fd(fd, _attrs(member, options))
        finally:
            os.close(fd)
        return
    if member.issym():
        fstree.symlink_at(pfd, base, member.linkname)
        fstree.set_attrs_at(pfd, base, _attrs(member, options, mode=False, xattrs=False))
        return
    if member.islnk():
        link_rel = _clean_member(member.linkname)
        if not link_rel:
            raise InvalidArgument(f"the archive's hard link {member.name!r} names no file")
        try:
            with locate(view, posixpath.join(target, link_rel), follow_last=False) as src_loc:
                fstree.link_at(src_loc.parent, src_loc.name, pfd, base)
        except NotFound:
            raise InvalidArgument(f"the archive's hard link {member.name!r} names {member.linkname!r}, "
                                  "which it does not hold") from None
        except OSError as exc:
            raise InvalidArgument(f"cannot hard-link {member.name!r} to {member.linkname!r}: "
                                  f"{exc.strerror}") from exc
        return
    if member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        fstree.mknod_at(pfd, base, kind | (member.mode & 0o7777), os.makedev(member.devmajor, member.devminor))
    elif member.isfifo():
        fstree.mknod_at(pfd, base, stat.S_IFIFO | (member.mode & 0o7777))
    else:
        raise InvalidArgument(f"the archive's entry {member.name!r} has an unsupported tar type {member.type!r}")
    fstree.set_attrs_at(pfd, base, _attrs(member, options, xattrs=False))


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
            fstree.set_attrs_fd(fd, _attrs(member, options))
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


__all__ = [
    "ExtractOptions", "Located", "MountPoint", "PathStat", "View", "absolute", "archive", "base_name",
    "extract", "extract_body", "go_file_mode", "locate", "owner_of", "stat_path",
]
