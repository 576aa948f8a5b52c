"""TLS to a tcp:// daemon, as the docker CLI does it: the settings, and a connection with a real half-close.

Strategy: `tls_config` reads the docker CLI's flags and environment. `--tlsverify`
or DOCKER_TLS_VERIFY checks the daemon's certificate against ca.pem; `--tls`
alone encrypts without checking; the files default to $DOCKER_CERT_PATH (or
~/.docker)/ca.pem, cert.pem, key.pem, and the client certificate is sent when
its files exist. `TlsConfig.context` builds the SSL context and names the file
it cannot use. `TlsStream` runs the TLS connection in memory BIOs over the
plain socket, so that closing the write side sends close_notify (a TLS
half-close) without losing what the daemon has already sent; it stands in for
a socket wherever the client uses one.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from berth.client.responses import CHUNK
from berth.errors import InvalidArgument


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
        if self.verify and not self.ca:  # a context without ca.pem: the system's authorities
            ctx.load_default_certs()
        elif self.verify:
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


class TlsStream:
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
        data = self.raw.recv(CHUNK)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def _decrypt(self) -> None:
        """Every complete record received so far, into the plain buffer; notes the daemon's end."""
        while not self._eof:
            try:
                chunk = self.tls.read(CHUNK)
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


# OpenSSL's names of the TLS alerts a daemon sends, and the words Go's (docker's) client uses for them
_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "remote error: tls: unknown certificate authority",
    "SSLV3_ALERT_BAD_CERTIFICATE": "remote error: tls: bad certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "remote error: tls: certificate required",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "remote error: tls: expired certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "remote error: tls: handshake failure",
    "CERTIFICATE_VERIFY_FAILED": "tls: failed to verify certificate: x509: certificate signed by unknown authority",
}


def describe_tls(exc: BaseException) -> str:
    """An error of the TLS layer in the words docker's CLI uses (the alert's meaning), else str(exc)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLError) and isinstance(reason, str) and reason in _ALERTS:
        return _ALERTS[reason]
    return str(exc)
