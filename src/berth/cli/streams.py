"""Moving bytes between the local stdio and the daemon's streams.

Strategy: `OutputSink` turns daemon output into writes on local file
descriptors -- raw when the container has a TTY, demultiplexed with
berth.wire.stdcopy otherwise (stdout frames to fd 1, stderr frames to fd 2).
`pump` drives a hijacked connection with one select loop: local stdin goes to
the socket (its EOF half-closes the socket, so the container sees EOF), socket
output goes to the sink, and the loop ends when the daemon closes its side.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import socket

from berth.client.responses import Hijacked
from berth.wire import stdcopy


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


class OutputSink:
    """Write container output to local fds, demultiplexing unless it is a TTY stream."""

    def __init__(self, multiplexed: bool, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
        self.multiplexed = multiplexed
        self.fds = {stdcopy.STDIN: stdout_fd, stdcopy.STDOUT: stdout_fd,
                    stdcopy.STDERR: stderr_fd, stdcopy.SYSTEMERR: stderr_fd}
        self.decoder = stdcopy.Decoder()
        self.broken = False

    def _write(self, fd: int, data: bytes) -> None:
        if self.broken or not data:
            return
        try:
            write_all(fd, data)
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EBADF):
                self.broken = True
            else:
                raise

    def feed(self, data: bytes) -> None:
        if not self.multiplexed:
            self._write(self.fds[stdcopy.STDOUT], data)
            return
        self.decoder.feed(data)
        for stream, payload in self.decoder:
            self._write(self.fds[stream], payload)


class EscapeScanner:
    """Watches what the user types for the detach keys, as docker's CLI does with a terminal: bytes
    that could start the sequence are held back until it is clear they do not; the sequence itself
    is never sent."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What to send of *data*, and whether the whole sequence was typed (then stop reading)."""
        out = bytearray()
        for byte in data:
            candidate = self.held + bytes([byte])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
                self.held = candidate
                continue
            out += self.held  # what was held was not the sequence after all
            self.held = b""
            if self.keys[0] == byte:  # but this byte may start it
                if len(self.keys) == 1:
                    return bytes(out), True
                self.held = bytes([byte])
            else:
                out.append(byte)
        return bytes(out), False


def pump(h: Hijacked, multiplexed: bool, stdin_fd: int | None,
         stdout_fd: int = 1, stderr_fd: int = 2, escape: bytes | None = None) -> bool:
    """Shuttle stdin -> socket and socket -> stdout/stderr until the daemon closes; with *escape*,
    stop when the user types those detach keys. Returns True when the user detached so."""
    scanner = EscapeScanner(escape) if escape else None
    sink = OutputSink(multiplexed, stdout_fd, stderr_fd)
    if h.buffered:
        sink.feed(h.buffered)
    sel = selectors.DefaultSelector()
    sel.register(h.sock, selectors.EVENT_READ, "sock")
    if stdin_fd is not None:
        try:
            sel.register(stdin_fd, selectors.EVENT_READ, "stdin")
        except (OSError, ValueError):  # e.g. a regular file cannot be polled by epoll
            _copy_blocking(stdin_fd, h)
            stdin_fd = None
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "sock":
                    try:
                        data = h.sock.recv(65536)
                    except (ConnectionResetError, OSError):
                        data = b""
                    if not data:
                        return False
                    sink.feed(data)
                else:
                    try:
                        data = os.read(stdin_fd, 32768) if stdin_fd is not None else b""
                    except OSError:
                        data = b""
                    if data and scanner is not None:
                        data, detached = scanner.feed(data)
                        if detached:
                            if data:
                                h.sock.sendall(data)
                            return True
                        if not data:
                            continue
                    if data:
                        try:
                            h.sock.sendall(data)
                            continue
                        except OSError:
                            pass
                    else:
                        h.close_write()
                    if stdin_fd is not None:
                        sel.unregister(stdin_fd)
                    stdin_fd = None
    finally:
        sel.close()


def _copy_blocking(stdin_fd: int, h: Hijacked) -> None:
    try:
        while data := os.read(stdin_fd, 65536):
            h.sock.sendall(data)
    except OSError:
        pass
    try:
        h.sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
