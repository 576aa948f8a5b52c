"""The Engine API client: `Client` sends a request on a fresh connection and reads the answer.

Strategy: one fresh connection per request, written and parsed by hand (HTTP/1.1,
`Connection: close`), so a request can never see another's bytes and streaming,
hijacking and plain calls share one code path: send the request, read the status
line and headers, then choose how to read the body (berth.client.responses).
Plain calls read it all (`request`), streams hand it out piece by piece
(`stream`), and hijacks hand over the raw socket plus whatever was already read
past the headers (`hijack`). The API version is negotiated once from the
`Api-Version` header of `GET /_ping` (the lower of ours and the daemon's) and
prefixed to every path; BERTH_API_VERSION / DOCKER_API_VERSION pin it instead.

Errors: a non-2xx answer raises `APIError` (a subclass per category of
berth.errors, so `except NotFound` works) with `.status` and `.message`; a daemon
that cannot be reached raises `DaemonUnreachable`.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import IO, Any, cast

from berth import API_VERSION, __version__
from berth.client.errors import DaemonUnreachable, api_error
from berth.client.hosts import parse_host, resolve_host
from berth.client.responses import (
    CHUNK,
    Hijacked,
    Reader,
    Response,
    StreamResponse,
    parse_head,
)
from berth.client.tls import TlsConfig, TlsStream, describe_tls, tls_config
from berth.errors import Unavailable

USER_AGENT = f"berth-cli/{__version__}"

Body = bytes | Mapping[str, Any] | list[Any] | IO[bytes] | None
Query = Mapping[str, Any] | None


def encode_query(query: Query) -> str:
    """Encode query parameters: None and False are left out, True is "1",
    lists repeat the key, dicts are JSON (as for `filters`)."""
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None or value is False:
            continue
        if value is True:
            pairs.append((key, "1"))
        elif isinstance(value, Mapping):
            pairs.append((key, json.dumps(value, separators=(",", ":"))))
        elif isinstance(value, (list, tuple)):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return urllib.parse.urlencode(pairs)


class Client:
    """Engine API client. Every call opens its own connection."""

    def __init__(self, host: str | None = None, api_version: str | None = None,
                 connect_timeout: float = 10.0, tls: TlsConfig | None = None) -> None:
        """*tls* None: from the environment (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), as docker does."""
        self.host_spec = host or resolve_host()
        self.host = parse_host(self.host_spec)
        self.tls = tls if tls is not None else tls_config()
        self._tls_context: ssl.SSLContext | None = None
        pinned = api_version or os.environ.get("BERTH_API_VERSION") or os.environ.get(
            "DOCKER_API_VERSION")
        self._version: str | None = pinned or None
        self.connect_timeout = connect_timeout
        self.ping_headers: dict[str, str] = {}

    # -- connection

    def _connect(self) -> socket.socket:
        try:
            if self.host.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(self.host.address)
            else:
                sock = socket.create_connection((self.host.address, self.host.port),
                                                timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock = self._wrap(sock)
        except ssl.SSLError as exc:
            raise Unavailable(f"TLS with the berth daemon at {self.host} failed: {describe_tls(exc)}; "
                              "check --tlscacert, --tlscert and --tlskey (or DOCKER_CERT_PATH)") from exc
        except OSError as exc:
            raise DaemonUnreachable(str(self.host), exc) from exc
        sock.settimeout(None)
        return sock

    def _wrap(self, sock: socket.socket) -> socket.socket:
        assert self.tls is not None
        if self._tls_context is None:
            self._tls_context = self.tls.context()
        try:
            # Used wherever a socket is: recv, sendall, shutdown, close, fileno, settimeout.
            return cast(socket.socket, TlsStream(self._tls_context, sock, self.host.address))
        except BaseException:
            sock.close()
            raise

    @property
    def api_version(self) -> str:
        if self._version is None:
            self._version = self._negotiate()
        return self._version

    def _negotiate(self) -> str:
        resp = self._exchange("GET", "/_ping", None, None, None, versioned=False)
        self.ping_headers = resp.headers
        server = resp.headers.get("api-version", "")
        if not server:
            return API_VERSION
        try:
            ours = tuple(int(x) for x in API_VERSION.split("."))
            theirs = tuple(int(x) for x in server.split("."))
        except ValueError:
            return API_VERSION
        return server if theirs < ours else API_VERSION

    def url(self, path: str, query: Query = None, versioned: bool = True) -> str:
        prefix = f"/v{self.api_version}" if versioned else ""
        qs = encode_query(query)
        return prefix + path + (f"?{qs}" if qs else "")

    # -- request writing

    def _send(self, method: str, target: str, body: Body,
              headers: Mapping[str, str] | None, connection: str) -> socket.socket:
        hdrs: dict[str, str] = {"Host": "berth", "User-Agent": USER_AGENT,
                                "Connection": connection}
        payload: bytes | None = None
        stream: IO[bytes] | None = None
        if isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, (Mapping, list)):
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            stream = body
        # A stream is sent as is when the caller gives its length, else chunked.
        sized = bool(headers) and any(k.lower() == "content-length" for k in headers or {})
        if payload is not None:
            hdrs["Content-Length"] = str(len(payload))
        elif stream is not None and not sized:
            hdrs["Transfer-Encoding"] = "chunked"
        elif method in ("POST", "PUT") and not sized:
            hdrs["Content-Length"] = "0"
        if headers:
            hdrs.update(headers)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock = self._connect()
        try:
            sock.sendall(head.encode("latin-1") + (payload or b""))
            if stream is not None and sized:
                while chunk := stream.read(CHUNK):
                    sock.sendall(chunk)
            elif stream is not None:
                while chunk := stream.read(CHUNK):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            # The daemon may answer (e.g. with an error) before reading the whole body.
            if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                return sock
            sock.close()
            raise Unavailable(f"error sending request to daemon: {describe_tls(exc)}") from exc
        return sock

    def _open(self, method: str, path: str, query: Query, body: Body,
              headers: Mapping[str, str] | None, versioned: bool = True,
              connection: str = "close") -> tuple[socket.socket, Reader, int, str, dict[str, str]]:
        target = self.url(path, query, versioned)
        sock = self._send(method, target, body, headers, connection)
        reader = Reader(sock)
        try:
            while True:
                status, reason, hdrs = parse_head(reader.read_until(b"\r\n\r\n"))
                if status == 100:
                    continue
                return sock, reader, status, reason, hdrs
        except OSError as exc:
            sock.close()
            raise Unavailable(f"error reading response from daemon: {describe_tls(exc)}") from exc
        except BaseException:
            sock.close()
            raise

    def _exchange(self, method: str, path: str, query: Query, body: Body,
                  headers: Mapping[str, str] | None, versioned: bool = True) -> Response:
        sock, reader, status, reason, hdrs = self._open(method, path, query, body, headers,
                                                       versioned)
        with StreamResponse(sock, reader, status, reason, hdrs, method) as sr:
            data = sr.read()
        return Response(status, reason, hdrs, data)

    # -- public

    def request(self, method: str, path: str, query: Query = None, body: Body = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send a request and read the whole answer; raise APIError unless 2xx."""
        resp = self._exchange(method, path, query, body, headers)
        if not 200 <= resp.status < 300:
            raise api_error(resp.status, resp.body)
        return resp

    def get(self, path: str, query: Query = None) -> Any:
        return self.request("GET", path, query).json()

    def post(self, path: str, query: Query = None, body: Body = None) -> Any:
        resp = self.request("POST", path, query, body)
        return resp.json() if resp.body.strip() else None

    def delete(self, path: str, query: Query = None) -> Any:
        resp = self.request("DELETE", path, query)
        return resp.json() if resp.body.strip() else None

    def stream(self, method: str, path: str, query: Query = None, body: Body = None,
               headers: Mapping[str, str] | None = None) -> StreamResponse:
        """Send a request and return once headers are in; the body is read lazily."""
        sock, reader, status, reason, hdrs = self._open(method, path, query, body, headers)
        sr = StreamResponse(sock, reader, status, reason, hdrs, method)
        if not 200 <= status < 300:
            with sr:
                raise api_error(status, sr.read())
        return sr

    def hijack(self, method: str, path: str, query: Query = None, body: Body = None,
               headers: Mapping[str, str] | None = None) -> Hijacked:
        """Ask the daemon to hand the connection over (attach, exec start)."""
        hdrs = {"Upgrade": "tcp"}
        if headers:
            hdrs.update(headers)
        sock, reader, status, reason, rh = self._open(method, path, query, body, hdrs,
                                                     connection="Upgrade")
        if status in (101, 200):
            return Hijacked(sock, reader.take_buffer(), status, rh)
        with StreamResponse(sock, reader, status, reason, rh, method) as sr:
            raise api_error(status, sr.read())

    def ping(self) -> Response:
        return self._exchange("GET", "/_ping", None, None, None, versioned=False)
