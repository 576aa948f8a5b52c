"""A real registry on 127.0.0.1 for tests and demos: Debian's docker-registry.

Strategy: run /usr/bin/docker-registry (distribution 2.8) with a config made
here (JSON, which its YAML parser reads), on a free port, with storage in a
private temp dir. Options:

- tls=True: a throw-away CA and a server certificate for 127.0.0.1 and
  localhost, made with the openssl CLI; `ca_file` is the CA to trust.
- users={"u": "p"}: htpasswd basic auth (bcrypt hashes from `htpasswd -B`,
  apache2-utils).
- token_auth=True (with users): the registry's `auth: token` mode, backed by
  `TokenServer`, a small token server here that checks the users and signs
  RS256 JWTs with a key made by openssl. The registry trusts the signing
  certificate, which travels in the JWT's x5c header. Each token request is
  recorded, so tests can see what a client asked for.

Everything is synchronous (threads and subprocesses): fixtures use it from
plain test functions. stop() kills the server and removes its files.

    with LocalRegistry(tmp_path, tls=True, users={"u": "p"}) as reg:
        reg.address   # "127.0.0.1:PORT"
        reg.ca_file   # Path of the CA certificate
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping

from berth.errors import FailedPrecondition

REGISTRY_BINARY = "/usr/bin/docker-registry"
SERVICE = "berth-test-registry"
ISSUER = "berth-test-token-issuer"
INSTALL_HINT = "apt-get install -y docker-registry apache2-utils openssl"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], input: bytes | None = None) -> bytes:
    if shutil.which(argv[0]) is None:
        raise FailedPrecondition(f"{argv[0]} is not installed: {INSTALL_HINT}")
    done = subprocess.run(argv, input=input, capture_output=True, timeout=60)
    if done.returncode != 0:
        raise FailedPrecondition(f"{' '.join(argv[:3])} ... failed ({done.returncode}): "
                                 f"{done.stderr.decode(errors='replace').strip()[-400:]}")
    return done.stdout


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- #
# Certificates


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls(folder: Path) -> TlsFiles:
    """Make a CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) in *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
          "-days", "2", "-subj", "/CN=berth test CA",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
          "-subj", "/CN=localhost"])
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid,issuer\n")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
          "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)])
    return TlsFiles(ca_crt, crt, key)


