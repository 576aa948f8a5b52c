"""A small Docker Engine API client over a Unix socket or TCP.

Strategy: one fresh connection per request, written and parsed by hand (HTTP/1.1,
`Connection: close`), so a request can never see another's bytes and streaming,
hijacking and plain calls share one code path: send the request, read the status
line and headers, then choose how to read the body -- Content-Length, chunked, or
until the peer closes. Plain calls read it all (`request`), streams hand it out
piece by piece (`stream`), and hijacks hand over the raw socket plus whatever was
already read past the headers (`hijack`). The API version is negotiated once from
the `Api-Version` header of `GET /_ping` (the lower of ours and the daemon's) and
prefixed to every path; BERTH_API_VERSION / DOCKER_API_VERSION pin it instead.

TLS, as the docker CLI does it: `--tlsverify` or DOCKER_TLS_VERIFY checks the
daemon's certificate against ca.pem; `--tls` alone encrypts without checking;
the files default to $DOCKER_CERT_PATH (or ~/.docker)/ca.pem, cert.pem, key.pem,
and the client certificate is sent when its files exist (`tls_config`). Closing
the write side of a TLS connection sends close_notify (a TLS half-close).

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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, cast

from berth import API_VERSION, __version__
from berth.errors import (
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TCP_PORT = 2375
USER_AGENT = f"berth-cli/{__version__}"
_CHUNK = 65536

Body = bytes | Mapping[str, Any] | list[Any] | IO[bytes] | None
Query = Mapping[str, Any] | None


# --------------------------------------------------------------------------- errors


class APIError(BerthError):
    """The daemon answered with a non-2xx status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFoundError(APIError, NotFound):
    pass


class ConflictError(APIError, Conflict):
    pass


class BadRequestError(APIError, InvalidArgument):
    pass


class ServerError(APIError, FailedPrecondition):
    pass


class UnavailableError(APIError, Unavailable):
    pass


def api_error(status: int, body: bytes) -> APIError:
    """Build the APIError for a status and an error body (`{"message": ...}` or text)."""
    message = ""
    try:
        doc = json.loads(body.decode("utf-8", "replace") or "null")
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("error") or "")
    except ValueError:
        message = body.decode("utf-8", "replace").strip()
    if not message:
        message = f"HTTP {status}"
    cls: type[APIError] = {
        400: BadRequestError,
        404: NotFoundError,
        409: ConflictError,
        503: UnavailableError,
    }.get(status, ServerError if status >= 500 else APIError)
    return cls(status, message)


class DaemonUnreachable(Unavailable):
    def __init__(self, host: str, cause: BaseException | None = None) -> None:
        self.host = host
        super().__init__(
            f"Cannot connect to the berth daemon at {host}. Is the berth daemon running?"
        )
        self.__cause__ = cause


# --------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class Host:
    scheme: str  # "unix" or "tcp"
    address: str  # socket path, or host name
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.address}"
        return f"tcp://{self.address}:{self.port}"


