"""berth.registry.client against Debian's real docker-registry (and skopeo as a second opinion).

The images are built here: a gzip tar layer, a config JSON and an OCI
manifest. Registries are started per module by berth.testing.registry: plain
HTTP, TLS with htpasswd basic auth, and token auth with berth's test token
server. A small hand-written HTTP server stands in for misbehaving registries
only where the real one cannot misbehave (oversized or non-JSON manifests,
5xx, redirects to storage).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import pytest

from berth.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from berth.registry import (
    Credentials,
    RegistryClient,
    RegistryDataError,
    RegistryOptions,
)
from berth.registry.base import OCI_MANIFEST
from berth.testing.cutproxy import CutProxy
from berth.testing.registry import REGISTRY_BINARY, LocalRegistry, free_port

T = TypeVar("T")
FAST = RegistryOptions(retries=1, backoff=0.01, timeout=10)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    layer: bytes
    config: bytes
    manifest: bytes

    @property
    def blobs(self) -> list[bytes]:
        return [self.layer, self.config]


def make_image(payload: int = 150_000, note: str = "") -> Image:
    """A one-layer linux/amd64 image; the layer holds *payload* random (incompressible) bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("data.bin", os.urandom(payload)), ("note.txt", note.encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(raw.getvalue())]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "berth test"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer),
                    "size": len(layer)}],
    }, indent=2).encode()
    return Image(layer, config, manifest)


def chunks_of(data: bytes, step: int = 10_000) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), step):
            yield data[i:i + step]
    return gen


async def push(rc: RegistryClient, registry: str, repo: str, tag: str, img: Image,
               creds: Credentials | None = None, chunk_size: int | None = None) -> str:
    for blob in img.blobs:
        await rc.upload_blob(registry, repo, sha(blob), len(blob), chunks_of(blob), creds, chunk_size=chunk_size)
    return await rc.put_manifest(registry, repo, tag, OCI_MANIFEST, img.manifest, creds)


async def read_blob(rc: RegistryClient, registry: str, repo: str, digest: str,
                    creds: Credentials | None = None, offset: int = 0) -> tuple[int, bytes]:
    stream = await rc.open_blob(registry, repo, digest, creds, offset=offset)
    async with stream:
        data = b"".join([chunk async for chunk in stream])
    return stream.start, data


# --------------------------------------------------------------------------- #
# Registries


def _need_registry() -> None:
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(f"{REGISTRY_BINARY} is missing: apt-get install -y docker-registry skopeo apache2-utils",
                    pytrace=False)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _need_registry()
    with LocalRegistry(tmp_path_factory.mktemp("plain")) as reg:
        yield reg


@pytest.fixture(scope="module")
def tls_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _need_registry()
    with LocalRegistry(tmp_path_factory.mktemp("tls"), tls=True, users={"alice": "s3cret"}) as reg:
        yield reg


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _need_registry()
    with LocalRegistry(tmp_path_factory.mktemp("token"), users={"bob": "hunter2"}, token_auth=True) as reg:
        yield reg


# --------------------------------------------------------------------------- #
# Push and pull on a plain HTTP registry (loopback: found insecure, probed, http)


def test_push_then_pull_round_trip(plain: LocalRegistry) -> None:
    img = make_image()
    reg = plain.address

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            digest = await push(rc, reg, "round/trip", "v1", img)
            assert digest == sha(img.manifest)
            by_tag = await rc.get_manifest(reg, "round/trip", "v1", None)
            assert (by_tag.media_type, by_tag.digest, by_tag.data) == (OCI_MANIFEST, digest, img.manifest)
            by_digest = await rc.get_manifest(reg, "round/trip", digest, None)
            assert by_digest.data == img.manifest and by_digest.digest == digest
            for blob in img.blobs:
                assert await rc.blob_size(reg, "round/trip", sha(blob), None) == len(blob)
                start, data = await read_blob(rc, reg, "round/trip", sha(blob))
                assert start == 0 and sha(data) == sha(blob)
            assert await rc.blob_size(reg, "round/trip", sha(b"never pushed"), None) is None

    run(go())


def test_chunked_and_monolithic_uploads(plain: LocalRegistry) -> None:
    reg = plain.address
    blobs = {"mono": os.urandom(70_001), "chunked": os.urandom(45_001), "empty": b""}

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.upload_blob(reg, "up/load", sha(blobs["mono"]), len(blobs["mono"]), chunks_of(blobs["mono"]))
            # 45,001 bytes in 10,000-byte PATCHes: five with Content-Range, the last one short.
            await rc.upload_blob(reg, "up/load", sha(blobs["chunked"]), len(blobs["chunked"]),
                                 chunks_of(blobs["chunked"], 3_333), chunk_size=10_000)
            await rc.upload_blob(reg, "up/load", sha(b""), 0, chunks_of(b""), chunk_size=1000)
            for blob in blobs.values():
                assert await rc.blob_size(reg, "up/load", sha(blob), None) == len(blob)
                assert (await read_blob(rc, reg, "up/load", sha(blob)))[1] == blob

    run(go())


