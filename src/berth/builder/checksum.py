"""The cache key of a COPY or ADD step: a checksum over what its sources name.

Strategy: a sha256 over, for each source, its path in the context and then
every entry below what it resolves to (in scope: berth.builder.scope):
relative name, type, permission bits, link target or device number, and a
sha256 of the content. Each field is length-prefixed, so no two trees hash
alike by running fields together. Owners and times are left out: COPY sets
owners itself, and a key must not change when a file is touched.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Sequence

from berth.builder.scope import relative_parts, resolve_in_dir
from berth.builder.sources import NOT_FOUND_WHERE
from berth.errors import InvalidArgument

_CHUNK = 1 << 20


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


__all__ = ["tree_checksum"]