def resolve_host(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`--host` wins, then BERTH_HOST, then DOCKER_HOST, then the default socket."""
    env = os.environ if env is None else env
    for value in (flag, env.get("BERTH_HOST"), env.get("DOCKER_HOST")):
        if value:
            return value
    return DEFAULT_HOST


def parse_host(spec: str) -> Host:
    """Parse `unix:///path`, `/path`, `tcp://host:port`, `host:port` or `http://...`."""
    spec = spec.strip()
    if spec.startswith("unix://"):
        path = spec[len("unix://"):]
        if not path:
            raise InvalidArgument(f"invalid host {spec!r}: empty socket path")
        return Host("unix", path)
    if spec.startswith("/"):
        return Host("unix", spec)
    rest = spec
    for prefix in ("tcp://", "http://"):
        if spec.startswith(prefix):
            rest = spec[len(prefix):]
            break
    else:
        if "://" in spec:
            raise InvalidArgument(f"invalid host {spec!r}: unsupported protocol")
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [v6]:port
        addr, _, port_s = rest[1:].partition("]")
        port_s = port_s.lstrip(":")
    else:
        addr, _, port_s = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        port = int(port_s) if port_s else DEFAULT_TCP_PORT
    except ValueError:
        raise InvalidArgument(f"invalid host {spec!r}: bad port {port_s!r}") from None
    return Host("tcp", addr or "127.0.0.1", port)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsConfig:
    """How to speak TLS to a tcp:// daemon."""

    verify: bool = True  # check the daemon's certificate against ca
    ca: str = ""
    cert: str = ""  # the client's certificate and key ("" = send none)
    key: str = ""

    def context(self) -> ssl.SSLContext:
        """The client context; InvalidArgument naming the file that cannot be used."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            try:
                ctx.load_verify_locations(cafile=self.ca)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(f"could not read the CA certificate {self.ca!r}: {exc}; "
                                      "give --tlscacert or set DOCKER_CERT_PATH") from None
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert or self.key:
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(f"could not load the client certificate {self.cert!r} and key "
                                      f"{self.key!r}: {exc}") from None
        return ctx


def tls_config(env: Mapping[str, str] | None = None, *, tls: bool = False, verify: bool = False,
               ca: str | None = None, cert: str | None = None, key: str | None = None) -> TlsConfig | None:
    """The TLS settings from the docker CLI's flags and environment; None for plain connections."""
    env = os.environ if env is None else env
    verify = verify or bool(env.get("DOCKER_TLS_VERIFY"))
    if not (tls or verify):
        return None
    base = env.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ca = ca or os.path.join(base, "ca.pem")
    if not (cert or key):  # the defaults are used only when both are there
        cert, key = os.path.join(base, "cert.pem"), os.path.join(base, "key.pem")
        if not (os.path.exists(cert) and os.path.exists(key)):
            cert = key = ""
    return TlsConfig(verify=verify, ca=ca, cert=cert or "", key=key or "")


class _TlsStream:
    """A TLS connection kept in memory BIOs over a connected socket, with a real half-close.

    Why not ssl.SSLSocket: its unwrap() (the only way to send close_notify) calls SSL_shutdown a
    second time at once, which reads the socket; when the daemon's output is already there, that
    read fails on application data and the rest of the stream is lost. Here every record that has
    arrived is decrypted before close_notify goes out, and the second SSL_shutdown only ever sees
    a partial record. recv() hands out everything decrypted so far (it may exceed its argument), so
    nothing waits inside the TLS layer while a selector waits on the socket.
    """

    def __init__(self, ctx: ssl.SSLContext, sock: socket.socket, server_hostname: str) -> None:
        self.raw = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_hostname)
        self._plain = bytearray()
        self._eof = False
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._pull():
                    raise ConnectionResetError("the daemon closed the connection in the TLS handshake") from None
        self._flush()

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.raw.sendall(data)

    def _pull(self) -> bool:
        data = self.raw.recv(_CHUNK)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def _decrypt(self) -> None:
        """Every complete record received so far, into the plain buffer; notes the daemon's end."""
        while not self._eof:
            try:
                chunk = self.tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                chunk = b""
            if not chunk:
                self._eof = True
                return
            self._plain += chunk

    def recv(self, _n: int) -> bytes:
        while True:
            self._decrypt()
            if self._plain or self._eof:
                break
            self._flush()  # what the TLS layer owes the daemon (a key update's answer)
            self._pull()
        out = bytes(self._plain)
        self._plain.clear()
        return out

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def shutdown(self, how: int) -> None:
        if how != socket.SHUT_WR:
            self.raw.shutdown(how)
            return
        self._decrypt()  # nothing complete may stay for SSL_shutdown's own read to trip over
        try:
            self.tls.unwrap()  # sends close_notify; the daemon's comes later: WantRead
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()

    def close(self) -> None:
        self.raw.close()

    def fileno(self) -> int:
        return self.raw.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self.raw.gettimeout()


# --------------------------------------------------------------------------- HTTP


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


class _Reader:
    """Buffered reads from a socket, used for the head and the body alike."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(_CHUNK)
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

    def __init__(self, sock: socket.socket, reader: _Reader, status: int, reason: str,
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
                data = r.read_some(min(self._left, _CHUNK))
                if not data:
                    raise Unavailable("daemon closed the connection in the middle of a response")
                self._left -= len(data)
                yield data
            elif self._mode == "close":
                data = r.read_some(_CHUNK)
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
            raise Unavailable(f"TLS with the berth daemon at {self.host} failed: {exc.reason or exc}; "
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
            return cast(socket.socket, _TlsStream(self._tls_context, sock, self.host.address))
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
                while chunk := stream.read(_CHUNK):
                    sock.sendall(chunk)
            elif stream is not None:
                while chunk := stream.read(_CHUNK):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            # The daemon may answer (e.g. with an error) before reading the whole body.
            if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                return sock
            sock.close()
            raise Unavailable(f"error sending request to daemon: {exc}") from exc
        return sock

    def _open(self, method: str, path: str, query: Query, body: Body,
              headers: Mapping[str, str] | None, versioned: bool = True,
              connection: str = "close") -> tuple[socket.socket, _Reader, int, str, dict[str, str]]:
        target = self.url(path, query, versioned)
        sock = self._send(method, target, body, headers, connection)
        reader = _Reader(sock)
        try:
            while True:
                status, reason, hdrs = parse_head(reader.read_until(b"\r\n\r\n"))
                if status == 100:
                    continue
                return sock, reader, status, reason, hdrs
        except OSError as exc:
            sock.close()
            raise Unavailable(f"error reading response from daemon: {exc}") from exc
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
