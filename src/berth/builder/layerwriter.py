"""Writing one COPY or ADD into a new layer directory: entries, directories on the way, archives.

Strategy: the layer is an empty directory that will sit on top of the image
(an overlay upper directory, later turned into a layer tar); writes go only
there, and the image below is read through an ImageTree. Missing directories
on the way to the destination are made by walking it in scope
(berth.builder.scope), the image's symlinks followed (so "/bin/" where
/bin -> usr/bin lands in /usr/bin, as in Docker where the copy happens on the
mounted root) and never one this COPY made: one that exists in the image is
recreated with the image's mode and owner (so the layer does not change it),
a new one is 0755 root:root, except the destination directory itself, which
belongs to --chown's owner.

Below a source directory nothing is followed: symlinks are copied as
symlinks, hard links inside one COPY stay hard links, fifos and devices are
recreated, sockets are skipped. Every copied entry keeps its mode (or takes
--chmod), its mtime and its xattrs (but overlayfs' own and SELinux labels),
and is owned by --chown's owner or 0:0. An entry replaces whatever the layer
or image has at its path, except that directories merge.

ADD's archives keep their own owners and modes. Names are cleaned (a leading
"/" is dropped, ".." may not leave the destination), a relative symlink may
not point outside the destination, a hard link must name an earlier entry, no
entry is written through a symlink the archive made (each is made by name in
a descriptor of its directory, reached from the layer's descriptor without
following a symlink: berth.host.fsentries), and ".wh." whiteout names are
skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from pathlib import Path
from typing import Callable, Sequence

from berth.builder.imagetree import ImageTree
from berth.builder.owners import ROOT, Owner
from berth.builder.scope import resolve_scoped, split_clean
from berth.errors import InvalidArgument
from berth.host import fs, fsentries, fstree

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SKIP_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
_WHITEOUT_PREFIX = ".wh."


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


class LayerWriter:
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
        def make(here: list[str], theirs: os.stat_result | None, last: bool) -> None:
            if self.layer_lstat(here) is not None:
                return  # a directory this COPY made (_dir_lstat refused anything else)
            if theirs is not None and not stat.S_ISDIR(theirs.st_mode):
                raise self.error(f"/{'/'.join(here)} is {_kind(theirs)} in the image, not a directory")
            path = self.path(here)
            os.mkdir(path, 0o755)
            if theirs is not None:
                os.lchown(path, theirs.st_uid, theirs.st_gid)
                os.chmod(path, stat.S_IMODE(theirs.st_mode))
            elif dest and last:
                os.lchown(path, self.owner.uid, self.owner.gid)

        return resolve_scoped(parts, self._dir_lstat, self.view_readlink, visit=make)

    def _dir_lstat(self, parts: Sequence[str]) -> os.stat_result | None:
        """view_lstat for ensure_dir: what this COPY made must be a directory (its symlinks are never followed)."""
        mine = self.layer_lstat(parts)
        if mine is not None:
            if not stat.S_ISDIR(mine.st_mode):
                raise self.error(f"cannot write below /{'/'.join(parts)}: this {self.instruction} made it "
                                 f"{_kind(mine)}, not a directory")
            return mine
        return self.image.lstat(parts) if self.image is not None else None

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
                    fd = fsentries.open_beneath(layer_fd, list(parts))
                except (FileNotFoundError, fsentries.NotADirectoryBelow):
                    continue
                try:
                    fsentries.set_attrs_fd(fd, fsentries.Attrs(m.uid, m.gid, m.mode & 0o7777, m.mtime))
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
            pfd = fsentries.open_beneath(layer_fd, parent)  # real directories of the layer, none followed
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
            fd = fsentries.open_beneath(layer_fd, first[:-1])
        except (FileNotFoundError, fsentries.NotADirectoryBelow):
            return None
        st = fsentries.lstat_at(fd, first[-1])
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
            mine = fsentries.lstat_at(pfd, base)
            if mine is not None and not stat.S_ISDIR(mine.st_mode):
                os.unlink(base, dir_fd=pfd)
                mine = None
            if mine is None:
                fsentries.mkdir_at(pfd, base, 0o700)
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
                    fsentries.remove_at(pfd, base)
                    fsentries.link_at(source[0], source[1], pfd, base)
            finally:
                os.close(source[0])
            written["/".join(names)] = here
            return
        fsentries.remove_at(pfd, base)
        if m.isreg():
            src = tar.extractfile(m)
            assert src is not None
            fd = fsentries.create_file_at(pfd, base)
            try:
                fsentries.copy_stream(fd, src, _CHUNK)
            finally:
                os.close(fd)
        elif m.issym():
            if not m.linkname.startswith("/") and split_clean("/".join([*names[:-1], m.linkname])) is None:
                raise refuse(f"symlink {m.name!r} -> {m.linkname!r} points outside the destination")
            fsentries.symlink_at(pfd, base, m.linkname)
        elif m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            fsentries.mknod_at(pfd, base, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        elif m.isfifo():
            fsentries.mknod_at(pfd, base, stat.S_IFIFO | 0o600)
        else:
            raise refuse(f"entry {m.name!r} has the unsupported tar type {m.type!r}")
        xattrs = tuple((k, v) for k, v in fsentries.pax_xattrs(m.pax_headers) if not k.startswith(_SKIP_XATTR_PREFIXES))
        fsentries.set_attrs_at(pfd, base, fsentries.Attrs(m.uid, m.gid, None if m.issym() else m.mode & 0o7777,
                                                    m.mtime, xattrs))
        written["/".join(names)] = here


__all__ = ["LayerWriter"]