def test_upload_refuses_wrong_size_and_wrong_digest(plain: LocalRegistry) -> None:
    reg = plain.address
    data = os.urandom(5000)

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            with pytest.raises(InvalidArgument, match="5000 bytes, not the 6000"):
                await rc.upload_blob(reg, "up/bad", sha(data), 6000, chunks_of(data))
            with pytest.raises(InvalidArgument, match="more than the 4000 bytes"):
                await rc.upload_blob(reg, "up/bad", sha(data), 4000, chunks_of(data), chunk_size=1000)
            for chunk_size in (None, 2048):
                with pytest.raises(InvalidArgument, match="DIGEST_INVALID"):
                    await rc.upload_blob(reg, "up/bad", sha(b"other"), len(data), chunks_of(data),
                                         chunk_size=chunk_size)
            assert await rc.blob_size(reg, "up/bad", sha(data), None) is None

    run(go())


def test_cross_repository_mount(plain: LocalRegistry) -> None:
    reg = plain.address
    blob = os.urandom(3000)

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.upload_blob(reg, "mount/source", sha(blob), len(blob), chunks_of(blob))
            assert await rc.blob_size(reg, "mount/target", sha(blob), None) is None
            assert await rc.mount_blob(reg, "mount/target", sha(blob), "mount/source", None) is True
            assert await rc.blob_size(reg, "mount/target", sha(blob), None) == len(blob)
            # A blob the source does not have: the registry starts an upload instead (cancelled).
            assert await rc.mount_blob(reg, "mount/target", sha(b"absent"), "mount/source", None) is False

    run(go())


def test_not_found(plain: LocalRegistry) -> None:
    reg = plain.address

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await push(rc, reg, "nf/repo", "v1", make_image(1000))
            with pytest.raises(NotFound, match=r"manifest for 127\.0\.0\.1:\d+/nf/repo:nope not found: "
                                               r"MANIFEST_UNKNOWN"):
                await rc.get_manifest(reg, "nf/repo", "nope", None)
            with pytest.raises(NotFound, match="not found"):
                await rc.get_manifest(reg, "nf/never-pushed", "latest", None)
            with pytest.raises(NotFound, match=f"blob {sha(b'x')} of .*nf/repo not found: BLOB_UNKNOWN"):
                await rc.open_blob(reg, "nf/repo", sha(b"x"), None)

    run(go())


def test_open_blob_at_an_offset(plain: LocalRegistry) -> None:
    reg = plain.address
    blob = os.urandom(20_000)

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.upload_blob(reg, "range/r", sha(blob), len(blob), chunks_of(blob))
            stream = await rc.open_blob(reg, "range/r", sha(blob), None, offset=12_345)
            async with stream:
                assert (stream.start, stream.length) == (12_345, len(blob) - 12_345)
                rest = b"".join([c async for c in stream])
            assert rest == blob[12_345:]
            start, rest = await read_blob(rc, reg, "range/r", sha(blob), offset=len(blob))
            assert (start, rest) == (len(blob), b"")  # nothing left to fetch
            with pytest.raises(InvalidArgument, match="past the end"):
                await rc.open_blob(reg, "range/r", sha(blob), None, offset=len(blob) + 10)

    run(go())


def test_cut_download_resumes_at_the_offset_received(plain: LocalRegistry) -> None:
    blob = os.urandom(300_000)

    async def go(proxy: CutProxy) -> None:
        async with RegistryClient(FAST) as rc:
            reg = proxy.address
            await rc.upload_blob(reg, "cut/c", sha(blob), len(blob), chunks_of(blob))
            proxy.arm(100_000)
            got = bytearray()
            stream = await rc.open_blob(reg, "cut/c", sha(blob), None)
            with pytest.raises(Unavailable, match="resume it from offset 100000"):
                async with stream:
                    async for chunk in stream:
                        got += chunk
            assert len(got) == 100_000 and proxy.cuts == 1
            start, rest = await read_blob(rc, reg, "cut/c", sha(blob), offset=len(got))
            assert start == len(got)
            assert sha(bytes(got) + rest) == sha(blob)

    with CutProxy(("127.0.0.1", plain.port)) as proxy:
        run(go(proxy))


