"""The daemon's answers as the client reads them: the head, then the body by Content-Length, chunks or close.

Strategy: a `Reader` buffers what arrives on the connection, so the head and
the body come out of one buffer and nothing read past the headers is lost; a
hijacked connection (`Hijacked`) hands those bytes over together with the
socket. `parse_head` is pure (bytes in; status, reason and lower-cased headers
out). `StreamResponse` chooses the body's framing from the head -- none for
HEAD, 1xx, 204 and 304, chunked, Content-Length, or until the daemon closes --
and yields the body as it arrives; `Response` is an answer read whole. A
connection that ends too soon, or a head that is not HTTP, raises Unavailable.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from berth.errors import Unavailable

CHUNK = 65536  # bytes asked of the socket at a time, and sent per piece of a streamed body


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Reader:
    """Buffered reads from a socket, used for the head and the body alike."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes, limit: int = 1 << 20) -> bytes:
        while True:
            idx = self.buf.find(marker)
            if idx >= 0:
                out = bytes(self.buf[: idx + len(marker)])
                del self.buf[: idx + len(marker)]
                return out
            if len(self.buf) > limit:
                raise Unavailable("malformed response from daemon: header too long")
            if not self.fill():
                raise Unavailable("daemon closed the connection before answering")

    def read_some(self, n: int) -> bytes:
        if not self.buf and not self.fill():
            return b""
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self.fill():
                raise Unavailable("daemon closed the connection in the middle of a response")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def take_buffer(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Parse a status line and headers (header names lower-cased)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise Unavailable(f"malformed response from daemon: {lines[0]!r}")
    try:
        status = int(parts[1])
    except ValueError:
        raise Unavailable(f"malformed status line: {lines[0]!r}") from None
    reason = parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return status, reason, headers


class StreamResponse:
    """A response whose body is read as it arrives. Use as a context manager."""

    def __init__(self, sock: socket.socket, reader: Reader, status: int, reason: str,
                 headers: dict[str, str], method: str) -> None:
        self.sock = sock
        self.status = status
        self.reason = reason
        self.headers = headers
        self._reader = reader
        self._done = False
        te = headers.get("transfer-encoding", "").lower()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._mode, self._left = "length", 0
        elif "chunked" in te:
            self._mode, self._left = "chunked", 0
        elif "content-length" in headers:
            self._mode, self._left = "length", int(headers["content-length"])
        else:
            self._mode, self._left = "close", 0

    def __enter__(self) -> StreamResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def chunks(self) -> Iterator[bytes]:
        """Yield pieces of the body as they arrive (chunked framing removed)."""
        r = self._reader
        while not self._done:
            if self._mode == "length":
                if self._left <= 0:
                    self._done = True
                    break
                data = r.read_some(min(self._left, CHUNK))
                if not data:
                    raise Unavailable("daemon closed the connection in the middle of a response")
                self._left -= len(data)
                yield data
            elif self._mode == "close":
                data = r.read_some(CHUNK)
                if not data:
                    self._done = True
                    break
                yield data
            else:
                if self._left == 0:
                    size_line = r.read_until(b"\r\n").split(b";", 1)[0].strip()
                    try:
                        self._left = int(size_line, 16)
                    except ValueError:
                        raise Unavailable(f"malformed chunk size {size_line!r}") from None
                    if self._left == 0:
                        while r.read_until(b"\r\n") != b"\r\n":  # trailers
                            pass
                        self._done = True
                        break
                data = r.read_some(self._left)
                if not data:
                    raise Unavailable("daemon closed the connection in the middle of a chunk")
                self._left -= len(data)
                if self._left == 0:
                    r.read_exact(2)
                yield data

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[bytes]:
        """Yield newline-terminated lines (without the newline); a last partial line too."""
        buf = bytearray()
        for data in self.chunks():
            buf += data
            while (idx := buf.find(b"\n")) >= 0:
                line = bytes(buf[:idx]).rstrip(b"\r")
                del buf[: idx + 1]
                yield line
        if buf.strip():
            yield bytes(buf)

    def json_lines(self) -> Iterator[Any]:
        """Decode a newline-delimited (or concatenated) JSON stream."""
        dec = json.JSONDecoder()
        for line in self.lines():
            text = line.decode("utf-8", "replace").strip()
            while text:
                obj, end = dec.raw_decode(text)
                yield obj
                text = text[end:].lstrip()


@dataclass
class Hijacked:
    """A connection the daemon handed over for raw bidirectional use."""

    sock: socket.socket
    buffered: bytes  # bytes read past the response headers
    status: int
    headers: dict[str, str]

    @property
    def multiplexed(self) -> bool | None:
        ctype = self.headers.get("content-type", "")
        if "multiplexed" in ctype:
            return True
        if "raw-stream" in ctype:
            return False
        return None

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

