"""Root-confined file trees: read and write paths inside a directory that is not ours.

A container's root, an image layer, a volume or a build context is a tree a
hostile image or guest has shaped: any component may be a symlink (absolute,
or relative with ``..``) pointing at the host, a FIFO that blocks an open, a
device that never ends, and it may change while we look. Every host-side read
or write of a path inside such a tree goes through this module.

Strategy: a Root holds an O_PATH descriptor of the tree's top, and every path
is resolved relative to it, never by host path.
  * Where the kernel has openat2(2) (Linux 5.6+), the kernel resolves with
    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS: an absolute symlink starts again
    at the root, ``..`` stops at it, /proc magic links are refused.
  * Otherwise (or when asked, for tests) the same rules are applied here, one
    component at a time: each is opened O_PATH|O_NOFOLLOW relative to its
    parent's descriptor; a symlink is read from its own descriptor and its
    target resolved again from the root (absolute) or from the directory
    holding it (relative); ``..`` pops back, never above the root; after 40
    links ELOOP.
Reads take regular files only (opened O_NONBLOCK|O_NOCTTY, then fstat'ed, so
a FIFO never blocks and a device is never read) and are bounded. Writes
replace the final component (a symlink planted there is replaced, never
followed) atomically: temporary file beside it, fsync, renameat. The walk
(for tar export of a live tree) lists and descends with directory descriptors
opened O_NOFOLLOW, so a directory swapped for a symlink is never descended.

All of this is blocking I/O: call it from a thread (asyncio.to_thread) when on
the event loop.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO

from berth.errors import FileTooLarge, InvalidArgument, NotRegularFile, SymlinkLoop

MAX_SYMLINKS = 40
SYS_OPENAT2 = 437  # x86_64 and aarch64 (the unified number of every architecture since 5.1)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


# --------------------------------------------------------------------------- #
# Errors


def kind_of(mode: int) -> str:
    """"a FIFO", "a directory", ... for an st_mode that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


# --------------------------------------------------------------------------- #
# openat2


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_HAVE_OPENAT2: bool | None = None


