"""A TCP proxy that passes bytes through at a bounded rate, for tests of work that must outlive its client.

Strategy: one listening socket on 127.0.0.1 and two threads per connection
(client -> target unchanged, target -> client paced). The pace is a shared
budget of `bytes_per_second` for all connections together, spent in slices of
at most 64 KiB, so a pull through the proxy takes about size / rate seconds.
Plain TCP: it never reads what it passes.

    with SlowProxy(("127.0.0.1", reg.port), bytes_per_second=1 << 20) as proxy:
        ... docker pull 127.0.0.1:{proxy.port}/repo:tag ...
"""

from __future__ import annotations

import socket
import threading
import time

_SLICE = 64 << 10


class _Pace:
    """A shared byte budget refilled at *rate* bytes a second (thread-safe)."""

    def __init__(self, rate: int) -> None:
        self._rate, self._lock, self._next = rate, threading.Lock(), time.monotonic()

    def spend(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self._rate
            wait = start - now
        if wait > 0:
            time.sleep(wait)


class SlowProxy:
    """Pass TCP through to *target*, the target's bytes at no more than *bytes_per_second*."""

    def __init__(self, target: tuple[str, int], bytes_per_second: int, host: str = "127.0.0.1") -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.target = target
        self._pace = _Pace(bytes_per_second)
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.address = f"{host}:{self.port}"
        self.bytes_down = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="slowproxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _shut(s)

    def __enter__(self) -> SlowProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._copy, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client, True), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket, paced: bool) -> None:
        try:
            while not self._stopping.is_set():
                data = src.recv(_SLICE)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if paced:
                    self._pace.spend(len(data))
                    with self._lock:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            _shut(src)
            _shut(dst)


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


__all__ = ["SlowProxy"]
