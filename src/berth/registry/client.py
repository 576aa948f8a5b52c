"""An async client for the OCI distribution API (v2): manifests, blobs, uploads.

Strategy
--------
One `RegistryClient` serves every registry. Per registry it keeps an
endpoint: a base URL and an httpx client whose TLS settings are the ones
Docker would use for that registry:

- secure registries get https, verified against the system CAs plus
  <certs_dir>/<registry>/*.crt, with a client certificate from
  <certs_dir>/<registry>/<name>.cert + <name>.key when there is one;
- insecure registries (listed in insecure_registries, or loopback ones) are
  probed once: https without verification if the server speaks TLS, plain
  http otherwise.

Every request goes through three layers, innermost first:

1. auth (`_authed`): send with the Authorization the registry is known to
   want (basic, or a cached bearer token for this registry, credentials and
   scope); on 401, read WWW-Authenticate, get a token from the realm (or use
   basic auth) and send once more. A second 401 is Unauthenticated.
2. redirects, for blob GET/HEAD only: followed by hand so that the
   Authorization header never goes to another host (blob storage).
3. retries (`_retrying`): connection errors, 429 and 5xx are retried with
   exponential backoff; 4xx answers are final. Requests carrying a body
   that cannot be replayed (upload chunks) are not retried one by one:
   upload_blob starts the whole upload again instead, from a fresh
   `chunks()` iterator.

Nothing here verifies blob digests (the content store does, as it writes);
manifests are small, so their digest is checked here. Errors are berth's
categories with the registry, repository and reference named;
RegistryDataError is for answers that break the protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator, NoReturn, Union

import httpx

from berth.errors import (
    BerthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from berth.wire import registryauth as auth
from berth.wire import registrynames as names
from berth.wire.registryauth import Challenge, Credentials

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

_OCTET = "application/octet-stream"
_USER_AGENT = "berth/0.1"
_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_ERROR_BODY_LIMIT = 64 << 10
_DIGEST = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How berth talks to registries (from the daemon's configuration).

    retries counts the attempts after the first; backoff is the first delay
    (doubled each time); timeout applies to connecting and to each read and
    write, not to a whole transfer. local_is_insecure follows Docker, which
    treats loopback registries as insecure; False makes them verify TLS like
    any other registry.
    """

    insecure_registries: tuple[str, ...] = ()
    certs_dir: Path = Path("/etc/docker/certs.d")
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 30.0
    max_manifest_bytes: int = 4 << 20
    local_is_insecure: bool = True


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry sent it: its bytes are what the digest covers."""

    media_type: str
    digest: str
    data: bytes


class RegistryDataError(BerthError):
    """A registry answered something the distribution protocol does not allow (HTTP 500)."""


class RegistryUnavailable(Unavailable):
    """A registry was unreachable or answered 429/5xx on every attempt; a later attempt may work."""


# A request body: bytes, or a factory of fresh async iterators so the body can be sent again.
_Body = Union[bytes, Callable[[], AsyncIterator[bytes]], None]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    base: str  # "https://host:port"
    client: httpx.AsyncClient

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base + path_or_url


@dataclass(frozen=True, slots=True)
class _AuthScheme:
    """What a registry asked for the last time it said 401."""

    scheme: str  # "basic" or "bearer"
    realm: str = ""
    service: str = ""


class BlobStream:
    """A blob download in progress: `async for chunk in stream`, then `aclose()`.

    start is the offset of the first byte that will come (the requested offset
    when the registry honoured the Range, 0 when it sends the whole blob);
    length is how many bytes will come, when the registry said. received
    counts the bytes delivered so far. A broken connection raises Unavailable
    naming the offset to resume from; nothing is retried here.
    """

    def __init__(self, response: httpx.Response | None, *, start: int, length: int | None,
                 registry: str, digest: str) -> None:
        self._response = response
        self.start = start
        self.length = length
        self.received = 0
        self._registry = registry
        self._digest = digest

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._response is None:
            return
        try:
            async for chunk in self._response.aiter_raw():
                self.received += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            at = self.start + self.received
            raise Unavailable(f"the download of blob {self._digest} from registry {self._registry} broke "
                              f"after byte {at} ({_describe(exc)}); resume it from offset {at}") from exc

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> BlobStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RegistryClient:
    """Talks the distribution API to any number of registries; close it with aclose().

    Every method takes the registry (host[:port] as from names.registry_and_repo),
    the repository path, and credentials (None for anonymous access).
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self._opts = options or RegistryOptions()
        self._endpoints: dict[str, _Endpoint] = {}
        self._endpoint_locks: dict[str, asyncio.Lock] = {}
        self._schemes: dict[str, _AuthScheme] = {}
        self._tokens: dict[tuple[str, str, str, tuple[str, ...]], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str, str, tuple[str, ...]], asyncio.Lock] = {}

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for ep in endpoints:
            await ep.client.aclose()

    # ------------------------------------------------------------------ #
    # Manifests

    async def get_manifest(self, registry: str, repo: str, reference: str,
                           creds: Credentials | None = None) -> Manifest:
        """Fetch the manifest or index *reference* (a tag or a digest) names.

        Raises:
            NotFound: the registry has no such manifest.
            Unauthenticated: the registry wants credentials or refused them.
            Unavailable: the registry could not be reached (after retries).
            RegistryDataError: the answer is too large, not JSON, or not what the digest says.
        """
        name = _ref_name(registry, repo, reference)
        resp = await self._call(registry, "GET", f"/v2/{repo}/manifests/{reference}", creds=creds,
                                scopes=[auth.scope(repo, ["pull"])], what=f"manifest {name}",
                                headers={"Accept": ", ".join(MANIFEST_TYPES)})
        try:
            if resp.status_code == 404:
                raise NotFound(f"manifest for {name} not found: {await _error_text(resp)}")
            if resp.status_code != 200:
                await self._fail(resp, registry, f"manifest {name}", creds)
            data = await _read_capped(resp, self._opts.max_manifest_bytes, f"manifest {name}")
        except httpx.TransportError as exc:
            raise Unavailable(f"the connection to registry {registry} broke while reading manifest {name} "
                              f"({_describe(exc)}); try again") from exc
        finally:
            await resp.aclose()
        return check_manifest(data, resp.headers.get("content-type", ""),
                              resp.headers.get("docker-content-digest", ""), reference, f"manifest {name}")

    async def put_manifest(self, registry: str, repo: str, reference: str, media_type: str, data: bytes,
                           creds: Credentials | None = None) -> str:
        """Store manifest *data* under *reference* (a tag or its digest); return its digest.

        Raises:
            InvalidArgument: the registry refused the manifest (for instance a blob it names is missing).
            Unauthenticated, Unavailable, RegistryDataError: as for get_manifest.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name = _ref_name(registry, repo, reference)
        resp = await self._call(registry, "PUT", f"/v2/{repo}/manifests/{reference}", creds=creds,
                                scopes=[auth.scope(repo, ["pull", "push"])], what=f"push of manifest {name}",
                                headers={"Content-Type": media_type}, body=data)
        try:
            if not 200 <= resp.status_code < 300:
                await self._fail(resp, registry, f"push of manifest {name}", creds)
        finally:
            await resp.aclose()
        _check_digest_header(resp, digest, f"manifest {name}")
        return digest

    # ------------------------------------------------------------------ #
    # Blobs

    async def blob_size(self, registry: str, repo: str, digest: str,
                        creds: Credentials | None = None) -> int | None:
        """The size of blob *digest* in *repo*, or None when the registry does not have it."""
        what = f"blob {digest} of {names.display_name(registry, repo)}"
        resp = await self._call(registry, "HEAD", f"/v2/{repo}/blobs/{digest}", creds=creds,
                                scopes=[auth.scope(repo, ["pull"])], what=what, follow=True)
        try:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                await self._fail(resp, registry, what, creds)
        finally:
            await resp.aclose()
        size = _int_header(resp, "content-length")
        if size is None:
            raise RegistryDataError(f"registry {registry} answered HEAD for {what} without a Content-Length")
        return size

    async def open_blob(self, registry: str, repo: str, digest: str, creds: Credentials | None = None,
                        offset: int = 0) -> BlobStream:
        """Start downloading blob *digest*, from *offset* if the registry honours a Range.

        The caller reads the stream, verifies the digest, and closes the stream.

        Raises:
            NotFound: the registry has no such blob.
            InvalidArgument: *offset* is negative or past the end of the blob.
            Unauthenticated, Unavailable, RegistryDataError: as for get_manifest.
        """
        if offset < 0:
            raise InvalidArgument(f"blob offset must be 0 or more, not {offset}")
        what = f"blob {digest} of {names.display_name(registry, repo)}"
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = await self._call(registry, "GET", f"/v2/{repo}/blobs/{digest}", creds=creds,
                                scopes=[auth.scope(repo, ["pull"])], what=what, headers=headers, follow=True)
        ok = False
        try:
            if resp.status_code == 200:
                ok = True
                return BlobStream(resp, start=0, length=_int_header(resp, "content-length"),
                                  registry=registry, digest=digest)
            if resp.status_code == 206 and offset:
                first, last = _parse_content_range(resp.headers.get("content-range", ""), offset, what, registry)
                ok = True
                return BlobStream(resp, start=first, length=last - first + 1, registry=registry, digest=digest)
            if resp.status_code == 416 and offset:
                m = _UNSATISFIED_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                if m is not None and int(m.group(1)) == offset:
                    return BlobStream(None, start=offset, length=0, registry=registry, digest=digest)
                size = f"its size is {m.group(1)} bytes" if m else "the registry did not say its size"
                raise InvalidArgument(f"offset {offset} is past the end of {what} ({size}); "
                                      "download it again from offset 0")
            if resp.status_code == 404:
                raise NotFound(f"{what} not found: {await _error_text(resp)}")
            await self._fail(resp, registry, what, creds)
        finally:
            if not ok:
                await resp.aclose()

    async def mount_blob(self, registry: str, repo: str, digest: str, from_repo: str,
                         creds: Credentials | None = None) -> bool:
        """Ask the registry to link blob *digest* of *from_repo* into *repo* without sending it.

        Returns True when mounted; False when the registry started an upload
        instead (that upload is cancelled; the caller uploads the blob).
        """
        what = f"mount of blob {digest} from {from_repo} into {names.display_name(registry, repo)}"
        query = str(httpx.QueryParams({"mount": digest, "from": from_repo}))
        resp = await self._call(registry, "POST", f"/v2/{repo}/blobs/uploads/?{query}", creds=creds,
                                scopes=[auth.scope(repo, ["pull", "push"]), auth.scope(from_repo, ["pull"])],
                                what=what)
        try:
            if resp.status_code == 201:
                return True
            if resp.status_code != 202:
                await self._fail(resp, registry, what, creds)
        finally:
            await resp.aclose()
        location = resp.headers.get("location")
        if location:
            await self._cancel_upload(registry, str(resp.url.join(location)), creds, repo)
        return False

    async def upload_blob(self, registry: str, repo: str, digest: str, size: int,
                          chunks: Callable[[], AsyncIterator[bytes]], creds: Credentials | None = None,
                          chunk_size: int | None = None) -> None:
        """Upload a blob of *size* bytes that *chunks()* yields (called again for each attempt).

        With chunk_size None: POST, then one PUT ?digest= with the whole body.
        Otherwise: POST, PATCHes of chunk_size bytes with Content-Range, then PUT ?digest=.
        A connection error, 429 or 5xx at any step starts the upload again (up to retries).

        Raises:
            InvalidArgument: chunks() yielded more or fewer than *size* bytes, the data does not
                match *digest*, or the registry refused the upload.
            Unauthenticated, Unavailable, RegistryDataError: as for get_manifest.
        """
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidArgument(f"upload chunk size must be positive, not {chunk_size}")
        attempts = self._opts.retries + 1
        for attempt in range(attempts):
            try:
                await self._upload_once(registry, repo, digest, size, chunks, creds, chunk_size)
                return
            except RegistryUnavailable as exc:
                if attempt + 1 >= attempts:
                    raise
                delay = self._opts.backoff * (2 ** attempt)
                log.info("upload of %s to %s/%s failed (%s); starting again in %.1fs",
                         digest, registry, repo, exc, delay)
                await asyncio.sleep(delay)

    async def _upload_once(self, registry: str, repo: str, digest: str, size: int,
                           chunks: Callable[[], AsyncIterator[bytes]], creds: Credentials | None,
                           chunk_size: int | None) -> None:
        scopes = [auth.scope(repo, ["pull", "push"])]
        what = f"upload of blob {digest} to {names.display_name(registry, repo)}"
        resp = await self._call(registry, "POST", f"/v2/{repo}/blobs/uploads/", creds=creds, scopes=scopes,
                                what=what, attempts=1)
        location = await self._location(resp, 202, registry, what, creds)
        try:
            if chunk_size is None:
                resp = await self._call(registry, "PUT", _with_digest(location, digest), creds=creds,
                                        scopes=scopes, what=what, attempts=1,
                                        headers={"Content-Type": _OCTET, "Content-Length": str(size)},
                                        body=lambda: _exactly(chunks(), size, digest))
            else:
                offset = 0
                async for piece in _rechunk(_exactly(chunks(), size, digest), chunk_size):
                    headers = {"Content-Type": _OCTET, "Content-Length": str(len(piece)),
                               "Content-Range": f"{offset}-{offset + len(piece) - 1}"}
                    resp = await self._call(registry, "PATCH", location, creds=creds, scopes=scopes, what=what,
                                            attempts=1, headers=headers, body=piece)
                    location = await self._location(resp, 202, registry, what, creds)
                    offset += len(piece)
                resp = await self._call(registry, "PUT", _with_digest(location, digest), creds=creds,
                                        scopes=scopes, what=what, attempts=1, headers={"Content-Length": "0"})
            try:
                if resp.status_code != 201:
                    await self._fail(resp, registry, what, creds)
            finally:
                await resp.aclose()
        except BaseException:
            await self._cancel_upload(registry, location, creds, repo)
            raise
        _check_digest_header(resp, digest, f"blob {digest}")

    async def _cancel_upload(self, registry: str, location: str, creds: Credentials | None, repo: str) -> None:
        """DELETE an upload session, best effort: a registry forgets stale uploads anyway."""
        try:
            resp = await self._call(registry, "DELETE", location, creds=creds,
                                    scopes=[auth.scope(repo, ["pull", "push"])], what="upload cancel", attempts=1)
            await resp.aclose()
        except (BerthError, httpx.HTTPError) as exc:
            log.debug("could not cancel upload %s: %s", location, exc)

    async def _location(self, resp: httpx.Response, status: int, registry: str, what: str,
                        creds: Credentials | None) -> str:
        """The absolute upload URL a response names in Location; the response is closed."""
        try:
            if resp.status_code != status:
                await self._fail(resp, registry, what, creds)
        finally:
            await resp.aclose()
        location = resp.headers.get("location")
        if not location:
            raise RegistryDataError(f"registry {registry} answered {resp.status_code} to the {what} "
                                    "without a Location header")
        return str(resp.url.join(location))

    # ------------------------------------------------------------------ #
    # Login

    async def check_login(self, registry: str, creds: Credentials | None) -> None:
        """Check that *registry* accepts *creds* (GET /v2/ through the auth flow), as `docker login` does.

        Raises:
            Unauthenticated: the credentials were refused (or are needed and missing).
            Unavailable: the registry could not be reached.
        """
        resp = await self._call(registry, "GET", "/v2/", creds=creds, scopes=[], what="login")
        try:
            if resp.status_code != 200:
                await self._fail(resp, registry, "login", creds)
        finally:
            await resp.aclose()

    # ------------------------------------------------------------------ #
    # Requests: retries around redirects around auth

    async def _call(self, registry: str, method: str, path: str, *, creds: Credentials | None,
                    scopes: list[str], what: str, headers: dict[str, str] | None = None, body: _Body = None,
                    attempts: int | None = None, follow: bool = False) -> httpx.Response:
        """Send a request to *registry* and return the (streaming) response; the caller closes it."""

        async def attempt() -> httpx.Response:
            ep = await self._endpoint(registry)
            resp = await self._authed(ep, registry, method, ep.url(path), creds, scopes, headers or {}, body)
            if follow:
                resp = await self._follow(ep, resp, method, headers or {})
            return resp

        return await self._retrying(registry, what, attempt, attempts)

    async def _retrying(self, registry: str, what: str, attempt: Callable[[], Awaitable[httpx.Response]],
                        attempts: int | None = None) -> httpx.Response:
        total = self._opts.retries + 1 if attempts is None else attempts
        problem, answered = "", False
        for i in range(total):
            if i:
                delay = self._opts.backoff * (2 ** (i - 1))
                log.info("%s on registry %s: %s; trying again in %.1fs", what, registry, problem, delay)
                await asyncio.sleep(delay)
            try:
                resp = await attempt()
            except httpx.TransportError as exc:
                self._raise_if_final(exc, registry)
                problem, answered = _describe(exc), False
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                problem, answered = f"it answered {resp.status_code} {await _error_text(resp)}".rstrip(), True
                await resp.aclose()
                continue
            return resp
        tries = f"{total} attempt{'s' if total != 1 else ''}"
        if answered:
            raise RegistryUnavailable(f"registry {registry} failed the {what}: {problem} ({tries}); try again later")
        raise RegistryUnavailable(f"cannot reach registry {registry} for the {what}: {problem} ({tries}); "
                         "check the name and the network")

    def _raise_if_final(self, exc: httpx.TransportError, registry: str) -> None:
        """Raise the final error for transport failures that retrying cannot mend."""
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                where = self._opts.certs_dir / registry / "ca.crt"
                raise FailedPrecondition(
                    f"the TLS certificate of registry {registry} is not trusted ({cause.verify_message or cause}); "
                    f"put the CA certificate that signed it in {where}, or list {registry} in "
                    "insecure-registries") from exc
            if isinstance(cause, socket.gaierror) and cause.errno in _UNKNOWN_HOST:
                raise Unavailable(f"cannot reach registry {registry}: {names.endpoint_host(registry)} is an "
                                  f"unknown host ({cause.strerror}); check the name and the network") from exc

    async def _authed(self, ep: _Endpoint, registry: str, method: str, url: str, creds: Credentials | None,
                      scopes: list[str], headers: dict[str, str], body: _Body) -> httpx.Response:
        """Send with the auth the registry is known to want; on 401 authorise and send once more."""
        sent = dict(headers)
        known = await self._known_auth(ep, registry, scopes, creds)
        if known:
            sent["Authorization"] = known
        resp = await self._send(ep, method, url, sent, body)
        if resp.status_code != 401:
            return resp
        header = ", ".join(resp.headers.get_list("www-authenticate"))
        detail = await _error_text(resp)
        await resp.aclose()
        challenges = auth.parse_challenges(header)
        authorization = await self._authorize(ep, registry, challenges, scopes, creds)
        if authorization is None:
            raise Unauthenticated(f"registry {registry} wants authentication ({header or 'no challenge given'}) "
                                  f"that berth cannot give: {_login_hint(registry, creds)}")
        sent["Authorization"] = authorization
        resp = await self._send(ep, method, url, sent, body)
        if resp.status_code == 401:
            detail = await _error_text(resp) or detail
            await resp.aclose()
            raise Unauthenticated(f"registry {registry} refused access ({detail or '401'}): "
                                  f"{_login_hint(registry, creds)}")
        return resp

    async def _send(self, ep: _Endpoint, method: str, url: str, headers: dict[str, str],
                    body: _Body) -> httpx.Response:
        content = body() if callable(body) else body
        request = ep.client.build_request(method, url, headers=headers, content=content)
        log.debug("%s %s", method, url)
        return await ep.client.send(request, stream=True)

    async def _follow(self, ep: _Endpoint, resp: httpx.Response, method: str,
                      headers: dict[str, str]) -> httpx.Response:
        """Follow redirects (to blob storage); Authorization goes only to the same origin."""
        for _ in range(_MAX_REDIRECTS):
            location = resp.headers.get("location")
            if resp.status_code not in _REDIRECTS or not location:
                return resp
            target = resp.url.join(location)
            sent = dict(headers)
            previous = resp.request
            if _origin(target) == _origin(previous.url) and "authorization" in previous.headers:
                sent["Authorization"] = previous.headers["authorization"]
            await resp.aclose()
            log.debug("redirected to %s", target.copy_with(query=None))
            next_method = "GET" if resp.status_code == 303 and method != "HEAD" else method
            resp = await ep.client.send(ep.client.build_request(next_method, target, headers=sent), stream=True)
        await resp.aclose()
        raise RegistryDataError(f"more than {_MAX_REDIRECTS} redirects from {resp.request.url.host}")

    # ------------------------------------------------------------------ #
    # Auth

    async def _known_auth(self, ep: _Endpoint, registry: str, scopes: list[str],
                          creds: Credentials | None) -> str | None:
        """The Authorization to send before any 401, from what the registry asked for before."""
        known = self._schemes.get(registry)
        if known is None:
            return None
        if known.scheme == "basic":
            return auth.basic_header(creds) if creds is not None and creds.has_password else None
        if creds is not None and creds.registry_token:
            return "Bearer " + creds.registry_token
        return "Bearer " + await self._token(ep, registry, known, scopes, creds, fresh=False)

    async def _authorize(self, ep: _Endpoint, registry: str, challenges: list[Challenge], scopes: list[str],
                         creds: Credentials | None) -> str | None:
        """The Authorization answering *challenges* (bearer preferred), or None if none can be met."""
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            known = _AuthScheme("bearer", bearer.get("realm"), bearer.get("service"))
            self._schemes[registry] = known
            if creds is not None and creds.registry_token:
                return "Bearer " + creds.registry_token
            wanted = list(scopes)
            for extra in bearer.get("scope").split():
                if extra not in wanted:
                    wanted.append(extra)
            return "Bearer " + await self._token(ep, registry, known, wanted, creds, fresh=True)
        if basic is not None:
            self._schemes[registry] = _AuthScheme("basic")
            if creds is not None and creds.has_password:
                return auth.basic_header(creds)
        return None

    async def _token(self, ep: _Endpoint, registry: str, known: _AuthScheme, scopes: list[str],
                     creds: Credentials | None, *, fresh: bool) -> str:
        key = (registry, auth.credentials_key(creds), known.realm, tuple(scopes))
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and not fresh and cached[1] > time.monotonic():
                return cached[0]
            token = await self._fetch_token(ep, registry, known, scopes, creds)
            # Give the token back a little before it expires, not at the last second.
            self._tokens[key] = (token.value, time.monotonic() + token.expires_in * 0.9)
            return token.value

    async def _fetch_token(self, ep: _Endpoint, registry: str, known: _AuthScheme, scopes: list[str],
                           creds: Credentials | None) -> auth.Token:
        realm = known.realm
        if not realm.startswith(("https://", "http://")):
            raise RegistryDataError(f"registry {registry} names a token realm that is not an http(s) URL: "
                                    f"{realm!r}")
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": "berth"}
            if known.service:
                form["service"] = known.service
            if scopes:
                form["scope"] = " ".join(scopes)

            def request() -> httpx.Request:
                return ep.client.build_request("POST", realm, data=form)
        else:
            params: list[tuple[str, str]] = []
            if known.service:
                params.append(("service", known.service))
            params += [("scope", s) for s in scopes]
            headers: dict[str, str] = {}
            if creds is not None and creds.has_password:
                params.append(("account", creds.username))
                headers["Authorization"] = auth.basic_header(creds)
            url = httpx.URL(realm).copy_merge_params(urllib.parse.urlencode(params))

            def request() -> httpx.Request:
                return ep.client.build_request("GET", url, headers=headers)

        async def attempt() -> httpx.Response:
            return await ep.client.send(request())

        resp = await self._retrying(registry, f"token request to {realm}", attempt)
        if resp.status_code in (401, 403):
            raise Unauthenticated(f"the token server of registry {registry} ({realm}) refused "
                                  f"{'access' if not creds or creds.empty else 'the credentials'} "
                                  f"({resp.status_code} {_error_text_of(resp.content)}): {_login_hint(registry, creds)}")
        if resp.status_code != 200:
            raise RegistryDataError(f"the token server of registry {registry} ({realm}) answered "
                                    f"{resp.status_code} {_error_text_of(resp.content)}")
        try:
            return auth.parse_token_response(resp.content, realm)
        except ValueError as exc:
            raise RegistryDataError(str(exc)) from exc

    # ------------------------------------------------------------------ #
    # Endpoints and TLS

    async def _endpoint(self, registry: str) -> _Endpoint:
        ep = self._endpoints.get(registry)
        if ep is not None:
            return ep
        async with self._endpoint_locks.setdefault(registry, asyncio.Lock()):
            ep = self._endpoints.get(registry)
            if ep is not None:
                return ep
            host = names.endpoint_host(registry)
            if names.is_insecure(registry, self._opts.insecure_registries, self._opts.local_is_insecure):
                ep = await self._probe(registry, host)
            else:
                ep = _Endpoint(f"https://{host}", self._new_client(self._tls_context(registry, verify=True)))
            self._endpoints[registry] = ep
            return ep

    async def _probe(self, registry: str, host: str) -> _Endpoint:
        """For an insecure registry: https without verification if it speaks TLS, else plain http."""
        tls = self._new_client(self._tls_context(registry, verify=False))
        try:
            await tls.get(f"https://{host}/v2/")
            return _Endpoint(f"https://{host}", tls)
        except httpx.TransportError as tls_error:
            await tls.aclose()
            if any(isinstance(c, socket.gaierror) for c in _causes(tls_error)):
                raise
            plain = self._new_client(self._tls_context(registry, verify=True))
            try:
                await plain.get(f"http://{host}/v2/")
            except httpx.TransportError:
                await plain.aclose()
                raise tls_error from None
            log.info("registry %s does not speak TLS; using plain HTTP", registry)
            return _Endpoint(f"http://{host}", plain)

    def _new_client(self, context: ssl.SSLContext) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=context, timeout=httpx.Timeout(self._opts.timeout),
                                 headers={"User-Agent": _USER_AGENT}, follow_redirects=False)

    def _tls_context(self, registry: str, *, verify: bool) -> ssl.SSLContext:
        """TLS settings for *registry*: CAs and client certificates from certs_dir, as Docker reads them.

        Raises:
            FailedPrecondition: a file in the registry's certs directory cannot be used.
        """
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        for folder in _cert_dirs(self._opts.certs_dir, registry):
            try:
                for ca in sorted(folder.glob("*.crt")):
                    if verify:
                        context.load_verify_locations(cafile=str(ca))
                for cert in sorted(folder.glob("*.cert")):
                    key = cert.with_suffix(".key")
                    if not key.is_file():
                        raise FailedPrecondition(f"client certificate {cert} has no key {key.name} beside it; "
                                                 f"add {key} or remove {cert}")
                    context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                raise FailedPrecondition(f"cannot use the TLS files in {folder} for registry {registry}: {exc}; "
                                         "fix or remove them") from exc
        return context

    # ------------------------------------------------------------------ #
    # Errors

    async def _fail(self, resp: httpx.Response, registry: str, what: str, creds: Credentials | None) -> NoReturn:
        """Raise the error category for an unexpected answer to *what*."""
        detail = await _error_text(resp)
        status = resp.status_code
        if status in (401, 403):
            raise Unauthenticated(f"registry {registry} denied the {what} ({detail or status}): "
                                  f"{_login_hint(registry, creds)}")
        if status == 404:
            raise NotFound(f"{what} not found on registry {registry}: {detail or '404'}")
        if 400 <= status < 500:
            raise InvalidArgument(f"registry {registry} refused the {what}: {status} {detail}".rstrip())
        raise RegistryDataError(f"registry {registry} answered {status} to the {what}, which the distribution "
                                "API does not allow")


# --------------------------------------------------------------------------- #
# Pure helpers


def check_manifest(data: bytes, content_type: str, header_digest: str, reference: str, what: str) -> Manifest:
    """Check a manifest's bytes against what the registry and the request say it is.

    The media type comes from Content-Type, or from the JSON's mediaType when
    the registry sent a generic type. The digest is the reference when it is a
    digest, else the sha256 of the bytes.

    Raises:
        RegistryDataError: not a JSON object, or a digest that does not match.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RegistryDataError(f"{what}: the registry sent something that is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RegistryDataError(f"{what}: the registry sent JSON that is not an object")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("", "application/json", "text/plain", _OCTET):
        declared = doc.get("mediaType")
        media_type = declared if isinstance(declared, str) else ""
        if not media_type:
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    for expected, source in ((reference, "the requested digest"), (header_digest.strip(), "Docker-Content-Digest")):
        m = _DIGEST.fullmatch(expected)
        if m is None:
            continue
        actual = f"{m.group(1)}:{hashlib.new(m.group(1), data).hexdigest()}"
        if actual != expected:
            raise RegistryDataError(f"{what}: the registry sent a manifest whose digest is {actual}, "
                                    f"not {expected} ({source})")
    digest = reference if _DIGEST.fullmatch(reference) else "sha256:" + hashlib.sha256(data).hexdigest()
    return Manifest(media_type, digest, data)


def _parse_content_range(value: str, offset: int, what: str, registry: str) -> tuple[int, int]:
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None:
        raise RegistryDataError(f"registry {registry} answered 206 for {what} with a bad Content-Range {value!r}")
    first, last = int(m.group(1)), int(m.group(2))
    if first != offset or last < first:
        raise RegistryDataError(f"registry {registry} answered a Range request for {what} from byte {offset} "
                                f"with bytes {first}-{last}")
    return first, last


def _check_digest_header(resp: httpx.Response, digest: str, what: str) -> None:
    header = resp.headers.get("docker-content-digest", "").strip()
    if header and header != digest and header.split(":", 1)[0] == digest.split(":", 1)[0]:
        raise RegistryDataError(f"{what}: the registry stored it under digest {header}, not {digest}")


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _ref_name(registry: str, repo: str, reference: str) -> str:
    sep = "@" if _DIGEST.fullmatch(reference) else ":"
    return f"{names.display_name(registry, repo)}{sep}{reference}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _int_header(resp: httpx.Response, name: str) -> int | None:
    value = resp.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _login_hint(registry: str, creds: Credentials | None) -> str:
    if creds is None or creds.empty:
        return f"no credentials were sent; run `docker login {registry}`"
    who = f"user {creds.username!r}" if creds.username else "the token given"
    return f"credentials of {who} were sent; check them and the access they grant, and run `docker login {registry}`"


_UNKNOWN_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _describe(exc: httpx.TransportError) -> str:
    """Say what went wrong on the wire, in the words of the deepest cause that has any."""
    text = str(exc).strip() or type(exc).__name__
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            return (f"{cause.reason or cause} (a TLS problem: if the registry serves plain HTTP, "
                    "list it in insecure-registries)")
        if isinstance(cause, OSError) and cause.errno is not None:
            text = f"{os.strerror(cause.errno)} ({cause.strerror or cause})"
    if isinstance(exc, httpx.TimeoutException):
        text = f"timed out ({type(exc).__name__})"
    return text


def _error_text_of(body: bytes) -> str:
    """The registry's error in a body: "CODE: message" from {"errors": [...]}, else its start."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", errors="replace").strip()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list):
        parts = []
        for err in errors:
            if isinstance(err, dict):
                code, message = str(err.get("code") or ""), str(err.get("message") or "")
                parts.append(f"{code}: {message}" if code and message else code or message)
        return "; ".join(p for p in parts if p)
    return body[:200].decode("utf-8", errors="replace").strip()


async def _error_text(resp: httpx.Response) -> str:
    """The error a registry put in a response body (read up to 64 KiB), or ""."""
    if resp.request.method == "HEAD":
        return ""
    size = _int_header(resp, "content-length")
    if size is not None and size > _ERROR_BODY_LIMIT:
        return ""
    try:
        body = await resp.aread()
    except httpx.HTTPError:
        return ""
    return _error_text_of(body[:_ERROR_BODY_LIMIT])


async def _read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    size = _int_header(resp, "content-length")
    if size is not None and size > limit:
        raise RegistryDataError(f"{what}: the registry sent {size} bytes, more than the {limit} berth "
                                "accepts for a manifest")
    data = bytearray()
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise RegistryDataError(f"{what}: the registry sent more than the {limit} bytes berth accepts "
                                    "for a manifest")
    return bytes(data)


async def _exactly(source: AsyncIterator[bytes], size: int, digest: str) -> AsyncIterator[bytes]:
    """Pass *source* through, insisting that it yields exactly *size* bytes."""
    total = 0
    async for chunk in source:
        total += len(chunk)
        if total > size:
            raise InvalidArgument(f"blob {digest} has more than the {size} bytes its size says")
        if chunk:
            yield bytes(chunk)
    if total != size:
        raise InvalidArgument(f"blob {digest} has {total} bytes, not the {size} its size says")


async def _rechunk(source: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup *source* into pieces of *size* bytes (the last one may be shorter)."""
    pending = bytearray()
    async for chunk in source:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _cert_dirs(certs_dir: Path, registry: str) -> list[Path]:
    """Where Docker looks for *registry*'s TLS files: certs.d/<host:port>/ (and the API host's, for Hub)."""
    out = []
    for name in dict.fromkeys((registry, names.endpoint_host(registry))):
        folder = certs_dir / name
        if folder.is_dir():
            out.append(folder)
    return out
