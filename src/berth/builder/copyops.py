"""COPY and ADD: writing files from a source tree into a new image layer.

Strategy
--------
The new layer is an empty directory that will sit on top of the image's
layers (an overlay upper directory, later turned into a layer tar). Writes go
only into that directory; the image below is read through an ImageTree (its
overlay lower directories, whiteouts and opaque directories understood), when
the caller gives one.

Destination. A relative destination is taken from the WORKDIR. It is a
directory when it ends in "/" (or is "." / ".."), when several sources are
copied, or when it already is a directory in the image. The destination path
is resolved in the image's scope, symlinks included (so "/bin/" in an image
where /bin -> usr/bin lands in /usr/bin, as in Docker where the copy happens on
the mounted root). Missing directories on the way are created in the layer:
one that exists in the image is recreated with the image's mode and owner (so
the layer does not change it), a new one is 0755 root:root, except the
destination directory itself, which belongs to --chown's owner.

Sources (as berth.builder.context.find_sources returns them) are resolved in
the scope of their root too: a named symlink is followed, but never out of
the root. A directory source copies its contents; a file goes inside a
directory destination under its own (named) base name, or becomes the
destination file. Below a source directory nothing is followed: symlinks are
copied as symlinks, hard links inside one COPY stay hard links, fifos and
devices are recreated, sockets are skipped. Every copied entry keeps its
mode (or takes --chmod), its mtime and its xattrs (but overlayfs' own and
SELinux labels), and is owned by --chown's owner or 0:0. An entry of the
source replaces whatever the layer or image has at its path, except that
directories merge, taking the source directory's mode and owner.

ADD extracts a local tar archive (plain, gzip, bzip2 or xz, recognised by
content, as Docker's ADD does; anything else is copied as a file) into the
destination directory. The archive's own owners and modes are kept (--chown
and --chmod apply to what is copied, not to what is extracted). Names are
cleaned (a leading "/" is dropped, ".." may not leave the destination), a
relative symlink may not point outside the destination, a hard link must
name an earlier entry, no entry is written through a symlink the archive
made (each is made by name in a descriptor of its directory, reached from the
layer's descriptor without following a symlink: berth.host.fstree), and ".wh."
whiteout names are skipped.

download() fetches ADD's URLs with httpx; the caller then copies the file
through the `files` argument of add_into/copy_into, which never unpacks
(Docker does not unpack an archive fetched from a URL).
"""

from __future__ import annotations

import datetime
import email.message
import email.utils
import errno
import logging
import os
import posixpath
import stat
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import httpx

from berth.builder.context import (
    MAX_SYMLINKS,
    relative_parts,
    resolve_in_dir,
    resolve_scoped,
    split_clean,
)
from berth.errors import FailedPrecondition, InvalidArgument, Unavailable
from berth.host import fs, fstree
from berth.oci import passwd as passwd_files

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
_OPAQUE_XATTR = "trusted.overlay.opaque"
_WHITEOUT_PREFIX = ".wh."


# --------------------------------------------------------------------------- #
# Owners


@dataclass(frozen=True, slots=True)
class Owner:
    """Numeric owner of copied files."""

    uid: int
    gid: int


ROOT = Owner(0, 0)


