"""Tar streams read once, front to back, in big reads: what every extraction of a layer or archive uses.

Strategy: tarfile's stream mode (`r|*`) reads its input 10 KiB at a time and
copies what it holds at every read (a 33 MB file went through ~3,300 reads
and as many joins), and gzip.GzipFile feeds zlib 8 KiB at a time; both cost
more than the decompression and the hashing they wrap. Here:

- `Forward` makes a stream read once look seekable to tarfile's ordinary
  mode (`r:`), which reads a member's data straight from its file object in
  the sizes asked for: a seek forward reads and drops (in bounded chunks), a
  seek backward is refused, which tarfile never does when members are read in
  order (its stream mode refused it too).
- `Gunzip` is gzip.GzipFile's reading half on zlib directly: 1 MiB of input
  at a time, output bounded by the read asked for, members concatenated and
  zero padding between them accepted as GzipFile does, zlib checking each
  member's CRC and length. Errors are GzipFile's: BadGzipFile (an OSError)
  for bad data, EOFError for a truncated stream.
- `open_tar` sniffs the compression as tarfile's `r|*` did (gzip, bzip2, xz,
  or none) and opens tarfile on the decompressed stream.

Every buffer is bounded: at most one input chunk and one output read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from typing import IO, Any, cast

CHUNK = 1 << 20  # compressed bytes read at a time


class Forward(io.RawIOBase):
    """A stream read once, front to back, that tarfile may seek forward on (by reading and dropping)."""

    def __init__(self, inner: IO[bytes], *, decompressing: bool = False) -> None:
        self._inner = inner
        self._pos = 0
        self._head = b""  # peeked, not yet read
        self._decompressing = decompressing  # errors of the decompression become tarfile.ReadError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def peek(self, n: int) -> bytes:
        """The next *n* bytes (fewer at the end), left to be read."""
        while len(self._head) < n:
            more = self._inner.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise io.UnsupportedOperation("Forward.read needs a size (every buffer has a bound)")
        data = b""
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:  # a short read only at the end, as tarfile expects of a file
            parts = [data] if data else []
            got = len(data)
            while got < size:
                more = self._read(size - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos += len(data)
        return data

    def _read(self, size: int) -> bytes:
        if not self._decompressing:
            return self._inner.read(size) or b""
        try:
            return self._inner.read(size) or b""
        except (EOFError, zlib.error, lzma.LZMAError) as exc:
            raise tarfile.ReadError(f"invalid compressed data: {exc}") from exc
        except OSError as exc:
            if exc.errno is not None:  # the disk's error, not the data's (BadGzipFile, bz2's "Invalid data stream")
                raise
            raise tarfile.ReadError(f"invalid compressed data: {exc}") from exc

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            pos += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("Forward seeks from the start or the current position only")
        if pos < self._pos:
            raise tarfile.StreamError(f"seeking backwards (to {pos} from {self._pos}) in a stream read once")
        while self._pos < pos:
            if not self.read(min(CHUNK, pos - self._pos)):
                break  # the end: tarfile's next read finds nothing and says so
        return self._pos


class Gunzip(io.RawIOBase):
    """The decompressed bytes of a gzip stream (one or more members), read from *raw* CHUNK at a time."""

    def __init__(self, raw: IO[bytes], chunk: int = CHUNK) -> None:
        self._raw, self._chunk = raw, chunk
        self._z = zlib.decompressobj(31)  # 16 + 15: the gzip wrapper, checked by zlib
        self._input = b""
        self._in_member = False
        self._first = True
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise io.UnsupportedOperation("Gunzip.read needs a size (every buffer has a bound)")
        while size and not self._eof:
            if not self._input:
                self._input = self._raw.read(self._chunk) or b""
                if not self._input:
                    if self._in_member or self._first:
                        raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                    self._eof = True
                    break
            if not self._in_member:
                if not self._first:  # between members: zero padding is allowed, as GzipFile does
                    self._input = self._input.lstrip(b"\0")
                    if not self._input:
                        continue
                self._in_member, self._first = True, False
            try:
                out = self._z.decompress(self._input, size)
            except zlib.error as exc:
                raise gzip.BadGzipFile(f"invalid gzip data: {exc}") from None
            if self._z.eof:
                self._input = self._z.unused_data
                self._z = zlib.decompressobj(31)
                self._in_member = False
            else:
                self._input = self._z.unconsumed_tail
            if out:
                return out
        return b""

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def decompressed(stream: Forward) -> IO[bytes]:
    """*stream*'s content, decompressed when its first bytes say gzip, bzip2 or xz (as tarfile's `r|*`)."""
    head = stream.peek(6)
    if head.startswith(b"\x1f\x8b\x08"):
        return cast(IO[bytes], Gunzip(cast(IO[bytes], stream)))
    if head.startswith(b"BZh91"):
        return cast(IO[bytes], bz2.BZ2File(cast(IO[bytes], stream)))
    if head.startswith((b"\x5d\x00\x00\x80", b"\xfd7zXZ")):
        return cast(IO[bytes], lzma.LZMAFile(cast(IO[bytes], stream)))
    return cast(IO[bytes], stream)


def open_tar(stream: IO[bytes]) -> tarfile.TarFile:
    """tarfile over *stream* (plain, gzip, bzip2 or xz), read once, front to back, in big reads.

    Members must be read in order (as iterating does); their data straight from
    `extractfile` or `member_data`.

    Raises:
        tarfile.TarError: not a tar (after decompression), or corrupt.
    """
    outer = Forward(stream)
    inner = decompressed(outer)
    source = outer if inner is outer else Forward(inner, decompressing=True)
    return tarfile.open(fileobj=cast(IO[bytes], source), mode="r:")


__all__ = ["CHUNK", "Forward", "Gunzip", "decompressed", "open_tar"]