def write_htpasswd(path: Path, users: Mapping[str, str]) -> None:
    """An htpasswd file with bcrypt hashes (the only kind docker-registry accepts)."""
    lines = [_run(["htpasswd", "-Bbn", user, password]).decode().strip() for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- #
# Token server


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request the token server answered (or refused)."""

    method: str  # "GET" or "POST"
    grant_type: str  # "" for GET, else the OAuth2 grant
    user: str  # "" when anonymous or refused
    scopes: tuple[str, ...]
    status: int


class TokenServer:
    """Issues RS256 JWTs that docker-registry's `auth: token` mode accepts.

    GET /token?service=&scope=... with optional basic auth (Docker's token
    protocol) and POST /token with grant_type=password or refresh_token
    (OAuth2, as `docker login` with identity tokens uses). Known users get the
    actions they ask for; anonymous clients get pull only if anonymous_pull.
    """

    def __init__(self, folder: Path, users: Mapping[str, str], *, anonymous_pull: bool = False,
                 lifetime: int = 300) -> None:
        self.users = dict(users)
        self.anonymous_pull = anonymous_pull
        self.lifetime = lifetime
        self.requests: list[TokenRequest] = []
        self._refresh: dict[str, str] = {}
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self.key_file, self.cert_file = folder / "token.key", folder / "token.crt"
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key_file),
              "-out", str(self.cert_file), "-days", "2", "-subj", f"/CN={ISSUER}"])
        self._x5c = base64.b64encode(ssl.PEM_cert_to_DER_cert(self.cert_file.read_text())).decode("ascii")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    def identity_token(self, user: str) -> str:
        """A refresh token (Docker's "identity token") for *user*, as a password grant would issue."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = user
        return token

    def token_for(self, user: str, scopes: list[str], service: str = SERVICE) -> str:
        """A signed token granting *user* the *scopes*, as the server would issue it."""
        return self._jwt(user, service, scopes)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- used by the handler -------------------------------------------

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _user_for_refresh(self, token: str) -> str | None:
        with self._lock:
            return self._refresh.get(token)

    def _grant(self, user: str, scopes: list[str]) -> list[dict[str, object]]:
        access: list[dict[str, object]] = []
        for item in scopes:
            kind, _, rest = item.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user:
                allowed = wanted
            elif self.anonymous_pull:
                allowed = [a for a in wanted if a == "pull"]
            else:
                allowed = []
            if kind and name and allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def _jwt(self, user: str, service: str, scopes: list[str]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": user, "aud": service, "exp": now + self.lifetime, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": self._grant(user, scopes)}
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = _run(["openssl", "dgst", "-sha256", "-sign", str(self.key_file)], input=signing_input.encode())
        return signing_input + "." + _b64url(signature)

    def _answer(self, user: str, service: str, scopes: list[str]) -> dict[str, object]:
        token = self._jwt(user, service, scopes)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"token": token, "access_token": token, "expires_in": self.lifetime, "issued_at": issued}


def _handler_for(server: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _send(self, status: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _refuse(self, method: str, grant: str, scopes: list[str], why: str) -> None:
            server._record(TokenRequest(method, grant, "", tuple(scopes), 401))
            self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": why}]})

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            scopes = query.get("scope", [])
            service = query.get("service", [SERVICE])[0]
            user = ""
            header = self.headers.get("Authorization", "")
            if header.lower().startswith("basic "):
                try:
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    return self._refuse("GET", "", scopes, "malformed basic auth")
                if server.users.get(name) != password or not name:
                    return self._refuse("GET", "", scopes, "wrong user name or password")
                user = name
            server._record(TokenRequest("GET", "", user, tuple(scopes), 200))
            self._send(200, server._answer(user, service, scopes))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            grant = form.get("grant_type", [""])[0]
            scopes = " ".join(form.get("scope", [])).split()
            service = form.get("service", [SERVICE])[0]
            if grant == "refresh_token":
                user = server._user_for_refresh(form.get("refresh_token", [""])[0])
                if user is None:
                    return self._refuse("POST", grant, scopes, "unknown refresh token")
            elif grant == "password":
                user = form.get("username", [""])[0]
                if not user or server.users.get(user) != form.get("password", [""])[0]:
                    return self._refuse("POST", grant, scopes, "wrong user name or password")
            else:
                return self._refuse("POST", grant, scopes, f"unsupported grant_type {grant!r}")
            server._record(TokenRequest("POST", grant, user, tuple(scopes), 200))
            answer = server._answer(user, service, scopes)
            if grant == "password":
                answer["refresh_token"] = server.identity_token(user)
            self._send(200, answer)

    return Handler


# --------------------------------------------------------------------------- #
# The registry


class LocalRegistry:
    """docker-registry on 127.0.0.1:<free port>, its files under a temp dir in *workdir*."""

    def __init__(self, workdir: Path, *, tls: bool = False, users: Mapping[str, str] | None = None,
                 token_auth: bool = False, anonymous_pull: bool = False, binary: str = REGISTRY_BINARY,
                 start_timeout: float = 30.0) -> None:
        if token_auth and not users:
            raise ValueError("token_auth needs users")
        self.workdir = Path(workdir)
        self.tls = tls
        self.users = dict(users or {})
        self.token_auth = token_auth
        self.anonymous_pull = anonymous_pull
        self.binary = binary
        self.start_timeout = start_timeout
        self.port = 0
        self.address = ""
        self.ca_file: Path | None = None
        self.token_server: TokenServer | None = None
        self.log_path: Path | None = None
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalRegistry:
        """Start the registry and wait until GET /v2/ answers.

        Raises:
            FailedPrecondition: docker-registry (or openssl, htpasswd) is missing, or it did not start.
        """
        if not os.access(self.binary, os.X_OK):
            raise FailedPrecondition(f"{self.binary} is not installed: {INSTALL_HINT}")
        self._dir = Path(tempfile.mkdtemp(prefix="registry-", dir=self.workdir))
        try:
            self._start(self._dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, folder: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        store = folder / "storage"
        store.mkdir()
        http: dict[str, object] = {"addr": self.address, "secret": secrets.token_hex(16)}
        config: dict[str, object] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(store)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": http,
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.tls:
            made = make_tls(folder / "tls")
            self.ca_file = made.ca_file
            http["tls"] = {"certificate": str(made.cert_file), "key": str(made.key_file)}
        if self.token_auth:
            self.token_server = TokenServer(folder / "token", self.users, anonymous_pull=self.anonymous_pull)
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": SERVICE, "issuer": ISSUER,
                                        "rootcertbundle": str(self.token_server.cert_file)}}
        elif self.users:
            write_htpasswd(folder / "htpasswd", self.users)
            config["auth"] = {"htpasswd": {"realm": "berth-test", "path": str(folder / "htpasswd")}}
        config_file = folder / "config.yml"
        config_file.write_text(json.dumps(config, indent=1))
        self.log_path = folder / "registry.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen([self.binary, "serve", str(config_file)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise FailedPrecondition(f"docker-registry exited with {self._proc.returncode} at start: "
                                         f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2, context=context):
                    return
            except urllib.error.HTTPError:
                return  # 401 and the like: it answers
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise FailedPrecondition(f"docker-registry did not answer on {self.url} within {self.start_timeout}s "
                                 f"({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the registry's log, for failure messages."""
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def write_certs_dir(self, root: Path, name: str | None = None) -> Path:
        """Make *root*/<name or address>/ca.crt, the layout of /etc/docker/certs.d; return *root*."""
        if self.ca_file is None:
            raise ValueError("the registry does not use TLS")
        folder = root / (name or self.address)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.ca_file, folder / "ca.crt")
        return root

    def stop(self) -> None:
        """Kill the registry and the token server; remove every file they had."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.token_server is not None:
            self.token_server.close()
            self.token_server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
