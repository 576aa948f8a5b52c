"""A container's file system as its processes see it, and paths resolved inside it safely (`docker cp`).

Strategy: a View is the root (the mounted overlay) plus the container's
volume and bind mounts, each mapped to the host path it comes from. Every
path is resolved here, in userspace, one component at a time, with file
descriptors: each component is opened with O_PATH|O_NOFOLLOW relative to the
descriptor of its parent, a symlink is read from its own descriptor and its
target resolved again from the container's root (absolute) or from the
directory holding it (relative), and `..` pops back to the previous
descriptor, never above the root. So the kernel never follows a link for us,
a component a running container swaps for a symlink while we walk is seen as
that symlink (and resolved inside the container), and no path can leave the
container's root. A component that is a mount's destination is replaced by
the mount's host source (trusted configuration). `stat_path` is what
HEAD/GET ?path= reports: the last component is not followed (as `lstat`)
unless the path ends in "/" or "/."; PathStat is what Docker puts, base64
JSON, in X-Docker-Container-Path-Stat (api.views.pathstat renders it: mode in
Go's FileMode bits, linkTarget the fully resolved container path of a
symlink). services.copy archives and extracts through these views.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from berth.errors import InvalidArgument, NotFound
from berth.host import fsentries
from berth.wire.mountspec import Mount

MAX_SYMLINKS = 40
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
# Pure parts: paths and the stat


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
    def of_container(cls, binds: Iterable[Mount], readonly_root: bool, bundle: str, rootfs: str,
                     name: str) -> View:
        """The view of a container over *rootfs*: its /etc files and its mounts (*binds*: its binds and volumes
        count, tmpfs mounts do not)."""
        mounts = [MountPoint(f"/etc/{n}", os.path.join(bundle, n), False)
                  for n in ETC_FILES if os.path.isfile(os.path.join(bundle, n))]
        for m in binds:
            if m.type not in ("bind", "volume") or not m.source:
                continue
            if os.path.lexists(m.source):
                mounts.append(MountPoint(posixpath.normpath(m.destination), m.source, not m.rw))
        return cls(rootfs, tuple(mounts), readonly_root, name)

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
        fsentries.mkdir_at(parent, name, 0o755)
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
