"""Turn an overlayfs upper directory (a container's changes) into an OCI layer tar.

Strategy: the upper directory already is the diff. overlayfs records what a
container added or changed as ordinary files there, and what it deleted as
markers; the only work is to rewrite the markers into the OCI spelling, which
is the inverse of what berth.image.archive.apply_layer does:

  upper directory                                  layer tar
  char device 0/0 `d/x` (a whiteout)               empty file `d/.wh.x`
  empty file `d/x` with xattr overlay.whiteout     empty file `d/.wh.x`
    (the "xwhiteout" form of Linux 6.7+)
  directory `d` with xattr overlay.opaque = "y"    `d/` then empty file `d/.wh..wh..opq`
  anything else                                    as berth.image.fsexport writes it

(overlay.* means trusted.overlay.*, or user.overlay.* on a `userxattr` mount.)
Two overlayfs features make the upper directory an incomplete diff: a
renamed directory kept as a redirect (overlay.redirect) and a file whose
data stays in a lower layer (overlay.metacopy). berth mounts without them
(redirect_dir=off, metacopy=off); finding either is refused rather than
producing a layer that silently lacks content.

The digests helpers hash a layer while it streams, so one pass gives the
diff_id (sha256 of the uncompressed tar) and, after gzip_chunks, the blob
digest of the compressed form.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from berth.errors import FailedPrecondition, NotFound
from berth.image.fsexport import END_OF_ARCHIVE, TarWriter, coalesce, member, walk

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_XATTR_NS = ("trusted.overlay.", "user.overlay.")


def _overlay_xattrs(path: str) -> dict[str, bytes]:
    """overlayfs' own xattrs on *path*, by short name ("opaque", "whiteout", ...)."""
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        for ns in _XATTR_NS:
            if name.startswith(ns):
                try:
                    out.setdefault(name[len(ns):], os.getxattr(path, name, follow_symlinks=False))
                except OSError:
                    pass
    return out


def _is_whiteout(st: os.stat_result, attrs: dict[str, bytes]) -> bool:
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
        return True
    return stat.S_ISREG(st.st_mode) and st.st_size == 0 and "whiteout" in attrs


def _whiteout_name(name: str, hidden: str) -> str:
    parent = posixpath.dirname(name)
    return posixpath.join(parent, hidden) if parent else hidden


def iter_layer_from_upper(upper: Path | str) -> Iterator[bytes]:
    """The OCI layer tar for the overlayfs upper directory *upper*, in pieces of about 1 MiB.

    Raises:
        NotFound: *upper* is not a directory (raised at the call).
        FailedPrecondition: (while iterating) the upper directory holds an
            overlayfs redirect or metacopy entry, whose content lives in a lower layer.
    """
    if not os.path.isdir(upper):
        raise NotFound(f"layer diff: {os.fspath(upper)} is not a directory (no upper directory for this container)")
    writer = TarWriter()

    def pieces() -> Iterator[bytes]:
        for entry in walk(upper):
            st = entry.st
            attrs = _overlay_xattrs(entry.path)
            if _is_whiteout(st, attrs):
                base = posixpath.basename(entry.name)
                yield member(_whiteout_name(entry.name, WHITEOUT_PREFIX + base), b"", mode=0o600,
                             mtime=int(st.st_mtime), uid=st.st_uid, gid=st.st_gid)
                continue
            if "redirect" in attrs:
                raise FailedPrecondition(
                    f"layer diff: {entry.name!r} in {os.fspath(upper)} is an overlayfs redirect (a renamed "
                    "directory whose content stays in a lower layer); mount overlay with redirect_dir=off")
            if stat.S_ISREG(st.st_mode) and "metacopy" in attrs:
                raise FailedPrecondition(
                    f"layer diff: {entry.name!r} in {os.fspath(upper)} is an overlayfs metacopy file (its "
                    "data stays in a lower layer); mount overlay with metacopy=off")
            yield from writer.entry(entry)
            if stat.S_ISDIR(st.st_mode) and attrs.get("opaque") == b"y":
                yield member(_whiteout_name(entry.name + "/x", OPAQUE), b"", mode=0o600,
                             mtime=int(st.st_mtime), uid=st.st_uid, gid=st.st_gid)
        yield END_OF_ARCHIVE

    return coalesce(pieces())


# --------------------------------------------------------------------------- #
# Digests while streaming


class Hashed:
    """Pass *chunks* through unchanged while hashing them; read .digest and .size after the end.

    Example:
        h = Hashed(iter_layer_from_upper(upper))
        for chunk in h: ingest.write(chunk)
        diff_id = h.digest
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self._done = False
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk
        self._done = True

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of everything passed through.

        Raises:
            RuntimeError: the stream has not been read to its end.
        """
        if not self._done:
            raise RuntimeError("Hashed.digest read before the stream was consumed")
        return "sha256:" + self._hash.hexdigest()


def layer_digests(chunks: Iterable[bytes]) -> tuple[str, int]:
    """Consume *chunks* (an uncompressed layer tar) and return (diff_id, size)."""
    h = Hashed(chunks)
    for _ in h:
        pass
    return h.digest, h.size


def gzip_chunks(chunks: Iterable[bytes], level: int = 6) -> Iterator[bytes]:
    """Gzip *chunks* as one stream, reproducibly (no file name, mtime 0)."""
    # wbits 31 = gzip framing; zlib writes mtime 0 and no name in that header.
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    yield comp.flush()


__all__ = ["Hashed", "OPAQUE", "WHITEOUT_PREFIX", "gzip_chunks", "iter_layer_from_upper", "layer_digests"]
