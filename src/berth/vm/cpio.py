"""Writer of the cpio "newc" archive format, the format of a Linux initramfs.

Strategy: pure and in memory. Each entry is a 110-byte ASCII header (magic
"070701" and thirteen 8-digit hex fields), the NUL-terminated name padded to a
multiple of 4, then the data padded to a multiple of 4; the archive ends with an
entry named "TRAILER!!!". Names are written without a leading slash, parents
must be added before children (the kernel does not create missing directories),
and inode numbers are handed out sequentially so no two entries look like hard
links. Only what an initramfs needs: regular files, directories, symlinks and
device nodes, each with its own mode, uid and gid.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_LEN = 110


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


@dataclass
class CpioWriter:
    """Collects entries; `getvalue()` returns the archive with its trailer."""

    mtime: int = 0
    _parts: list[bytes] = field(default_factory=list)
    _ino: int = 1
    _names: set[str] = field(default_factory=set)
    _closed: bool = False

    def _entry(self, name: str, mode: int, data: bytes = b"", *, uid: int = 0, gid: int = 0,
               nlink: int = 1, rdev: tuple[int, int] = (0, 0)) -> None:
        if self._closed:
            raise InvalidArgument("cpio archive already has its trailer")
        name = name.strip("/") if name != TRAILER else name
        if not name or "\0" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise InvalidArgument(f"invalid cpio entry name {name!r}")
        if name != TRAILER:
            if name in self._names:
                raise InvalidArgument(f"duplicate cpio entry {name!r}")
            self._names.add(name)
        raw_name = name.encode() + b"\0"
        fields = (
            self._ino if name != TRAILER else 0, mode, uid, gid, nlink, self.mtime, len(data),
            0, 0,  # devmajor, devminor of the file system holding the file: irrelevant
            rdev[0], rdev[1], len(raw_name), 0,  # checksum: 0 for "newc"
        )
        for value in fields:
            if not 0 <= value <= 0xFFFFFFFF:
                raise InvalidArgument(f"cpio header field out of range in {name!r}: {value}")
        header = MAGIC + b"".join(b"%08X" % v for v in fields)
        assert len(header) == HEADER_LEN
        self._parts += [header, raw_name, b"\0" * _pad4(HEADER_LEN + len(raw_name)),
                        bytes(data), b"\0" * _pad4(len(data))]
        self._ino += 1

    def add_dir(self, name: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0) -> None:
        self._entry(name, stat.S_IFDIR | (mode & 0o7777), uid=uid, gid=gid, nlink=2)

    def add_file(self, name: str, data: bytes, mode: int = 0o644, *, uid: int = 0, gid: int = 0) -> None:
        self._entry(name, stat.S_IFREG | (mode & 0o7777), data, uid=uid, gid=gid)

    def add_symlink(self, name: str, target: str, *, uid: int = 0, gid: int = 0) -> None:
        if not target:
            raise InvalidArgument(f"empty symlink target for {name!r}")
        self._entry(name, stat.S_IFLNK | 0o777, target.encode(), uid=uid, gid=gid)

    def add_chardev(self, name: str, major: int, minor: int, mode: int = 0o600, *,
                    uid: int = 0, gid: int = 0) -> None:
        self._entry(name, stat.S_IFCHR | (mode & 0o7777), uid=uid, gid=gid, rdev=(major, minor))

    def add_blockdev(self, name: str, major: int, minor: int, mode: int = 0o600, *,
                     uid: int = 0, gid: int = 0) -> None:
        self._entry(name, stat.S_IFBLK | (mode & 0o7777), uid=uid, gid=gid, rdev=(major, minor))

    def getvalue(self) -> bytes:
        """Return the archive, closing it with the trailer (further adds are refused)."""
        if not self._closed:
            self._entry(TRAILER, 0, nlink=1)
            self._closed = True
        return b"".join(self._parts)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    mode: int
    uid: int
    gid: int
    rdev: tuple[int, int]
    data: bytes


def read_entries(archive: bytes) -> list[Entry]:
    """Parse a "newc" archive (up to its trailer); for tests and debugging."""
    out: list[Entry] = []
    pos = 0
    while True:
        header = archive[pos:pos + HEADER_LEN]
        if len(header) < HEADER_LEN or header[:6] != MAGIC:
            raise InvalidArgument(f"bad cpio header at offset {pos}")
        v = [int(header[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = v[11], v[6]
        pos += HEADER_LEN
        name = archive[pos:pos + namesize - 1].decode()
        pos += namesize + _pad4(HEADER_LEN + namesize)
        data = archive[pos:pos + filesize]
        pos += filesize + _pad4(filesize)
        if name == TRAILER:
            return out
        out.append(Entry(name, v[1], v[2], v[3], (v[9], v[10]), data))