def test_skopeo_reads_what_the_client_pushed(plain: LocalRegistry) -> None:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.fail("skopeo is missing: apt-get install -y skopeo", pytrace=False)
    img = make_image(5000, note="for skopeo")

    async def go() -> str:
        async with RegistryClient(FAST) as rc:
            return await push(rc, plain.address, "peer/check", "v7", img, chunk_size=4096)

    digest = run(go())
    ref = f"docker://{plain.address}/peer/check:v7"
    done = subprocess.run([skopeo, "inspect", "--tls-verify=false", ref], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["Digest"], info["Architecture"], info["Os"]) == (digest, "amd64", "linux")
    assert info["Layers"] == [sha(img.layer)]
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", ref], capture_output=True,
                         timeout=60)
    assert raw.returncode == 0 and raw.stdout == img.manifest


# --------------------------------------------------------------------------- #
# TLS and basic auth


def test_basic_auth_over_tls_with_the_ca(tls_basic: LocalRegistry, tmp_path: Path) -> None:
    reg = tls_basic.address
    certs = tls_basic.write_certs_dir(tmp_path / "certs.d")
    secure = RegistryOptions(certs_dir=certs, local_is_insecure=False, retries=1, backoff=0.01, timeout=10)
    alice = Credentials("alice", "s3cret")
    img = make_image(2000)

    async def go() -> None:
        async with RegistryClient(secure) as rc:
            await rc.check_login(reg, alice)
            digest = await push(rc, reg, "tls/app", "v1", img, alice)
            assert (await rc.get_manifest(reg, "tls/app", "v1", alice)).digest == digest
            assert (await read_blob(rc, reg, "tls/app", sha(img.layer), alice))[1] == img.layer
            with pytest.raises(Unauthenticated, match=f"credentials of user 'alice' were sent.*docker login {reg}"):
                await rc.get_manifest(reg, "tls/app", "v1", Credentials("alice", "wrong"))
            with pytest.raises(Unauthenticated, match="user 'mallory'"):
                await rc.check_login(reg, Credentials("mallory", "s3cret"))
            with pytest.raises(Unauthenticated, match=f"no credentials were sent; run `docker login {reg}`"):
                await rc.get_manifest(reg, "tls/app", "v1", None)
            with pytest.raises(Unauthenticated, match="no credentials"):
                await rc.check_login(reg, None)

    run(go())


def test_tls_without_the_ca_is_refused(tls_basic: LocalRegistry, tmp_path: Path) -> None:
    secure = RegistryOptions(certs_dir=tmp_path / "empty", local_is_insecure=False, retries=1, backoff=0.01)

    async def go() -> None:
        async with RegistryClient(secure) as rc:
            await rc.check_login(tls_basic.address, Credentials("alice", "s3cret"))

    with pytest.raises(FailedPrecondition, match=r"not trusted .*ca\.crt"):
        run(go())


def test_insecure_registry_skips_verification(tls_basic: LocalRegistry) -> None:
    # Loopback registries are insecure by default, as in Docker: TLS without verification.
    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.check_login(tls_basic.address, Credentials("alice", "s3cret"))

    run(go())


def test_secure_registry_does_not_fall_back_to_http(plain: LocalRegistry) -> None:
    secure = RegistryOptions(local_is_insecure=False, retries=0)

    async def go() -> None:
        async with RegistryClient(secure) as rc:
            await rc.get_manifest(plain.address, "x/y", "latest", None)

    with pytest.raises(Unavailable, match=f"cannot reach registry {plain.address}"):
        run(go())


# --------------------------------------------------------------------------- #
# Token auth (Bearer) against the real registry


def test_token_auth_push_pull_and_cache(token_reg: LocalRegistry) -> None:
    reg = token_reg.address
    server = token_reg.token_server
    assert server is not None
    bob = Credentials("bob", "hunter2")
    img = make_image(3000)

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            digest = await push(rc, reg, "tok/app", "v1", img, bob)
            await rc.get_manifest(reg, "tok/app", "v1", bob)
            asked = len(server.requests)
            for _ in range(3):  # the pull token is cached
                assert (await rc.get_manifest(reg, "tok/app", digest, bob)).data == img.manifest
            assert len(server.requests) == asked
            assert (await read_blob(rc, reg, "tok/app", sha(img.config), bob))[1] == img.config
            # Mount needs pull on the source as well as push on the target: one token for both.
            assert await rc.mount_blob(reg, "tok/other", sha(img.layer), "tok/app", bob) is True
            assert {"repository:tok/other:pull,push", "repository:tok/app:pull"} <= set(server.requests[-1].scopes)
            await rc.check_login(reg, bob)

    run(go())
    users = {r.user for r in server.requests if r.status == 200}
    assert users == {"bob"}