def _openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = _RESOLVE) -> int:
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, resolve)
    raw = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a rename elsewhere raced the ".." checks; try again
        fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(raw),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def openat2_available() -> bool:
    """True when this kernel (and architecture) has openat2 with RESOLVE_IN_ROOT."""
    global _HAVE_OPENAT2
    if _HAVE_OPENAT2 is None:
        if os.uname().machine not in ("x86_64", "aarch64"):
            _HAVE_OPENAT2 = False
        else:
            try:
                os.close(_openat2(-100, "/", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
                _HAVE_OPENAT2 = True
            except OSError:
                _HAVE_OPENAT2 = False
    return _HAVE_OPENAT2


# --------------------------------------------------------------------------- #
# The root


def parts_of(path: str) -> list[str]:
    """The components of a path inside a root ("" and "." dropped; ".." kept for the resolver)."""
    return [p for p in path.split("/") if p not in ("", ".")]


class Root:
    """A directory whose paths are resolved inside it; a context manager owning an O_PATH descriptor.

    Args:
        path: the host path of the tree's top (trusted: the daemon chose it).
        use_openat2: False forces the userspace walk (tests); None uses openat2 when the kernel has it.
    """

    def __init__(self, path: str | os.PathLike[str], *, use_openat2: bool | None = None) -> None:
        self.path = os.fspath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.openat2 = openat2_available() if use_openat2 is None else use_openat2 and openat2_available()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Root({self.path!r})"

    # Resolution ------------------------------------------------------------
    def open(self, path: str, flags: int, *, follow_last: bool = True) -> int:
        """A descriptor of *path* opened with *flags* (no O_CREAT), resolved inside the root.

        Raises:
            OSError: as openat would (ENOENT, ENOTDIR, ELOOP for a final symlink with
                follow_last False or too many links, ENXIO...).
        """
        flags |= os.O_CLOEXEC
        if not follow_last:
            flags |= os.O_NOFOLLOW
        if self.openat2:
            return _openat2(self.fd, path or ".", flags)
        fd = self._walk(path, follow_last)
        if flags & os.O_PATH:
            if flags & os.O_DIRECTORY and not stat.S_ISDIR(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            return fd
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            # Reopen the object itself (already confined) through its descriptor.
            return os.open(f"/proc/self/fd/{fd}", flags & ~os.O_NOFOLLOW)
        finally:
            os.close(fd)

    def _walk(self, path: str, follow_last: bool) -> int:
        """An O_PATH descriptor of *path*, resolved here one component at a time."""
        todo = list(reversed(parts_of(path)))
        stack = [os.dup(self.fd)]
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
                st = os.fstat(fd)
                if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                    links += 1
                    try:
                        if links > MAX_SYMLINKS:
                            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                        target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    if not target:
                        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo.extend(reversed(parts_of(target)))
                    continue
                if todo and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
                stack.append(fd)
            fd = stack.pop()
            return fd
        finally:
            for fd in stack:
                os.close(fd)

    def open_dir_path(self, path: str) -> int | None:
        """An O_PATH descriptor of the directory *path*, or None when it is missing."""
        try:
            return self.open(path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            return None


def _where(path: str) -> str:
    return "/" + "/".join(parts_of(path))


def _os_error(exc: OSError, path: str) -> Exception:
    """The berth category for a resolution failure, or *exc* itself."""
    if exc.errno == errno.ELOOP:
        return SymlinkLoop(f"{_where(path)}: too many levels of symbolic links")
    if exc.errno == errno.EXDEV:
        return InvalidArgument(f"{_where(path)}: a path through a magic link is refused")
    return exc


# --------------------------------------------------------------------------- #
# Reading


def read_regular(root: Root, path: str, limit: int) -> bytes | None:
    """The content of the regular file *path* (symlinks followed inside the root); None when missing.

    Raises:
        NotRegularFile: a FIFO, device, socket or directory is there ("/etc/passwd is not a regular file").
        FileTooLarge: the file holds more than *limit* bytes.
        SymlinkLoop: too many symlinks on the way.
    """
    opath = _opath(root, path)
    if opath is None:
        return None
    try:
        st = os.fstat(opath)  # look before opening: a device or FIFO is never opened for reading
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{_where(path)} is not a regular file ({kind_of(st.st_mode)})")
        fd = os.open(f"/proc/self/fd/{opath}", _READ_FLAGS)  # the same inode, already confined
    finally:
        os.close(opath)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{_where(path)} is not a regular file ({kind_of(st.st_mode)})")
        if st.st_size > limit:
            raise FileTooLarge(f"{_where(path)} is larger than {limit} bytes")
        chunks: list[bytes] = []
        held = 0
        while True:
            piece = os.read(fd, min(1 << 20, limit + 1 - held))
            if not piece:
                break
            chunks.append(piece)
            held += len(piece)
            if held > limit:  # it grew while we read
                raise FileTooLarge(f"{_where(path)} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def lstat(root: Root, path: str) -> os.stat_result | None:
    """The lstat of *path* (parents resolved inside the root, the last component not followed); None if missing."""
    parent, name = _parent(root, path, create=False)
    if parent is None:
        return None
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(parent)


def stat_in(root: Root, path: str) -> os.stat_result | None:
    """The stat of *path*, symlinks followed inside the root; None when missing.

    Raises:
        SymlinkLoop: too many symlinks on the way.
    """
    fd = _opath(root, path)
    if fd is None:
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _opath(root: Root, path: str) -> int | None:
    """An O_PATH descriptor of *path* (symlinks followed inside the root); None when missing.

    Raises:
        SymlinkLoop: too many symlinks on the way.
    """
    try:
        return root.open(path, os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _os_error(exc, path) from exc


def kind(root: Root, path: str) -> str:
    """"dir", "file" (anything but a directory) or "missing" for *path*, symlinks followed inside the root."""
    st = stat_in(root, path)
    if st is None:
        return "missing"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


# --------------------------------------------------------------------------- #
# Writing


def _parent(root: Root, path: str, create: bool) -> tuple[int | None, str]:
    """(O_PATH descriptor of *path*'s parent directory, last component); (None, name) if it is missing."""
    parts = parts_of(path)
    if not parts or parts[-1] == "..":
        raise InvalidArgument(f"{_where(path)}: names no file inside the root")
    dirname = "/".join(parts[:-1])
    if create:
        return mkdirs(root, dirname), parts[-1]
    try:
        return root.open(dirname, os.O_PATH | os.O_DIRECTORY), parts[-1]
    except (FileNotFoundError, NotADirectoryError):
        return None, parts[-1]
    except OSError as exc:
        raise _os_error(exc, path) from exc


def mkdirs(root: Root, path: str, mode: int = 0o755, _hops: int = 0) -> int:
    """Make the directory *path* and its missing parents inside the root; its O_PATH descriptor.

    Existing components are resolved inside the root (a symlink to a directory is
    followed, inside; a dangling one is followed and its target made, inside).

    Raises:
        InvalidArgument: a component is not a directory; SymlinkLoop on loops.
    """
    parts = parts_of(path)
    fd = os.dup(root.fd)
    done: list[str] = []
    try:
        for i, name in enumerate(parts):
            done.append(name)
            sub = "/".join(done)
            try:
                nxt = root.open(sub, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                if name == "..":
                    raise
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:  # a dangling symlink (or a race): make its target, inside
                    try:
                        target = os.readlink(name, dir_fd=fd)
                    except OSError as exc:
                        raise InvalidArgument(f"{_where(sub)}: cannot be made a directory") from exc
                    if _hops >= MAX_SYMLINKS:
                        raise SymlinkLoop(f"{_where(sub)}: too many levels of symbolic links") from None
                    rest = "/".join(parts[i + 1:])
                    base = "" if target.startswith("/") else "/".join(done[:-1])
                    os.close(fd)
                    fd = -1
                    return mkdirs(root, posixpath.join("/" + base, target, rest), mode, _hops + 1)
                try:
                    nxt = root.open(sub, os.O_PATH | os.O_DIRECTORY)
                except OSError as exc:
                    raise _os_error(exc, sub) from exc
                os.chmod(f"/proc/self/fd/{nxt}", mode)  # the mode asked for, whatever the umask
            except NotADirectoryError as exc:
                raise InvalidArgument(f"{_where(sub)} is not a directory") from exc
            except OSError as exc:
                raise _os_error(exc, sub) from exc
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def open_dir(root: Root, path: str) -> int | None:
    """A readable directory descriptor (O_RDONLY|O_DIRECTORY) of *path*, resolved inside the root;
    None when it is missing (like every reader here).

    Raises:
        InvalidArgument: *path* is there but is not a directory; SymlinkLoop: a link loop.
    """
    try:
        return root.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    except NotADirectoryError as exc:
        raise InvalidArgument(f"{_where(path)} is not a directory") from exc
    except OSError as exc:
        raise _os_error(exc, path) from exc


def write_file(root: Root, path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace whatever is at *path* inside the root with a regular file holding *data*, atomically.

    Parents are resolved inside the root and made when missing; the final component
    is replaced by renameat (a symlink there is replaced, never followed; an empty
    directory is removed first).

    Raises:
        NotRegularFile: a non-empty directory is at *path*.
        InvalidArgument: a parent is not a directory; SymlinkLoop.
    """
    parent, name = _parent(root, path, create=True)
    assert parent is not None
    try:
        tmp = f".berth-tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=parent)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except (IsADirectoryError, OSError) as exc:
                if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise
                try:
                    os.rmdir(name, dir_fd=parent)
                except OSError:
                    raise NotRegularFile(f"{_where(path)} is not a regular file (a directory)") from exc
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=parent)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(parent)


# --------------------------------------------------------------------------- #
# Creating entries at a directory descriptor (the tar extractors)
#
# An extractor holds a descriptor of the directory a member goes into (reached
# with mkdirs, open_beneath or open_dir_at, never by a joined host path) and
# makes the member there by name: nothing below follows a symlink in the last
# component, so a name a container or an earlier member turned into a symlink
# is replaced or refused, never written through.


class NotADirectoryBelow(InvalidArgument):
    """open_beneath met a component that is a symlink or not a directory."""

    def __init__(self, part: str, what: str) -> None:
        super().__init__(f"{part!r} is {what}")
        self.part = part
        self.what = what    # "a symlink" or "not a directory"


def open_beneath(dir_fd: int, parts: list[str], *, create: bool = False, mode: int = 0o755) -> int:
    """A readable descriptor of the directory *parts* below *dir_fd*, following no symlink at all.

    Each component is opened O_DIRECTORY|O_NOFOLLOW relative to the previous one
    (missing ones are made with *mode* when *create*); ".." is refused.

    Raises:
        NotADirectoryBelow: a component is a symlink or not a directory.
        FileNotFoundError: a component is missing and *create* is False.
    """
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise InvalidArgument(f"{part!r} is not a name of a directory")
            try:
                nxt = open_dir_at(fd, part)
            except FileNotFoundError:
                if not create:
                    raise
                mkdir_at(fd, part, mode)
                nxt = open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_dir_at(dir_fd: int, name: str) -> int:
    """A readable descriptor of the directory *name* in *dir_fd*, the name never followed.

    Raises:
        FileNotFoundError: nothing is there.
        NotADirectoryBelow: a symlink or another non-directory is there.
    """
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise exc from None  # swapped again: report what was seen first
        raise NotADirectoryBelow(name, "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory") from None


def mkdir_at(dir_fd: int, name: str, mode: int = 0o755) -> bool:
    """Make the directory *name* in *dir_fd* with exactly *mode* (whatever the umask); False if one is there.

    Raises:
        FileExistsError: something else (a symlink, a file) is there.
    """
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
    except FileExistsError:
        st = lstat_at(dir_fd, name)
        if st is not None and stat.S_ISDIR(st.st_mode):
            return False
        raise  # something else, or it moved away since
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)  # the very directory just made
    finally:
        os.close(fd)
    return True


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """The lstat of *name* in *dir_fd*; None when it is missing."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove_at(dir_fd: int, name: str) -> None:
    """Remove whatever is at *name* in *dir_fd* (a directory with its content, walked by descriptor)."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        child = open_dir_at(dir_fd, name)
    except (FileNotFoundError, NotADirectoryBelow):  # swapped since: remove what is there now
        remove_at(dir_fd, name)
        return
    try:
        for entry in os.listdir(child):
            remove_at(child, entry)
    finally:
        os.close(child)
    os.rmdir(name, dir_fd=dir_fd)


def create_file_at(dir_fd: int, name: str) -> int:
    """A write descriptor of a new regular file *name* in *dir_fd* (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600).

    Raises:
        FileExistsError: anything (a symlink included) is already there.
    """
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=dir_fd)


def copy_stream(fd: int, src: IO[bytes], chunk: int = 1 << 20) -> int:
    """Write everything read from *src* to *fd*, a chunk at a time; the bytes written."""
    total = 0
    while data := src.read(chunk):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        total += len(data)
    return total


def symlink_at(dir_fd: int, name: str, target: str) -> None:
    """A symlink *name* in *dir_fd* pointing at *target* (stored as is: never resolved by us)."""
    os.symlink(target, name, dir_fd=dir_fd)


def mknod_at(dir_fd: int, name: str, mode: int, device: int = 0) -> None:
    """A device node or FIFO (S_IFCHR, S_IFBLK or S_IFIFO in *mode*) *name* in *dir_fd*."""
    os.mknod(name, mode, device, dir_fd=dir_fd)


def link_at(src_dir_fd: int, src_name: str, dir_fd: int, name: str) -> None:
    """A hard link *name* in *dir_fd* to the entry *src_name* of *src_dir_fd* (a symlink there is linked, not
    followed)."""
    os.link(src_name, name, src_dir_fd=src_dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)


@dataclass(frozen=True, slots=True)
class Attrs:
    """What a tar member says about an entry beyond its content."""

    uid: int
    gid: int
    mode: int | None                      # permission bits (07777); None leaves them
    mtime: float
    xattrs: tuple[tuple[str, bytes], ...] = ()


def set_attrs_fd(fd: int, attrs: Attrs) -> None:
    """Owner, mode, xattrs (failures ignored, as tar does) and times of an open file or directory."""
    os.fchown(fd, attrs.uid, attrs.gid)
    if attrs.mode is not None:
        os.fchmod(fd, attrs.mode)
    for key, value in attrs.xattrs:
        try:
            os.setxattr(fd, key, value)
        except OSError:
            pass
    os.utime(fd, (attrs.mtime, attrs.mtime))


def set_attrs_at(dir_fd: int, name: str, attrs: Attrs) -> None:
    """set_attrs_fd for *name* in *dir_fd* without opening it (symlinks, devices, FIFOs), the name never
    followed: the entry is pinned O_PATH|O_NOFOLLOW and changed through that descriptor; a symlink keeps
    its (meaningless) mode."""
    pinned = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.chown(name, attrs.uid, attrs.gid, dir_fd=dir_fd, follow_symlinks=False)
        is_link = stat.S_ISLNK(os.fstat(pinned).st_mode)
        if attrs.mode is not None and not is_link:
            os.chmod(f"/proc/self/fd/{pinned}", attrs.mode)  # the very inode pinned
        # The entry by name in its pinned directory, the last component unfollowed.
        where = f"/proc/self/fd/{dir_fd}/{name}"
        for key, value in attrs.xattrs:
            try:
                os.setxattr(where, key, value, follow_symlinks=False)
            except OSError:
                pass
        os.utime(name, (attrs.mtime, attrs.mtime), dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(pinned)


def pax_xattrs(pax_headers: Mapping[str, str]) -> tuple[tuple[str, bytes], ...]:
    """The SCHILY.xattr.* records of a tar member's PAX headers, as (name, value) pairs."""
    return tuple((key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
                 for key, value in pax_headers.items() if key.startswith("SCHILY.xattr."))


# --------------------------------------------------------------------------- #
# Walking


@dataclass(frozen=True, slots=True)
class WalkEntry:
    """One entry found by walk(): valid (its dir_fd open) until the walk moves on."""

    name: str             # path relative to the walk's top, "/"-separated
    dir_fd: int           # readable descriptor of the directory holding it
    base: str             # its name in that directory
    st: os.stat_result    # its lstat

    @property
    def proc_path(self) -> str:
        """A host path naming exactly this entry through its directory's descriptor (last component unfollowed)."""
        return f"/proc/self/fd/{self.dir_fd}/{self.base}"

    def open(self) -> int | None:
        """The entry, a regular file, opened for reading relative to its directory (see open_regular_at);
        None if it vanished or is no longer a regular file."""
        return open_regular_at(self.dir_fd, self.base)


def open_regular_at(dir_fd: int | None, name: str) -> int | None:
    """A read descriptor of the regular file *name* (in *dir_fd*, or a host path when None), the last
    component never followed; None when it is missing, a symlink, or anything but a regular file.

    The object is pinned with O_PATH and fstat'ed before it is opened for reading (through
    /proc/self/fd, the same inode), so a device node a container swapped in is never opened
    (no side effect of a device's open) and a FIFO never blocks.
    """
    try:
        pinned = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(pinned).st_mode):
            return None
        return os.open(f"/proc/self/fd/{pinned}", _READ_FLAGS)
    finally:
        os.close(pinned)


MAX_WALK_DEPTH = 16384  # directories deep; one open descriptor each while walked


class TreeTooDeep(InvalidArgument):
    """A walked tree nests deeper than MAX_WALK_DEPTH."""


def walk(dir_fd: int, prefix: str = "") -> Iterator[WalkEntry]:
    """Every entry below the directory *dir_fd* (not itself), names sorted, each directory before its content.

    Lists and descends by descriptor: a subdirectory is opened O_NOFOLLOW|O_DIRECTORY
    relative to its parent, so one swapped for a symlink (or a file) after it was listed
    is skipped, never followed. Entries that vanish are skipped. *dir_fd* stays the caller's.
    The walk keeps its own stack, not Python's: a tree nested thousands deep (a container can
    make one) is walked like any other, holding one descriptor per level, up to MAX_WALK_DEPTH.

    Raises:
        TreeTooDeep: the tree nests deeper than MAX_WALK_DEPTH.
    """
    stack: list[tuple[int, Iterator[str], str]] = []  # (directory fd, names still to visit, prefix)
    names = _sorted_names(dir_fd)
    if names is None:
        return
    stack.append((dir_fd, iter(names), prefix))
    try:
        while stack:
            fd, pending, where = stack[-1]
            name = next(pending, None)
            if name is None:
                stack.pop()
                if fd != dir_fd:
                    os.close(fd)
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield WalkEntry(where + name, fd, name, st)
            if not stat.S_ISDIR(st.st_mode):
                continue
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    continue  # vanished or swapped for a symlink/file since listed
                raise
            cst = os.fstat(child)
            children = _sorted_names(child) if (cst.st_dev, cst.st_ino) == (st.st_dev, st.st_ino) else None
            if children is None:  # another directory was moved in (walk what was listed, or nothing), or gone
                os.close(child)
                continue
            if len(stack) >= MAX_WALK_DEPTH:
                os.close(child)
                raise TreeTooDeep(f"{where + name}: the tree nests more than {MAX_WALK_DEPTH} directories deep")
            stack.append((child, iter(children), where + name + "/"))
    finally:
        for fd, _, _ in stack:
            if fd != dir_fd:
                os.close(fd)


def _sorted_names(dir_fd: int) -> list[str] | None:
    try:
        return sorted(os.listdir(dir_fd))
    except (FileNotFoundError, NotADirectoryError):
        return None


__all__ = [
    "Attrs", "FileTooLarge", "MAX_SYMLINKS", "NotADirectoryBelow", "NotRegularFile", "Root", "SymlinkLoop",
    "TreeTooDeep", "WalkEntry", "copy_stream", "create_file_at", "kind", "kind_of", "link_at", "lstat", "lstat_at", "mkdir_at",
    "mkdirs", "mknod_at", "open_beneath", "open_dir", "open_dir_at", "open_regular_at", "openat2_available",
    "parts_of", "pax_xattrs", "read_regular", "remove_at", "set_attrs_at", "set_attrs_fd", "stat_in",
    "symlink_at", "walk", "write_file",
]
