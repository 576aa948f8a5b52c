"""Root-confined file trees: read and write paths inside a directory that is not ours.

A container's root, an image layer, a volume or a build context is a tree a
hostile image or guest has shaped: any component may be a symlink (absolute,
or relative with ``..``) pointing at the host, a FIFO that blocks an open, a
device that never ends, and it may change while we look. Every host-side read
or write of a path inside such a tree goes through this module, or, below a
directory descriptor already held, through host.fsentries (the extractors'
primitives) and host.fswalk (the walk).

Strategy: a Root holds an O_PATH descriptor of the tree's top, and every path
is resolved relative to it, never by host path.
  * Where the kernel has openat2(2) (Linux 5.6+; host.openat2), it resolves with
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
followed) atomically: temporary file beside it, fsync, renameat.

All of this is blocking I/O: call it from a thread (asyncio.to_thread) when on
the event loop.
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat

from berth.errors import FileTooLarge, InvalidArgument, NotRegularFile, SymlinkLoop
from berth.host.fsentries import READ_FLAGS
from berth.host.openat2 import openat2, openat2_available

MAX_SYMLINKS = 40
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
            return openat2(self.fd, path or ".", flags)
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
        fd = os.open(f"/proc/self/fd/{opath}", READ_FLAGS)  # the same inode, already confined
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


__all__ = [
    "MAX_SYMLINKS", "FileTooLarge", "NotRegularFile", "Root", "SymlinkLoop", "kind", "kind_of", "lstat", "mkdirs",
    "open_dir", "parts_of", "read_regular", "stat_in", "write_file",
]