def test_token_auth_refusals(token_reg: LocalRegistry) -> None:
    reg = token_reg.address

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await push(rc, reg, "tok/private", "v1", make_image(1000), Credentials("bob", "hunter2"))
            with pytest.raises(Unauthenticated, match="token server .* refused the credentials"):
                await rc.get_manifest(reg, "tok/private", "v1", Credentials("bob", "wrong"))
            with pytest.raises(Unauthenticated, match="no credentials were sent"):
                await rc.get_manifest(reg, "tok/private", "v1", None)
            with pytest.raises(Unauthenticated, match="token server"):
                await rc.check_login(reg, Credentials("eve", "x"))

    run(go())


def test_token_auth_identity_and_registry_tokens(token_reg: LocalRegistry) -> None:
    reg = token_reg.address
    server = token_reg.token_server
    assert server is not None
    img = make_image(1000)

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            digest = await push(rc, reg, "tok/idt", "v1", img, Credentials("bob", "hunter2"))
        async with RegistryClient(FAST) as rc:
            ident = Credentials(identity_token=server.identity_token("bob"))
            assert (await rc.get_manifest(reg, "tok/idt", "v1", ident)).digest == digest
            last = server.requests[-1]
            assert (last.method, last.grant_type, last.user) == ("POST", "refresh_token", "bob")
            with pytest.raises(Unauthenticated):
                await rc.get_manifest(reg, "tok/idt", "v1", Credentials(identity_token="forged"))
        async with RegistryClient(FAST) as rc:
            # A registry token is sent as it is, without asking the token server.
            token = server.token_for("bob", ["repository:tok/idt:pull"])
            asked = len(server.requests)
            got = await rc.get_manifest(reg, "tok/idt", "v1", Credentials(registry_token=token))
            assert got.digest == digest and len(server.requests) == asked

    run(go())


# --------------------------------------------------------------------------- #
# Reaching registries that are not there


def test_unknown_host_is_unavailable() -> None:
    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.get_manifest("no-such-registry.invalid", "a/b", "latest", None)

    with pytest.raises(Unavailable, match="no-such-registry.invalid is an unknown host.*check the name"):
        run(go())


def test_refused_connection_is_unavailable() -> None:
    port = free_port()

    async def go() -> None:
        async with RegistryClient(FAST) as rc:
            await rc.get_manifest(f"127.0.0.1:{port}", "a/b", "latest", None)

    with pytest.raises(Unavailable, match=f"cannot reach registry 127.0.0.1:{port}.*2 attempts.*network"):
        run(go())


# --------------------------------------------------------------------------- #
# Misbehaving registries: what the real one never does


