"""Docker's multiplexed stream frames (attach, logs, exec without a TTY).

Strategy: sans-IO. A frame is an 8-byte header -- stream byte, three zero bytes,
big-endian uint32 payload length -- followed by the payload. `encode` builds one
frame; `Decoder` buffers whatever bytes it is fed and hands back only complete
frames, so callers may feed it any split of the byte stream (one byte at a time
included). Nothing here touches sockets or files; the daemon and the CLI share it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from berth.errors import InvalidArgument

STDIN = 0
STDOUT = 1
STDERR = 2
SYSTEMERR = 3  # an error the daemon reports in-band; payload is the message

HEADER_LEN = 8
MAX_PAYLOAD = 0xFFFFFFFF

_HEADER = struct.Struct(">BxxxI")


def encode(stream: int, data: bytes) -> bytes:
    """Return one frame carrying *data* on *stream* (0..3)."""
    if not 0 <= stream <= SYSTEMERR:
        raise InvalidArgument(f"invalid stream {stream}: must be 0, 1, 2 or 3")
    if len(data) > MAX_PAYLOAD:
        raise InvalidArgument(f"frame payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(stream, len(data)) + bytes(data)


def encode_header(stream: int, length: int) -> bytes:
    """Return just the 8-byte header, for callers that write the payload separately."""
    if not 0 <= stream <= SYSTEMERR:
        raise InvalidArgument(f"invalid stream {stream}: must be 0, 1, 2 or 3")
    if not 0 <= length <= MAX_PAYLOAD:
        raise InvalidArgument(f"invalid frame length {length}")
    return _HEADER.pack(stream, length)


class Decoder:
    """Incremental frame decoder: `feed(bytes)`, then iterate `(stream, payload)`."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a complete frame."""
        return len(self._buf)

    def next_frame(self) -> tuple[int, bytes] | None:
        """Pop one complete frame, or return None when more bytes are needed."""
        if len(self._buf) < HEADER_LEN:
            return None
        stream = self._buf[0]
        if stream > SYSTEMERR or any(self._buf[1:4]):
            raise InvalidArgument(
                f"malformed stream frame header {bytes(self._buf[:HEADER_LEN]).hex()}"
            )
        (length,) = struct.unpack_from(">I", self._buf, 4)
        end = HEADER_LEN + length
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[HEADER_LEN:end])
        del self._buf[:end]
        return stream, payload

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def close(self) -> None:
        """Declare end of input; raise if a partial frame is left over."""
        if self._buf:
            raise InvalidArgument(f"stream ended inside a frame ({len(self._buf)} bytes left)")
