"""A TCP proxy that can cut a blob download short, for testing resumable pulls.

Strategy: one listening socket on 127.0.0.1 and two threads per connection
(client -> target, target -> client) that copy bytes unchanged. `arm(n)`
makes the proxy watch the client's bytes for the next request line
"GET /v2/<repo>/blobs/<digest> HTTP/1.1"; on that connection, once the
response headers and n body bytes have gone to the client, both sockets are
closed. The client sees a connection that broke mid-body, as with a flaky
network. Plain HTTP only: the proxy must read the request line (a TLS
handshake passes through untouched and is never cut).

HTTP/1.1 clients wait for a response before sending the next request on a
connection, so every byte the target sends after the blob request belongs
to that request's response.

    with CutProxy(("127.0.0.1", reg.port)) as proxy:
        proxy.arm(1000)
        ... GET via proxy.address ...
        proxy.cuts  # 1
"""

from __future__ import annotations

import re
import socket
import threading

_BLOB_GET = re.compile(rb"GET /v2/\S+/blobs/[a-z0-9]+:[0-9a-f]+ HTTP/1\.[01]\r\n")
_WINDOW = 512


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.cut_after: int | None = None  # body bytes to let through, once armed for this connection
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class CutProxy:
    """Pass TCP through to *target*; when armed, cut the next blob GET response after n body bytes."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.address = f"{host}:{self.port}"
        self.cuts = 0
        self.bytes_down = 0  # every byte passed from the target to clients (headers included)
        self._armed: int | None = None
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="cutproxy", daemon=True)
        self._thread.start()

    def arm(self, n_bytes: int) -> CutProxy:
        """Cut the next blob GET's response after *n_bytes* bytes of its body."""
        if n_bytes < 0:
            raise ValueError("n_bytes must be 0 or more")
        with self._lock:
            self._armed = n_bytes
        return self

    @property
    def armed(self) -> bool:
        return self._armed is not None

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ #

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
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns = [c for c in self._conns if not c.closed.is_set()] + [conn]
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._responses, args=(conn,), daemon=True).start()

    def _requests(self, conn: _Conn) -> None:
        """client -> target, watching for the blob GET to cut when armed."""
        tail = b""
        try:
            while True:
                data = conn.client.recv(65536)
                if not data:
                    conn.upstream.shutdown(socket.SHUT_WR)
                    return
                window = tail + data
                if self._armed is not None:
                    for m in _BLOB_GET.finditer(window):
                        if m.end() > len(tail):  # not a request seen before
                            with self._lock:
                                if self._armed is not None:
                                    conn.cut_after, self._armed = self._armed, None
                            break
                tail = window[-_WINDOW:]
                conn.upstream.sendall(data)
        except OSError:
            conn.close()

    def _responses(self, conn: _Conn) -> None:
        """target -> client, cutting the armed response after its quota of body bytes."""
        head = b""
        sent_body = 0
        in_body = False
        try:
            while True:
                data = conn.upstream.recv(65536)
                if not data:
                    conn.client.shutdown(socket.SHUT_WR)
                    return
                with self._lock:
                    self.bytes_down += len(data)
                quota = conn.cut_after
                if quota is None:
                    conn.client.sendall(data)
                    continue
                if not in_body:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        conn.client.sendall(data)
                        continue
                    # Send the rest of the headers; what follows them is body.
                    header_part = len(data) - (len(head) - (end + 4))
                    conn.client.sendall(data[:header_part])
                    data = data[header_part:]
                    in_body = True
                allowed = quota - sent_body
                conn.client.sendall(data[:allowed])
                sent_body += min(len(data), allowed)
                if sent_body >= quota:
                    with self._lock:
                        self.cuts += 1
                    conn.close()
                    return
        except OSError:
            conn.close()