class Odd:
    """A tiny HTTP server with scripted answers; records every request's path and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.failures_left = 0
        self.uploaded: list[bytes] = []
        odd = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                odd.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                odd.route(self)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def route(self, h: BaseHTTPRequestHandler) -> None:
        answer = h.answer  # type: ignore[attr-defined]
        path = h.path
        manifest = b'{"schemaVersion": 2, "layers": []}'
        if path == "/v2/":
            answer(200, b"{}")
        elif path == "/v2/odd/manifests/big":
            answer(200, b"{" + b" " * 5000 + b"}", {"Content-Type": OCI_MANIFEST})
        elif path == "/v2/odd/manifests/notjson":
            answer(200, b"<html>surprise</html>", {"Content-Type": OCI_MANIFEST})
        elif path == "/v2/odd/manifests/liar":
            answer(200, manifest, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha(b"else")})
        elif path.startswith("/v2/odd/manifests/sha256:"):  # whatever digest is asked for: wrong bytes
            answer(200, manifest, {"Content-Type": OCI_MANIFEST})
        elif path == "/v2/odd/manifests/plainjson":
            answer(200, manifest, {"Content-Type": "application/json"})
        elif path == "/v2/odd/manifests/flaky":
            if self.failures_left > 0:
                self.failures_left -= 1
                answer(503, b'{"errors": [{"code": "UNAVAILABLE", "message": "busy"}]}')
            else:
                answer(200, manifest, {"Content-Type": OCI_MANIFEST})
        elif path == "/v2/odd/blobs/uploads/" and h.command == "POST":
            answer(202, b"", {"Location": "/upload/1?state=a"})
        elif path.startswith("/upload/1") and h.command == "PUT":
            self.uploaded.append(h.body)  # type: ignore[attr-defined]
            if self.failures_left > 0:
                self.failures_left -= 1
                answer(502, b"bad gateway")
            else:
                answer(201, b"", {"Docker-Content-Digest": sha(h.body)})  # type: ignore[attr-defined]
        elif path.startswith("/upload/1") and h.command == "DELETE":
            answer(204)
        elif path.startswith("/v2/odd/blobs/"):
            if not h.headers.get("Authorization"):
                answer(401, b"", {"WWW-Authenticate": 'Basic realm="odd"'})
            else:  # to "storage": another origin (localhost is not 127.0.0.1)
                answer(307, b"", {"Location": f"http://localhost:{self.port}/storage/blob?sig=1"})
        elif path.startswith("/storage/blob"):
            answer(200, b"blob bytes")
        else:
            answer(404, b'{"errors": [{"code": "NAME_UNKNOWN", "message": "no"}]}')

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def odd() -> Iterator[Odd]:
    server = Odd()
    try:
        yield server
    finally:
        server.close()


def test_bad_manifests_are_refused(odd: Odd) -> None:
    options = RegistryOptions(retries=0, max_manifest_bytes=1000)

    async def go() -> None:
        async with RegistryClient(options) as rc:
            with pytest.raises(RegistryDataError, match="odd:big: the registry sent 5002 bytes, more than the 1000"):
                await rc.get_manifest(odd.address, "odd", "big", None)
            with pytest.raises(RegistryDataError, match="odd:notjson: the registry sent something that is not JSON"):
                await rc.get_manifest(odd.address, "odd", "notjson", None)
            with pytest.raises(RegistryDataError, match=f"not {sha(b'else')} \\(Docker-Content-Digest\\)"):
                await rc.get_manifest(odd.address, "odd", "liar", None)
            with pytest.raises(RegistryDataError, match="requested digest"):
                await rc.get_manifest(odd.address, "odd", sha(b"wanted"), None)
            # A generic Content-Type: the media type comes from the JSON's shape.
            assert (await rc.get_manifest(odd.address, "odd", "plainjson", None)).media_type == OCI_MANIFEST

    run(go())


def test_5xx_is_retried_and_4xx_is_not(odd: Odd) -> None:
    options = RegistryOptions(retries=2, backoff=0.01)
    odd.failures_left = 2

    async def go() -> None:
        async with RegistryClient(options) as rc:
            await rc.get_manifest(odd.address, "odd", "flaky", None)
            odd.failures_left = 5
            with pytest.raises(Unavailable, match="failed the manifest .*answered 503 UNAVAILABLE: busy"):
                await rc.get_manifest(odd.address, "odd", "flaky", None)
            with pytest.raises(NotFound):
                await rc.get_manifest(odd.address, "elsewhere", "x", None)

    run(go())
    flaky = [p for _, p, _ in odd.seen if p.endswith("/flaky")]
    assert len(flaky) == 3 + 3  # 2 failures and a success, then 3 failures
    assert len([p for _, p, _ in odd.seen if "/elsewhere/" in p]) == 1


def test_blob_redirect_does_not_carry_credentials(odd: Odd) -> None:
    async def go() -> bytes:
        async with RegistryClient(FAST) as rc:
            return (await read_blob(rc, odd.address, "odd", sha(b"blob bytes"), Credentials("u", "p")))[1]

    assert run(go()) == b"blob bytes"
    storage = [h for _, p, h in odd.seen if p.startswith("/storage/")]
    assert len(storage) == 1 and "authorization" not in storage[0]
    assert storage[0]["host"] == f"localhost:{odd.port}"


def test_upload_starts_again_after_a_5xx(odd: Odd) -> None:
    options = RegistryOptions(retries=2, backoff=0.01)
    blob = os.urandom(30_000)
    odd.failures_left = 1
    calls = []

    def chunks() -> AsyncIterator[bytes]:
        calls.append(1)
        return chunks_of(blob)()

    async def go() -> None:
        async with RegistryClient(options) as rc:
            await rc.upload_blob(odd.address, "odd", sha(blob), len(blob), chunks, None)

    run(go())
    steps = [(m, p.split("?")[0]) for m, p, _ in odd.seen if not p.startswith("/v2/?") and p != "/v2/"]
    assert steps == [("POST", "/v2/odd/blobs/uploads/"), ("PUT", "/upload/1"), ("DELETE", "/upload/1"),
                     ("POST", "/v2/odd/blobs/uploads/"), ("PUT", "/upload/1")]
    assert len(calls) == 2 and odd.uploaded == [blob, blob]