def _numeric(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def resolve_owner(chown: str, passwd: str | None, group: str | None) -> Owner:
    """Turn a --chown value into numeric ids, names looked up in the image's files.

    Forms: "user", "uid", "user:group", "uid:gid", "user:gid", "uid:group". A user
    given alone brings its primary group from passwd (a bare uid brings the same
    number as gid), as BuildKit does. "" is root.

    Args:
        chown: the flag's value.
        passwd: the text of the image's /etc/passwd (None or "" when it has none).
        group: the text of the image's /etc/group (None or "" when it has none).
    Raises:
        InvalidArgument: a name the files do not know, an empty part, or an id out of range.
    """
    if not chown:
        return ROOT
    user_part, sep, group_part = chown.partition(":")
    if not user_part or (sep and not group_part) or ":" in group_part:
        raise InvalidArgument(f"invalid chown string format: {chown!r}; use user, user:group, uid or uid:gid")
    prefix = "unable to convert uid/gid chown string to host mapping"
    uid = _numeric(user_part)
    gid: int | None
    if uid is not None:
        gid = uid
    else:
        entry = next((e for e in passwd_files.parse_passwd(passwd or "") if e.name == user_part), None)
        if entry is None:
            raise InvalidArgument(f"{prefix}: can't find uid for user {user_part}: no such user: {user_part} "
                                  "(add the user in an earlier step, or give a numeric uid)")
        uid, gid = entry.uid, entry.gid
    if group_part:
        gid = _numeric(group_part)
        if gid is None:
            found = next((g for g in passwd_files.parse_group(group or "") if g.name == group_part), None)
            if found is None:
                raise InvalidArgument(f"{prefix}: can't find gid for group {group_part}: no such group: "
                                      f"{group_part} (add the group in an earlier step, or give a numeric gid)")
            gid = found.gid
    for kind, value in (("uid", uid), ("gid", gid)):
        if value > passwd_files.MAX_ID:
            raise InvalidArgument(f"{prefix}: {kind} {value} is out of range 0-{passwd_files.MAX_ID}")
    return Owner(uid, gid)


# --------------------------------------------------------------------------- #
# The image, read through its layers


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _parts(path: str | Sequence[str]) -> list[str]:
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
        parts = _parts(path)
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
            raise FileNotFoundError(errno.ENOENT, "no such file in the image", "/" + "/".join(_parts(path)))
        return os.readlink(hit[0])

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """*path* with its symlinks followed inside the image ("/bin/sh" -> "/usr/bin/dash")."""
        return "/" + "/".join(resolve_scoped(_parts(path), self.lstat, self.readlink, follow_last=follow_last))

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


# --------------------------------------------------------------------------- #
# Writing into the layer


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fs.rmtree(path)
    else:
        os.unlink(path)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(_SKIP_XATTR_PREFIXES):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as exc:
            log.debug("xattr %s not copied to %s: %s", name, dst, exc)


def _copy_data(src_fd: int, dst_fd: int) -> None:
    try:
        while os.sendfile(dst_fd, src_fd, None, _CHUNK) > 0:
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
            raise
    while chunk := os.read(src_fd, _CHUNK):  # the positions are where sendfile stopped
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view):]


