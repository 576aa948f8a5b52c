"""An async client for the OCI distribution API (v2): manifests, blobs, uploads.

Strategy
--------
One `RegistryClient` serves every registry. Each operation is one or a few
requests sent through a `Transport` (berth.registry.transport: retries
around redirects around auth, over the per-registry endpoints and TLS
settings of berth.registry.endpoints); what the registry answered is then
judged here, with berth.registry.responses checking the answers that should
fit the protocol and berth.registry.failures turning the others into
berth's error categories.

Uploads are retried whole: upload_blob starts the upload again from a fresh
`chunks()` iterator when a step fails with RegistryUnavailable, since an
upload chunk cannot be sent twice.

Nothing here verifies blob digests (the content store does, as it writes);
manifests are small, so their digest is checked here. Errors are berth's
categories with the registry, repository and reference named;
RegistryDataError is for answers that break the protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable

import httpx

from berth.errors import BerthError, InvalidArgument, NotFound, Unavailable
from berth.registry.base import (
    DIGEST,
    MANIFEST_TYPES,
    OCTET,
    Manifest,
    RegistryDataError,
    RegistryOptions,
    RegistryUnavailable,
)
from berth.registry.blobstream import BlobStream
from berth.registry.failures import causes, describe, error_text, fail
from berth.registry.responses import (
    check_digest_header,
    check_manifest,
    int_header,
    parse_content_range,
    read_capped,
)
from berth.registry import tagslist
from berth.registry import search
from berth.registry.transport import Transport
from berth.wire import registryauth as auth
from berth.wire import registrynames as names
from berth.wire.registryauth import Credentials

log = logging.getLogger(__name__)

_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class RegistryClient:
    """Talks the distribution API to any number of registries; close it with aclose().

    Every method takes the registry (host[:port] as from names.registry_and_repo),
    the repository path, and credentials (None for anonymous access).
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self._opts = options or RegistryOptions()
        self._transport = Transport(self._opts)

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

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
        resp = await self._transport.call(registry, "GET", f"/v2/{repo}/manifests/{reference}", creds=creds,
                                          scopes=[auth.scope(repo, ["pull"])], what=f"manifest {name}",
                                          headers={"Accept": ", ".join(MANIFEST_TYPES)})
        try:
            if resp.status_code == 404:
                raise NotFound(f"manifest for {name} not found: {await error_text(resp)}")
            if resp.status_code != 200:
                await fail(resp, registry, f"manifest {name}", creds)
            data = await read_capped(resp, self._opts.max_manifest_bytes, f"manifest {name}")
        except httpx.TransportError as exc:
            raise Unavailable(f"the connection to registry {registry} broke while reading manifest {name} "
                              f"({describe(exc)}); try again") from exc
        finally:
            await resp.aclose()
        return check_manifest(data, resp.headers.get("content-type", ""),
                              resp.headers.get("docker-content-digest", ""), reference, f"manifest {name}")

    async def list_tags(self, registry: str, repo: str, creds: Credentials | None = None) -> list[str]:
        """Every tag of *repo*, following the registry's pages (at most tagslist.MAX_TAGS).

        Raises:
            NotFound: no such repository. InvalidArgument: more tags than berth pulls at once.
            Unauthenticated, Unavailable, RegistryDataError: as get_manifest.
        """
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n={tagslist.PAGE}"
        what = f"the tags of {names.display_name(registry, repo)}"
        pages = 0
        while path is not None:
            pages += 1
            if pages > tagslist.MAX_PAGES:  # empty pages that always point on
                raise RegistryDataError(f"{what}: the registry sent more than {tagslist.MAX_PAGES} pages")
            resp = await self._transport.call(registry, "GET", path, creds=creds,
                                              scopes=[auth.scope(repo, ["pull"])], what=what)
            try:
                if resp.status_code == 404:
                    raise NotFound(f"repository {names.display_name(registry, repo)} not found: "
                                   f"{await error_text(resp)}")
                if resp.status_code != 200:
                    await fail(resp, registry, what, creds)
                data = await read_capped(resp, self._opts.max_manifest_bytes, what)
            except httpx.TransportError as exc:
                raise Unavailable(f"the connection to registry {registry} broke while reading {what} "
                                  f"({describe(exc)}); try again") from exc
            finally:
                await resp.aclose()
            tags += tagslist.parse_page(data, what)
            if len(tags) > tagslist.MAX_TAGS:
                raise InvalidArgument(f"{names.display_name(registry, repo)} has more than {tagslist.MAX_TAGS} "
                                      "tags, more than berth pulls at once: pull the tags you need by name")
            path = tagslist.next_page(resp.headers.get("link", ""), repo)
        return list(dict.fromkeys(tags))

    async def put_manifest(self, registry: str, repo: str, reference: str, media_type: str, data: bytes,
                           creds: Credentials | None = None) -> str:
        """Store manifest *data* under *reference* (a tag or its digest); return its digest.

        Raises:
            InvalidArgument: the registry refused the manifest (for instance a blob it names is missing).
            Unauthenticated, Unavailable, RegistryDataError: as for get_manifest.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        name = _ref_name(registry, repo, reference)
        resp = await self._transport.call(registry, "PUT", f"/v2/{repo}/manifests/{reference}", creds=creds,
                                          scopes=[auth.scope(repo, ["pull", "push"])], what=f"push of manifest {name}",
                                          headers={"Content-Type": media_type}, body=data)
        try:
            if not 200 <= resp.status_code < 300:
                await fail(resp, registry, f"push of manifest {name}", creds)
        finally:
            await resp.aclose()
        check_digest_header(resp, digest, f"manifest {name}")
        return digest

    # ------------------------------------------------------------------ #
    # Blobs

    async def blob_size(self, registry: str, repo: str, digest: str,
                        creds: Credentials | None = None) -> int | None:
        """The size of blob *digest* in *repo*, or None when the registry does not have it."""
        what = f"blob {digest} of {names.display_name(registry, repo)}"
        resp = await self._transport.call(registry, "HEAD", f"/v2/{repo}/blobs/{digest}", creds=creds,
                                          scopes=[auth.scope(repo, ["pull"])], what=what, follow=True)
        try:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                await fail(resp, registry, what, creds)
        finally:
            await resp.aclose()
        size = int_header(resp, "content-length")
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
        resp = await self._transport.call(registry, "GET", f"/v2/{repo}/blobs/{digest}", creds=creds,
                                          scopes=[auth.scope(repo, ["pull"])], what=what, headers=headers, follow=True)
        ok = False
        try:
            if resp.status_code == 200:
                ok = True
                return BlobStream(resp, start=0, length=int_header(resp, "content-length"),
                                  registry=registry, digest=digest)
            if resp.status_code == 206 and offset:
                first, last = parse_content_range(resp.headers.get("content-range", ""), offset, what, registry)
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
                raise NotFound(f"{what} not found: {await error_text(resp)}")
            await fail(resp, registry, what, creds)
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
        resp = await self._transport.call(registry, "POST", f"/v2/{repo}/blobs/uploads/?{query}", creds=creds,
                                          scopes=[auth.scope(repo, ["pull", "push"]), auth.scope(from_repo, ["pull"])],
                                          what=what)
        try:
            if resp.status_code == 201:
                return True
            if resp.status_code != 202:
                await fail(resp, registry, what, creds)
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
        resp = await self._transport.call(registry, "POST", f"/v2/{repo}/blobs/uploads/", creds=creds, scopes=scopes,
                                          what=what, attempts=1)
        location = await self._location(resp, 202, registry, what, creds)
        try:
            if chunk_size is None:
                resp = await self._transport.call(registry, "PUT", _with_digest(location, digest), creds=creds,
                                                  scopes=scopes, what=what, attempts=1,
                                                  headers={"Content-Type": OCTET, "Content-Length": str(size)},
                                                  body=lambda: _exactly(chunks(), size, digest))
            else:
                offset = 0
                async for piece in _rechunk(_exactly(chunks(), size, digest), chunk_size):
                    headers = {"Content-Type": OCTET, "Content-Length": str(len(piece)),
                               "Content-Range": f"{offset}-{offset + len(piece) - 1}"}
                    resp = await self._transport.call(registry, "PATCH", location, creds=creds, scopes=scopes,
                                                      what=what, attempts=1, headers=headers, body=piece)
                    location = await self._location(resp, 202, registry, what, creds)
                    offset += len(piece)
                resp = await self._transport.call(registry, "PUT", _with_digest(location, digest), creds=creds,
                                                  scopes=scopes, what=what, attempts=1, headers={"Content-Length": "0"})
            try:
                if resp.status_code != 201:
                    await fail(resp, registry, what, creds)
            finally:
                await resp.aclose()
        except BaseException:
            await self._cancel_upload(registry, location, creds, repo)
            raise
        check_digest_header(resp, digest, f"blob {digest}")

    async def _cancel_upload(self, registry: str, location: str, creds: Credentials | None, repo: str) -> None:
        """DELETE an upload session, best effort: a registry forgets stale uploads anyway."""
        try:
            resp = await self._transport.call(registry, "DELETE", location, creds=creds,
                                              scopes=[auth.scope(repo, ["pull", "push"])], what="upload cancel",
                                              attempts=1)
            await resp.aclose()
        except (BerthError, httpx.HTTPError) as exc:
            log.debug("could not cancel upload %s: %s", location, exc)

    async def _location(self, resp: httpx.Response, status: int, registry: str, what: str,
                        creds: Credentials | None) -> str:
        """The absolute upload URL a response names in Location; the response is closed."""
        try:
            if resp.status_code != status:
                await fail(resp, registry, what, creds)
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
        resp = await self._transport.call(registry, "GET", "/v2/", creds=creds, scopes=[], what="login")
        try:
            if resp.status_code != 200:
                await fail(resp, registry, "login", creds)
        finally:
            await resp.aclose()

    # ------------------------------------------------------------------ #
    # Search (Docker's v1 search API; the request and the answer are berth.registry.search's)

    async def search(self, index: str, query: str, limit: int,
                     creds: Credentials | None = None) -> list[search.SearchResult]:
        """What *index* finds for *query* (`GET /v1/search?q=&n=`), at most search.MAX_BODY bytes read.

        Raises:
            SearchNotServed: the index answered neither 200 nor 401/403 (a v2 registry: 404).
            Unauthenticated: the index wants credentials or refused them.
            Unavailable: the index could not be reached (after retries).
            RegistryDataError: the answer is too large or not search results.
        """
        what = f"search for {query!r}"
        try:
            resp = await self._transport.call(index, "GET", search.search_path(index, query, limit), creds=creds,
                                              scopes=[search.SCOPE], what=what,
                                              headers={"X-Docker-Token": "true", "Accept-Encoding": "identity"})
        except Unavailable as exc:
            if index != names.DOCKER_HUB:
                raise
            unknown = next((c for c in causes(exc) if isinstance(c, socket.gaierror)), None)
            cause = (f"unknown host: {unknown.strerror}" if unknown is not None else
                     describe(exc.__cause__) if isinstance(exc.__cause__, httpx.TransportError) else str(exc))
            raise Unavailable(f"cannot search Docker Hub: {search.HUB_INDEX} could not be reached ({cause}); "
                              "check the network, or search a registry of your own (HOST:PORT/TERM)") from exc
        try:
            if resp.status_code in (401, 403):
                await fail(resp, index, what, creds)
            if resp.status_code != 200:
                raise search.not_served(index, resp.status_code, await error_text(resp))
            data = bytearray()
            async for chunk in resp.aiter_raw():  # as sent: a compressed answer is not inflated (a bomb)
                data += chunk
                if len(data) > search.MAX_BODY:
                    raise RegistryDataError(f"registry {index} answered the {what} with more than "
                                            f"{search.MAX_BODY} bytes, more than berth reads for a search")
        except httpx.TransportError as exc:
            raise Unavailable(f"the connection to registry {index} broke while reading the {what} "
                              f"({describe(exc)}); try again") from exc
        finally:
            await resp.aclose()
        return search.parse_results(bytes(data), index)


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _ref_name(registry: str, repo: str, reference: str) -> str:
    sep = "@" if DIGEST.fullmatch(reference) else ":"
    return f"{names.display_name(registry, repo)}{sep}{reference}"


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
