"""The build context: the tree that a build's COPY and ADD instructions read from.

Strategy
--------
POST /build sends the context as a tar (plain, gzip, bzip2, xz or zstd).
Context.extract() unpacks it into a fresh directory with the same care as
berth.image.imagearchive: names are cleaned and may not leave the directory,
nothing is ever written through a symlink, hard links must name an earlier
regular file or symlink, and devices or fifos are refused. Symlinks themselves
may point anywhere: they are only ever read in scope (see below), never
followed by the host.

Then .dockerignore is applied once, on disk: every excluded entry is removed,
so nothing later (globbing, copying, checksums) has to know about it; that is
what a client that filters its own upload produces too. Docker's client always
sends the Dockerfile and .dockerignore, and the daemon reads the Dockerfile
before dropping them from the context when .dockerignore excludes them; so
their bytes are kept in memory first, and read_dockerfile() finds them even
when COPY no longer can.

Paths inside the context are resolved "in scope", as Docker's
FollowSymlinkInScope does: the context root acts as "/", an absolute symlink
target starts again at the root, and ".." never climbs above it. Only the
result, a path made of real directories, is opened on the host.

Source patterns follow Go's filepath.Match (the classic builder's rules):
"*" and "?" never match "/", classes are "[...]" or "[^...]", "\\" escapes,
and a pattern is a glob only when it holds an unescaped "*", "?" or "[".
Globs are matched one path segment at a time, descending only into real
directories, so "dir/*.txt" matches inside dir but not through a symlink.

The checksum of a list of sources (the cache key of a COPY/ADD step) is a
sha256 over, for each source, its path in the context and then every entry
below what it resolves to: relative name, type, permission bits, link target
or device number, and a sha256 of the content. Owners and times are left out:
COPY sets owners itself, and a key must not change when a file is touched.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import logging
import os
import re
import stat
import tarfile
from pathlib import Path
from typing import (
    IO,
    BinaryIO,
    Callable,
    Iterator,
    Mapping,
    Protocol,
    Sequence,
    runtime_checkable,
)

from berth.errors import FailedPrecondition, InvalidArgument
from berth.host import fs, fstree
from berth.image import archive

log = logging.getLogger(__name__)

DOCKERIGNORE = ".dockerignore"
DEFAULT_DOCKERFILE = "Dockerfile"
MAX_SYMLINKS = 255             # hops allowed while resolving one path (Docker's limit)
NOT_FOUND_WHERE = "build context or excluded by .dockerignore"
_CHUNK = 1 << 20
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# --------------------------------------------------------------------------- #
# .dockerignore matchers


@runtime_checkable
class IgnorePatterns(Protocol):
    """What berth.wire.dockerignore.parse() returns (only these two methods are used)."""

    def excluded(self, path: str) -> bool: ...

    def dir_excluded_entirely(self, path: str) -> bool: ...


# A matcher: the parsed patterns, or a bare predicate over slash-separated
# paths relative to the context root (then excluded directories are always
# descended into, in case something below is re-included).
Ignore = IgnorePatterns | Callable[[str], bool]


def parse_dockerignore(text: str) -> IgnorePatterns:
    """Parse .dockerignore text with berth.wire.dockerignore (imported only when needed).

    Raises:
        FailedPrecondition: the matcher module is not installed with this berth.
    """
    try:
        dockerignore = importlib.import_module("berth.wire.dockerignore")
    except ImportError as exc:  # pragma: no cover - only while the module is missing
        raise FailedPrecondition("the build context has a .dockerignore but berth.wire.dockerignore is "
                                 "missing from this installation; reinstall berth") from exc
    patterns: IgnorePatterns = dockerignore.parse(text)
    return patterns


# --------------------------------------------------------------------------- #
# Paths in scope


def split_clean(path: str) -> list[str] | None:
    """The components of *path* taken relative to a root, or None when ".." climbs above it.

    A leading "/" means the root; "." and empty components are dropped, ".." removes
    the previous component (Go's filepath.Join(root, path) followed by a prefix check).
    """
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return parts


LstatFn = Callable[[Sequence[str]], "os.stat_result | None"]
ReadlinkFn = Callable[[Sequence[str]], str]


def resolve_scoped(parts: Sequence[str], lstat: LstatFn, readlink: ReadlinkFn, *,
                   follow_last: bool = True) -> list[str]:
    """Follow symlinks along *parts* inside a root that acts as "/".

    Args:
        parts: components below the root ("..", "." and "" are allowed).
        lstat: the lstat of a symlink-free path below the root, or None when absent.
        readlink: the target of the symlink at a symlink-free path.
        follow_last: also follow a symlink in the last component.
    Returns:
        Components of the resolved path; every one but the last is a directory or absent
        (the path may not exist).
    Raises:
        InvalidArgument: more than MAX_SYMLINKS symlinks on the way (a loop).
    """
    done: list[str] = []
    todo = [p for p in parts if p not in ("", ".")]
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        candidate = [*done, name]
        st = lstat(candidate)
        if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links resolving /{'/'.join(parts)}; "
                                      "break the symlink loop")
            target = readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done = candidate
    return done


def _host_lstat(root: str) -> LstatFn:
    def lstat(parts: Sequence[str]) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(root, *parts))
        except (FileNotFoundError, NotADirectoryError):
            return None
    return lstat


def _host_readlink(root: str) -> ReadlinkFn:
    def readlink(parts: Sequence[str]) -> str:
        return os.readlink(os.path.join(root, *parts))
    return readlink


def resolve_in_dir(root: Path | str, parts: Sequence[str], *, follow_last: bool = True) -> list[str]:
    """resolve_scoped() over a directory on the host (a build context, a stage's root)."""
    top = os.fspath(root)
    return resolve_scoped(parts, _host_lstat(top), _host_readlink(top), follow_last=follow_last)


def real_path(root: Path | str, path: Path | str) -> Path:
    """Where the source *path* (as find_sources returned it) really is: symlinks followed in scope.

    The paths find_sources returns are lexical; opening them directly would let the host
    follow a symlink out of *root*. This one is made of real directories below *root*
    (the file itself may be missing).

    Raises:
        InvalidArgument: *path* is outside *root*.
    """
    parts = relative_parts(root, path)
    if parts is None:
        raise InvalidArgument(f"forbidden path outside the build context: {os.fspath(path)}")
    return Path(os.fspath(root), *resolve_in_dir(root, parts))


def relative_parts(root: Path | str, path: Path | str) -> list[str] | None:
    """The components of *path* below *root* (absolute, or relative to root), or None when outside."""
    text = os.fspath(path)
    if text.startswith("/"):
        top = os.path.abspath(root)
        text = os.path.normpath(text)
        if text != top and not text.startswith(top.rstrip("/") + "/"):
            return None
        text = text[len(top):]
    return split_clean(text)


# --------------------------------------------------------------------------- #
# Globs with Go's filepath.Match rules


def has_wildcards(pattern: str) -> bool:
    """True when *pattern* holds an unescaped "*", "?" or "[" (Docker's containsWildcards)."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


class _BadPattern(ValueError):
    pass


def _class_char(seg: str, i: int) -> tuple[str, int]:
    """One character of a [...] class at seg[i] (escape allowed); returns it and the next index."""
    if i >= len(seg) or seg[i] in "-]":
        raise _BadPattern
    if seg[i] == "\\":
        i += 1
        if i >= len(seg):
            raise _BadPattern
    if i + 1 >= len(seg):  # the class must be closed after this character
        raise _BadPattern
    return seg[i], i + 1


def segment_regex(seg: str) -> re.Pattern[str]:
    """A regex matching one path segment as Go's filepath.Match matches it.

    Raises:
        ValueError: the pattern is malformed (an unclosed class, a trailing "\\").
    """
    out: list[str] = []
    i = 0
    while i < len(seg):
        ch = seg[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            i += 1
            if i >= len(seg):
                raise _BadPattern
            out.append(re.escape(seg[i]))
        elif ch == "[":
            i += 1
            negate = i < len(seg) and seg[i] == "^"
            if negate:
                i += 1
            ranges: list[str] = []
            first = True
            while True:
                if i < len(seg) and seg[i] == "]" and not first:
                    break
                lo, i = _class_char(seg, i)
                hi = lo
                if seg[i] == "-":
                    hi, i = _class_char(seg, i + 1)
                first = False
                if lo <= hi:
                    ranges.append(f"\\U{ord(lo):08x}-\\U{ord(hi):08x}")
            if ranges:
                out.append(("[^" if negate else "[") + "".join(ranges) + "]")
            else:
                out.append("." if negate else "(?!)")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _glob(root: str, regexes: Sequence[re.Pattern[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(prefix: list[str], depth: int) -> None:
        try:
            names = sorted(os.listdir(os.path.join(root, *prefix)))
        except (FileNotFoundError, NotADirectoryError):
            return
        last = depth == len(regexes) - 1
        for name in names:
            if not regexes[depth].fullmatch(name):
                continue
            parts = [*prefix, name]
            if last:
                found.append(parts)
                continue
            try:
                st = os.lstat(os.path.join(root, *parts))
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(parts, depth + 1)

    walk([], 0)
    return found


def find_sources(root: Path | str, patterns: Sequence[str], *, instruction: str = "COPY",
                 where: str = NOT_FOUND_WHERE) -> list[Path]:
    """The paths that COPY/ADD source *patterns* name below *root*, in Docker's order.

    Args:
        root: the directory sources are read from (a build context, or a stage's root).
        patterns: the source arguments as written ("*.txt", "dir/", "/abs", "."); a
            leading "/" means *root*.
        instruction: "COPY" or "ADD", for error messages.
        where: how messages name *root* when something is missing.
    Returns:
        Absolute paths below *root*, not resolved (a symlink is returned as itself, so
        that COPY names the copy after it): never open them directly, use real_path();
        each pattern's matches in walk order, duplicates dropped.
    Raises:
        InvalidArgument: a pattern leaves *root* with "..", is a malformed glob, or names
            nothing.
    """
    top = os.fspath(root)
    out: list[Path] = []
    seen: set[str] = set()
    for pattern in patterns:
        parts = split_clean(pattern)
        if parts is None:
            raise InvalidArgument(f"{instruction} failed: forbidden path outside the build context: {pattern}")
        if has_wildcards(pattern):
            try:
                regexes = [segment_regex(seg) for seg in parts]
            except ValueError:
                raise InvalidArgument(f"{instruction} failed: {pattern!r} is not a valid pattern (Go filepath.Match "
                                      "syntax: *, ?, [a-z], [^a-z], \\ to escape)") from None
            matches = _glob(top, regexes) if regexes else [[]]
        else:
            real = resolve_in_dir(top, parts)
            matches = [parts] if _host_lstat(top)(real) is not None else []
        if not matches:
            raise InvalidArgument(f"{instruction} failed: file not found in {where}: stat {pattern}: "
                                  "file does not exist")
        for match in matches:
            key = "/".join(match)
            if key not in seen:
                seen.add(key)
                out.append(Path(top, *match))
    return out


# --------------------------------------------------------------------------- #
# Checksums


def _field(value: bytes | str) -> bytes:
    data = os.fsencode(value) if isinstance(value, str) else value
    return str(len(data)).encode() + b":" + data + b","


def _file_digest(path: str) -> bytes:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def _hash_tree(h: hashlib._Hash, path: str, name: str) -> None:
    st = os.lstat(path)
    mode = st.st_mode
    h.update(_field(name) + _field(f"{stat.S_IFMT(mode):o} {stat.S_IMODE(mode):o}"))
    if stat.S_ISREG(mode):
        h.update(_field(str(st.st_size)) + _field(_file_digest(path)))
    elif stat.S_ISLNK(mode):
        h.update(_field(os.readlink(path)))
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        h.update(_field(f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"))
    elif stat.S_ISDIR(mode):
        for child in sorted(os.listdir(path)):
            _hash_tree(h, os.path.join(path, child), f"{name}/{child}" if name else child)


def tree_checksum(root: Path | str, paths: Sequence[Path | str]) -> str:
    """The cache key of copying *paths* (as find_sources returned them) out of *root*.

    Returns:
        "sha256:<hex>"; equal for equal names, types, modes, link targets and contents.
    Raises:
        InvalidArgument: a path is outside *root* or no longer exists.
    """
    top = os.fspath(root)
    h = hashlib.sha256()
    for path in paths:
        parts = relative_parts(top, path)
        if parts is None:
            raise InvalidArgument(f"forbidden path outside the build context: {os.fspath(path)}")
        real = resolve_in_dir(top, parts)
        full = os.path.join(top, *real)
        if not os.path.lexists(full):
            raise InvalidArgument(f"file not found in {NOT_FOUND_WHERE}: stat {'/'.join(parts)}: "
                                  "file does not exist")
        h.update(b"source" + _field("/".join(parts)))
        _hash_tree(h, full, "")
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- #
# Extraction


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
        parent = fstree.open_beneath(root_fd, parts[:-1])
    except (FileNotFoundError, fstree.NotADirectoryBelow):
        return None
    st = fstree.lstat_at(parent, parts[-1])
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
                fd = fstree.open_beneath(root_fd, parts)
            except (FileNotFoundError, fstree.NotADirectoryBelow):
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
        st = fstree.lstat_at(parent, base)
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                os.unlink(base, dir_fd=parent)
            fstree.mkdir_at(parent, base, 0o755)
        dirs.append((parts, m))
        return 0
    size = 0
    if m.isreg():
        fstree.remove_at(parent, base)
        src = tar.extractfile(m)
        assert src is not None
        fd = fstree.create_file_at(parent, base)
        try:
            size = fstree.copy_stream(fd, src, _CHUNK)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
        return size
    if m.issym():
        fstree.remove_at(parent, base)
        fstree.symlink_at(parent, base, m.linkname)
    elif m.islnk():
        target_parts = _clean_name(m.linkname, "hard link target")
        target = _existing(root_fd, target_parts)
        if target is None:
            raise _refuse(f"hard link {rel!r} names {m.linkname!r}, which is not an earlier file of the archive")
        target_dir, target_name = target
        try:
            if target_parts != parts:
                fstree.remove_at(parent, base)
                fstree.link_at(target_dir, target_name, parent, base)
        finally:
            os.close(target_dir)
        return 0
    else:
        kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                tarfile.FIFOTYPE: "a fifo"}.get(m.type, f"of tar type {m.type!r}")
        raise _refuse(f"{rel!r} is {kind}; remove it from the context directory or list it in .dockerignore")
    os.utime(base, (m.mtime, m.mtime), dir_fd=parent, follow_symlinks=False)
    return size


# --------------------------------------------------------------------------- #
# Pruning what .dockerignore excludes


def _matcher(ignore: Ignore) -> tuple[Callable[[str], bool], Callable[[str], bool] | None]:
    if isinstance(ignore, IgnorePatterns):
        return ignore.excluded, ignore.dir_excluded_entirely
    return ignore, None


def prune(root: Path | str, ignore: Ignore) -> int:
    """Remove from *root* every entry that *ignore* excludes; return how many were removed.

    A directory that is excluded is removed whole when nothing below it can be
    re-included; otherwise its entries are judged one by one and it is removed only
    if it ends up empty.
    """
    excluded, entirely = _matcher(ignore)
    removed = 0
    # An explicit stack, not recursion: a context may nest directories thousands deep.
    # ("visit", directory, prefix) lists a directory; ("leave", path, rel) removes an
    # excluded directory once what is below it was judged, if it is empty by then;
    # ("drop", path, rel) removes a directory nothing below which can be re-included.
    todo: list[tuple[str, str, str]] = [("visit", os.fspath(root), "")]
    while todo:
        action, directory, prefix = todo.pop()
        if action == "leave":
            if not os.listdir(directory):
                os.rmdir(directory)
                removed += 1
            continue
        drop = action == "drop"
        later: list[tuple[str, str, str]] = []
        for name in sorted(os.listdir(directory)):
            rel = prefix + name
            path = os.path.join(directory, name)
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                if drop or excluded(rel):
                    os.unlink(path)
                    removed += not drop
                continue
            gone = drop or excluded(rel)
            if gone and not drop and entirely is not None and entirely(rel):
                fs.rmtree(path)  # iterative: any depth
                removed += 1
                continue
            later.append(("drop" if drop else "visit", path, rel + "/"))
            if gone:
                later.append(("leave", path, rel))
        todo.extend(reversed(later))  # in name order, each directory's content before its "leave"
    return removed


# --------------------------------------------------------------------------- #
# The context


def _dockerfile_key(name: str) -> list[str] | None:
    return split_clean(name or DEFAULT_DOCKERFILE)


class Context:
    """An extracted build context, with .dockerignore already applied.

    Attributes:
        root: the directory holding the context.
    """

    def __init__(self, root: Path, kept: Mapping[str, bytes] | None = None) -> None:
        """Wrap a directory that already is a context (nothing is pruned; see from_directory).

        Args:
            root: the context directory.
            kept: file bytes read before pruning, by slash-separated path (the Dockerfile).
        """
        self.root = Path(root)
        self._kept = dict(kept or {})

    @classmethod
    def extract(cls, stream: BinaryIO, dest: Path, dockerfile: str = DEFAULT_DOCKERFILE, *,
                ignore: Ignore | None = None) -> Context:
        """Unpack the body of POST /build into *dest* and apply .dockerignore.

        Args:
            stream: the tar (plain, gzip, bzip2, xz or zstd); an empty body is an empty context.
            dest: an empty or missing directory; the caller removes it after the build.
            dockerfile: the `dockerfile` query parameter (path inside the context).
            ignore: the exclusion rules; default: the context's .dockerignore, if any.
        Raises:
            InvalidArgument: not a tar, or a hostile entry (see extract_context).
            FailedPrecondition: the disk filled up.
        """
        extract_context(stream, dest)
        return cls.from_directory(dest, dockerfile, ignore=ignore)

    @classmethod
    def from_directory(cls, root: Path, dockerfile: str = DEFAULT_DOCKERFILE, *,
                       ignore: Ignore | None = None) -> Context:
        """Make a context of the directory *root*, removing (in place) what .dockerignore excludes.

        The Dockerfile and .dockerignore are read first, so read_dockerfile() finds the
        Dockerfile even when .dockerignore excludes it (and COPY then does not).
        """
        top = Path(root)
        kept: dict[str, bytes] = {}
        for name in (dockerfile or DEFAULT_DOCKERFILE, DOCKERIGNORE):
            parts = _dockerfile_key(name)
            if parts is None:
                continue
            data = _read_regular(top, parts)
            if data is not None:
                kept["/".join(parts)] = data
        if ignore is None and DOCKERIGNORE in kept:
            ignore = parse_dockerignore(kept[DOCKERIGNORE].decode("utf-8", "surrogateescape"))
        if ignore is not None:
            count = prune(top, ignore)
            log.debug("build context %s: %d entries excluded by .dockerignore", top, count)
        return cls(top, kept)

    def read_dockerfile(self, name: str = DEFAULT_DOCKERFILE) -> str:
        """The text of the Dockerfile *name* (a path inside the context).

        A missing "Dockerfile" falls back to "dockerfile", as Docker's daemon does. Bytes
        that are not UTF-8 are kept as surrogate escapes; a UTF-8 byte order mark is dropped.

        Raises:
            InvalidArgument: "Cannot locate specified Dockerfile: <name>".
        """
        parts = _dockerfile_key(name)
        candidates = [parts] if parts is not None else []
        if parts == [DEFAULT_DOCKERFILE]:
            candidates.append([DEFAULT_DOCKERFILE.lower()])
        for candidate in candidates:
            data = self._kept.get("/".join(candidate))
            if data is None:
                data = _read_regular(self.root, candidate)
            if data is not None:
                return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {name or DEFAULT_DOCKERFILE}")

    def sources(self, patterns: list[str], *, instruction: str = "COPY") -> list[Path]:
        """The context paths COPY/ADD *patterns* name (see find_sources).

        Raises:
            InvalidArgument: "<instruction> failed: forbidden path outside the build context: ../x",
                or "... file not found in build context or excluded by .dockerignore: stat x: file
                does not exist", or a malformed glob.
        """
        return find_sources(self.root, patterns, instruction=instruction)

    def checksum(self, paths: list[Path]) -> str:
        """The cache key of a COPY/ADD of *paths* from this context (see tree_checksum)."""
        return tree_checksum(self.root, paths)


def _read_regular(root: Path, parts: Sequence[str]) -> bytes | None:
    """The bytes of the regular file at *parts* (resolved in scope), or None."""
    real = resolve_in_dir(root, parts)
    path = os.path.join(os.fspath(root), *real)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


__all__ = [
    "Context", "DEFAULT_DOCKERFILE", "DOCKERIGNORE", "Ignore", "IgnorePatterns", "NOT_FOUND_WHERE",
    "extract_context", "find_sources", "has_wildcards", "members", "parse_dockerignore", "prune", "real_path",
    "relative_parts", "resolve_in_dir", "resolve_scoped", "segment_regex", "split_clean", "tree_checksum",
]