def _kind(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return "a file"


class _LayerWriter:
    """Writes one COPY/ADD into the layer directory."""

    def __init__(self, layer: Path, image: ImageTree | None, owner: Owner | None, chmod: int | None,
                 instruction: str) -> None:
        self.layer = os.fspath(layer)
        self.image = image
        self.owner = owner or ROOT
        self.chmod = chmod
        self.instruction = instruction
        self.links: dict[tuple[int, int], str] = {}
        self.dir_times: list[tuple[str, int]] = []

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"{self.instruction} failed: {what}")

    def path(self, parts: Sequence[str]) -> str:
        return os.path.join(self.layer, *parts)

    def layer_lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        try:
            return os.lstat(self.path(parts))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def view_lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        st = self.layer_lstat(parts)
        if st is None and self.image is not None:
            st = self.image.lstat(parts)
        return st

    def view_readlink(self, parts: Sequence[str]) -> str:
        if self.layer_lstat(parts) is not None or self.image is None:
            return os.readlink(self.path(parts))
        return self.image.readlink(parts)

    # -- directories -------------------------------------------------------- #

    def ensure_dir(self, parts: Sequence[str], *, dest: bool = False) -> list[str]:
        """Make the directory /parts exist in the layer, following the image's symlinks.

        Returns its real components. A directory made for the image's own is given the
        image's mode and owner; a new one is 0755 and root's, or --chown's owner for the
        destination directory itself (*dest*).
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
            here = [*done, name]
            mine = self.layer_lstat(here)
            if mine is not None:
                if not stat.S_ISDIR(mine.st_mode):
                    raise self.error(f"cannot write below /{'/'.join(here)}: this {self.instruction} made it "
                                     f"{_kind(mine)}, not a directory")
                done = here
                continue
            theirs = self.image.lstat(here) if self.image is not None else None
            if theirs is not None and stat.S_ISLNK(theirs.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise self.error(f"too many levels of symbolic links at /{'/'.join(here)} in the image")
                assert self.image is not None
                target = self.image.readlink(here)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                continue
            if theirs is not None and not stat.S_ISDIR(theirs.st_mode):
                raise self.error(f"/{'/'.join(here)} is {_kind(theirs)} in the image, not a directory")
            path = self.path(here)
            os.mkdir(path, 0o755)
            if theirs is not None:
                os.lchown(path, theirs.st_uid, theirs.st_gid)
                os.chmod(path, stat.S_IMODE(theirs.st_mode))
            elif dest and not todo:
                os.lchown(path, self.owner.uid, self.owner.gid)
            done = here
        return done

    def resolve(self, parts: Sequence[str]) -> list[str]:
        """*parts* resolved through the layer and the image, the last symlink followed too."""
        return resolve_scoped(parts, self.view_lstat, self.view_readlink, follow_last=True)

    def is_dir(self, parts: Sequence[str]) -> bool:
        st = self.view_lstat(parts)
        return st is not None and stat.S_ISDIR(st.st_mode)

    # -- entries ------------------------------------------------------------ #

    def copy_entry(self, src: str, st: os.stat_result, target: Sequence[str]) -> None:
        """Copy the file *src* (lstat *st*) to /target; the target's parent exists in the layer."""
        dst = self.path(target)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        if stat.S_ISDIR(mode):
            mine = self.layer_lstat(target)
            if mine is not None and not stat.S_ISDIR(mine.st_mode):
                os.unlink(dst)
                mine = None
            if mine is None:
                os.mkdir(dst, 0o700)
            self._finish(src, dst, st)
            self.dir_times.append((dst, st.st_mtime_ns))
            return
        _remove(dst)
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            first = self.links[key]
            if os.path.lexists(first):
                os.link(first, dst, follow_symlinks=False)
                return
        if stat.S_ISREG(mode):
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    _copy_data(src_fd, dst_fd)
                finally:
                    os.close(dst_fd)
            finally:
                os.close(src_fd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(dst, 0o600)
        else:
            return
        if st.st_nlink > 1:
            self.links.setdefault(key, dst)
        self._finish(src, dst, st)
        os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _finish(self, src: str, dst: str, st: os.stat_result) -> None:
        """Owner, then mode (chown clears set-id bits), then xattrs (chown clears capabilities)."""
        os.lchown(dst, self.owner.uid, self.owner.gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))
        _copy_xattrs(src, dst)

    def copy_tree(self, src: str, target: Sequence[str]) -> None:
        """Copy what the directory *src* holds into /target (which exists in the layer)."""
        def walk(directory: str, into: list[str]) -> None:
            for name in sorted(os.listdir(directory)):
                path = os.path.join(directory, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                self.copy_entry(path, st, [*into, name])
                if stat.S_ISDIR(st.st_mode):
                    walk(path, [*into, name])
        walk(src, list(target))

    def finish_dirs(self) -> None:
        """Set the copied directories' mtimes, deepest first (writing inside them changed them)."""
        for path, mtime in reversed(self.dir_times):
            if os.path.isdir(path) and not os.path.islink(path):
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    # -- archives ------------------------------------------------------------ #

    def extract(self, archive: str, shown: str, target: list[str]) -> None:
        """Extract the tar *archive* into /target (which exists in the layer)."""
        def refuse(what: str) -> InvalidArgument:
            return self.error(f"archive {shown} refused: {what}")

        written: dict[str, list[str]] = {}
        dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        layer_fd = os.open(self.layer, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with open(archive, "rb") as f:
                try:
                    with tarfile.open(fileobj=f, mode="r|*") as tar:
                        for m in tar:
                            self._extract_member(tar, m, target, written, dirs, refuse, layer_fd)
                except (tarfile.TarError, EOFError) as exc:
                    raise refuse(f"not a valid tar: {exc}") from exc
                except OSError as exc:
                    if exc.errno is None:
                        raise refuse(f"not a valid compressed tar: {exc}") from exc
                    raise
            for parts, m in reversed(dirs):
                try:  # reached again without following a symlink a later entry put in its way
                    fd = fstree.open_beneath(layer_fd, list(parts))
                except (FileNotFoundError, fstree.NotADirectoryBelow):
                    continue
                try:
                    fstree.set_attrs_fd(fd, fstree.Attrs(m.uid, m.gid, m.mode & 0o7777, m.mtime))
                finally:
                    os.close(fd)
        finally:
            os.close(layer_fd)

    def _extract_member(self, tar: tarfile.TarFile, m: tarfile.TarInfo, target: list[str],
                        written: dict[str, list[str]], dirs: list[tuple[list[str], tarfile.TarInfo]],
                        refuse: Callable[[str], InvalidArgument], layer_fd: int) -> None:
        names = split_clean(m.name)
        if names is None:
            raise refuse(f"entry {m.name!r} leaves the destination with '..'")
        if not names:
            return
        if names[-1].startswith(_WHITEOUT_PREFIX):
            log.debug("ADD: skipping whiteout entry %s", m.name)
            return
        try:
            parent = self.ensure_dir([*target, *names[:-1]])
            pfd = fstree.open_beneath(layer_fd, parent)  # real directories of the layer, none followed
        except InvalidArgument as exc:
            raise refuse(f"entry {m.name!r}: {str(exc).removeprefix(self.instruction + ' failed: ')}") from exc
        try:
            self._make(tar, m, names, [*parent, names[-1]], pfd, written, dirs, refuse, layer_fd)
        finally:
            os.close(pfd)

    def _hard_link_source(self, first: list[str] | None, layer_fd: int) -> tuple[int, str] | None:
        """(descriptor of its directory, name) of the earlier entry a hard link names, reached without
        following a symlink; None when it is gone or is (or links to) a directory."""
        if not first:
            return None
        try:
            fd = fstree.open_beneath(layer_fd, first[:-1])
        except (FileNotFoundError, fstree.NotADirectoryBelow):
            return None
        st = fstree.lstat_at(fd, first[-1])
        if st is not None and stat.S_ISLNK(st.st_mode):
            with fstree.Root(self.layer) as root:
                if fstree.kind(root, "/".join(first)) == "dir":
                    st = None
        if st is None or stat.S_ISDIR(st.st_mode):
            os.close(fd)
            return None
        return fd, first[-1]

    def _make(self, tar: tarfile.TarFile, m: tarfile.TarInfo, names: list[str], here: list[str], pfd: int,
              written: dict[str, list[str]], dirs: list[tuple[list[str], tarfile.TarInfo]],
              refuse: Callable[[str], InvalidArgument], layer_fd: int) -> None:
        """Make the member *m* by name (here[-1]) in its parent directory's descriptor *pfd*."""
        base = here[-1]
        if m.isdir():
            mine = fstree.lstat_at(pfd, base)
            if mine is not None and not stat.S_ISDIR(mine.st_mode):
                os.unlink(base, dir_fd=pfd)
                mine = None
            if mine is None:
                fstree.mkdir_at(pfd, base, 0o700)
            dirs.append((here, m))
            written["/".join(names)] = here
            return
        if m.islnk():
            link_names = split_clean(m.linkname)
            first = written.get("/".join(link_names)) if link_names else None
            source = self._hard_link_source(first, layer_fd)
            if source is None:
                raise refuse(f"hard link {m.name!r} names {m.linkname!r}, which is not an earlier file of the "
                             "archive")
            try:
                if first != here:
                    fstree.remove_at(pfd, base)
                    fstree.link_at(source[0], source[1], pfd, base)
            finally:
                os.close(source[0])
            written["/".join(names)] = here
            return
        fstree.remove_at(pfd, base)
        if m.isreg():
            src = tar.extractfile(m)
            assert src is not None
            fd = fstree.create_file_at(pfd, base)
            try:
                fstree.copy_stream(fd, src, _CHUNK)
            finally:
                os.close(fd)
        elif m.issym():
            if not m.linkname.startswith("/") and split_clean("/".join([*names[:-1], m.linkname])) is None:
                raise refuse(f"symlink {m.name!r} -> {m.linkname!r} points outside the destination")
            fstree.symlink_at(pfd, base, m.linkname)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            fstree.mknod_at(pfd, base, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            fstree.mknod_at(pfd, base, stat.S_IFIFO | 0o600)
        else:
            raise refuse(f"entry {m.name!r} has the unsupported tar type {m.type!r}")
        xattrs = tuple((k, v) for k, v in fstree.pax_xattrs(m.pax_headers) if not k.startswith(_SKIP_XATTR_PREFIXES))
        fstree.set_attrs_at(pfd, base, fstree.Attrs(m.uid, m.gid, None if m.issym() else m.mode & 0o7777,
                                                    m.mtime, xattrs))
        written["/".join(names)] = here


# --------------------------------------------------------------------------- #
# COPY and ADD


def dest_path(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute, cleaned destination and whether it is written as a directory ("/", ".").

    A relative *dest* is taken from *workdir*; ".." stops at "/".
    """
    as_dir = dest in ("", ".", "..") or dest.endswith(("/", "/.", "/.."))
    full = dest if dest.startswith("/") else posixpath.join("/", workdir or "/", dest)
    return posixpath.normpath("/" + full.lstrip("/")), as_dir


def _source(source_root: Path, source: Path, instruction: str) -> tuple[list[str], str, os.stat_result]:
    """The named components of *source*, its resolved path on the host, and that path's lstat."""
    named = relative_parts(source_root, source)
    if named is None:
        raise InvalidArgument(f"{instruction} failed: forbidden path outside the build context: {source}")
    real = resolve_in_dir(source_root, named)
    path = os.path.join(os.fspath(source_root), *real)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidArgument(f"{instruction} failed: file not found in the source: stat {'/'.join(named) or '.'}: "
                              "file does not exist") from None
    return named, path, st


def _is_archive(path: str) -> bool:
    """True when *path* is a tar with at least one entry (plain, gzip, bzip2 or xz): Docker's test."""
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return False


def _copy(layer: Path, sources: Sequence[Path], source_root: Path, dest: str, *, workdir: str,
          dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
          image: ImageTree | None, instruction: str, unpack: bool, files: Sequence[Path]) -> None:
    if not sources and not files:
        raise InvalidArgument(f"{instruction} failed: no source files were specified")
    if chmod is not None and not 0 <= chmod <= 0o7777:
        raise InvalidArgument(f"{instruction} failed: --chmod={chmod:o} is not a file mode (0000-7777)")
    writer = _LayerWriter(layer, image, owner, chmod, instruction)
    path, as_dir = dest_path(dest, workdir)
    real = writer.resolve(_parts(path))
    into_dir = as_dir or len(sources) + len(files) > 1 or dest_is_dir(path) or writer.is_dir(real)
    try:
        for source in sources:
            named, src, st = _source(source_root, source, instruction)
            if stat.S_ISDIR(st.st_mode):
                writer.copy_tree(src, writer.ensure_dir(real, dest=True))
            elif unpack and stat.S_ISREG(st.st_mode) and _is_archive(src):
                writer.extract(src, "/".join(named), writer.ensure_dir(real, dest=True))
            elif into_dir:
                name = named[-1] if named else posixpath.basename(src)
                writer.copy_entry(src, st, [*writer.ensure_dir(real, dest=True), name])
            else:
                if not real:
                    raise writer.error(f"cannot replace / with the file {'/'.join(named)}")
                writer.copy_entry(src, st, [*writer.ensure_dir(real[:-1]), real[-1]])
        for file in files:
            st = os.lstat(file)
            if not stat.S_ISREG(st.st_mode):
                raise writer.error(f"{file} is not a regular file")
            if into_dir:
                writer.copy_entry(os.fspath(file), st, [*writer.ensure_dir(real, dest=True), Path(file).name])
            elif not real:
                raise writer.error(f"cannot replace / with the file {Path(file).name}")
            else:
                writer.copy_entry(os.fspath(file), st, [*writer.ensure_dir(real[:-1]), real[-1]])
        writer.finish_dirs()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FailedPrecondition(f"{instruction} failed: no space left on the device holding {layer}; "
                                     "free some space and build again") from exc
        raise


def copy_into(layer: Path, sources: list[Path], source_root: Path, dest: str, *, workdir: str,
              dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
              image: ImageTree | None = None, instruction: str = "COPY", files: Sequence[Path] = ()) -> None:
    """Carry out COPY: write *sources* into the empty layer directory *layer*.

    Args:
        layer: the new layer's directory (empty; written as root).
        sources: paths below *source_root*, as find_sources/Context.sources return them.
        source_root: the build context's root, or the root of the stage or image of --from.
        dest: the destination as written (after variable expansion).
        workdir: the image's WORKDIR, for a relative *dest*.
        dest_is_dir: whether an absolute path is a directory in the image (symlinks followed).
        owner: --chown's ids (resolve_owner), or None for 0:0.
        chmod: --chmod's mode bits, or None to keep each file's mode.
        image: the image below the layer; with it, symlinks on the destination path are
            followed and directories recreated in the layer keep the image's mode and owner.
        instruction: "COPY" or "ADD", for messages.
        files: more sources that are not below *source_root*: regular files of the daemon's
            (ADD's downloads, heredoc bodies), copied under their own name after *sources*,
            never unpacked; they count towards "several sources make a directory".
    Raises:
        InvalidArgument: a source is missing or outside *source_root*, or the destination
            runs into a file of the image.
        FailedPrecondition: the disk filled up.
    """
    _copy(layer, sources, source_root, dest, workdir=workdir, dest_is_dir=dest_is_dir, owner=owner,
          chmod=chmod, image=image, instruction=instruction, unpack=False, files=files)


def add_into(layer: Path, sources: list[Path], source_root: Path, dest: str, *, workdir: str,
             dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
             image: ImageTree | None = None, files: Sequence[Path] = ()) -> None:
    """Carry out ADD: as copy_into, but local tar archives among *sources* are extracted into *dest*.

    Downloads go in *files*: Docker never unpacks an archive fetched from a URL.

    Raises:
        InvalidArgument: as copy_into, or an archive with an entry that would leave the
            destination, a symlink escaping it, or a hard link to nothing earlier.
    """
    _copy(layer, sources, source_root, dest, workdir=workdir, dest_is_dir=dest_is_dir, owner=owner,
          chmod=chmod, image=image, instruction="ADD", unpack=True, files=files)


# --------------------------------------------------------------------------- #
# ADD <url>


def _usable_name(name: str | None) -> str | None:
    if not name or name.endswith("/"):
        return None
    base = posixpath.basename(name)
    return base if base not in ("", ".", "..") and "\0" not in base else None


def download_name(url: str, content_disposition: str | None) -> str | None:
    """The file name for a download: the URL path's last segment, else Content-Disposition's filename."""
    name = _usable_name(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if name is None and content_disposition:
        msg = email.message.Message()
        msg["content-disposition"] = content_disposition
        name = _usable_name(msg.get_filename())
    return name


def _http_time(value: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (a naive one taken as UTC); None when absent or malformed."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


async def download(url: str, dest_dir: Path, *, fallback_name: str | None = None, timeout: float = 300.0,
                   trust_env: bool = True) -> Path:
    """Fetch *url* for ADD into *dest_dir*; return the file's path.

    Redirects are followed. The name comes from the URL's path, else from the
    Content-Disposition header, else *fallback_name* (the destination's base name when
    the destination is a file). The file is mode 0600 with the mtime of Last-Modified
    (left as is without one). Pass it to add_into in `files`: ADD does not unpack downloads.

    Args:
        url: an http:// or https:// URL.
        dest_dir: an existing directory of the daemon's.
        fallback_name: the name to use when neither the URL nor the server gives one.
        timeout: seconds without progress before giving up.
        trust_env: honour HTTP(S)_PROXY/NO_PROXY from the daemon's environment.
    Raises:
        InvalidArgument: not an http(s) URL, a 4xx answer, too many redirects, or no
            file name to be found.
        Unavailable: the server could not be reached, timed out, or answered 5xx.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"ADD failed: {url} is not an http:// or https:// URL")
    limits = httpx.Timeout(timeout, connect=min(timeout, 30.0))
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=limits, trust_env=trust_env) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code >= 400:
                    category = Unavailable if resp.status_code >= 500 else InvalidArgument
                    raise category(f"ADD failed: GET {url} answered {resp.status_code} {resp.reason_phrase}; "
                                   "check the URL and that the server serves it")
                name = download_name(url, resp.headers.get("content-disposition")) or _usable_name(fallback_name)
                if name is None:
                    raise InvalidArgument(f"ADD failed: cannot determine filename from url: {url}; name the "
                                          "destination file (ADD <url> /path/file)")
                fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
                try:
                    with os.fdopen(fd, "wb") as out:
                        async for chunk in resp.aiter_bytes(_CHUNK):
                            out.write(chunk)
                    os.chmod(tmp, 0o600)
                    when = _http_time(resp.headers.get("last-modified"))
                    if when is not None:
                        os.utime(tmp, (when, when))
                    final = Path(dest_dir, name)
                    os.replace(tmp, final)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                    raise
                return final
    except httpx.InvalidURL as exc:
        raise InvalidArgument(f"ADD failed: {url} is not a valid URL: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise InvalidArgument(f"ADD failed: GET {url}: too many redirects; check the URL") from exc
    except httpx.TimeoutException as exc:
        raise Unavailable(f"ADD failed: GET {url} timed out ({type(exc).__name__}); try again or check the "
                          "server") from exc
    except httpx.HTTPError as exc:
        raise Unavailable(f"ADD failed: GET {url}: {exc or type(exc).__name__}; check that the server is "
                          "reachable from the daemon") from exc


__all__ = [
    "ImageTree", "Owner", "ROOT", "add_into", "copy_into", "dest_path", "download", "download_name",
    "resolve_owner",
]
