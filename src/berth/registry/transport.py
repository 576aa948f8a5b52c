"""How every registry request is sent: retries around redirects around auth.

Strategy: a request goes through three layers, innermost first:

1. auth (`_authed`): send with the Authorization the registry is known to
   want (basic, or a cached bearer token for this registry, credentials and
   scope); on 401, read WWW-Authenticate, get a token from the realm (or use
   basic auth) and send once more. A second 401 is Unauthenticated.
2. redirects, for blob GET/HEAD only: followed by hand so that the
   Authorization header never goes to another host (blob storage).
3. retries (`_retrying`): connection errors, 429 and 5xx are retried with
   exponential backoff; 4xx answers are final. Requests carrying a body
   that cannot be replayed (upload chunks) are not retried one by one: the
   client starts the whole upload again instead (`attempts=1` here).

The response comes back streaming and unread: what it means is the caller's
business (berth.registry.client). Token state (what each registry asked for
last, and the tokens, by registry, credentials, realm and scopes) lives here,
one Transport per RegistryClient.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Union

import httpx

from berth.errors import FailedPrecondition, Unauthenticated, Unavailable
from berth.registry.base import RegistryDataError, RegistryOptions, RegistryUnavailable
from berth.registry.endpoints import Endpoint, Endpoints
from berth.registry.failures import (
    causes,
    describe,
    error_text,
    error_text_of,
    login_hint,
)
from berth.wire import registryauth as auth
from berth.wire import registrynames as names
from berth.wire.registryauth import Challenge, Credentials

log = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)

_UNKNOWN_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}

# A request body: bytes, or a factory of fresh async iterators so the body can be sent again.
_Body = Union[bytes, Callable[[], AsyncIterator[bytes]], None]


@dataclass(frozen=True, slots=True)
class _AuthScheme:
    """What a registry asked for the last time it said 401."""

    scheme: str  # "basic" or "bearer"
    realm: str = ""
    service: str = ""


class Transport:
    """Sends requests to any number of registries (see the module docstring); close it with aclose()."""

    def __init__(self, options: RegistryOptions) -> None:
        self._opts = options
        self._endpoints = Endpoints(options)
        self._schemes: dict[str, _AuthScheme] = {}
        self._tokens: dict[tuple[str, str, str, tuple[str, ...]], tuple[str, float]] = {}
        self._token_locks: dict[tuple[str, str, str, tuple[str, ...]], asyncio.Lock] = {}

    async def aclose(self) -> None:
        await self._endpoints.aclose()

    # ------------------------------------------------------------------ #
    # Requests: retries around redirects around auth

    async def call(self, registry: str, method: str, path: str, *, creds: Credentials | None,
                   scopes: list[str], what: str, headers: dict[str, str] | None = None, body: _Body = None,
                   attempts: int | None = None, follow: bool = False) -> httpx.Response:
        """Send a request to *registry* and return the (streaming) response; the caller closes it."""

        async def attempt() -> httpx.Response:
            ep = await self._endpoints.for_registry(registry)
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
                problem, answered = describe(exc), False
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                problem, answered = f"it answered {resp.status_code} {await error_text(resp)}".rstrip(), True
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
        for cause in causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                where = self._opts.certs_dir / registry / "ca.crt"
                raise FailedPrecondition(
                    f"the TLS certificate of registry {registry} is not trusted ({cause.verify_message or cause}); "
                    f"put the CA certificate that signed it in {where}, or list {registry} in "
                    "insecure-registries") from exc
            if isinstance(cause, socket.gaierror) and cause.errno in _UNKNOWN_HOST:
                raise Unavailable(f"cannot reach registry {registry}: {names.endpoint_host(registry)} is an "
                                  f"unknown host ({cause.strerror}); check the name and the network") from exc

    async def _authed(self, ep: Endpoint, registry: str, method: str, url: str, creds: Credentials | None,
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
        detail = await error_text(resp)
        await resp.aclose()
        challenges = auth.parse_challenges(header)
        authorization = await self._authorize(ep, registry, challenges, scopes, creds)
        if authorization is None:
            raise Unauthenticated(f"registry {registry} wants authentication ({header or 'no challenge given'}) "
                                  f"that berth cannot give: {login_hint(registry, creds)}")
        sent["Authorization"] = authorization
        resp = await self._send(ep, method, url, sent, body)
        if resp.status_code == 401:
            detail = await error_text(resp) or detail
            await resp.aclose()
            raise Unauthenticated(f"registry {registry} refused access ({detail or '401'}): "
                                  f"{login_hint(registry, creds)}")
        return resp

    async def _send(self, ep: Endpoint, method: str, url: str, headers: dict[str, str],
                    body: _Body) -> httpx.Response:
        content = body() if callable(body) else body
        request = ep.client.build_request(method, url, headers=headers, content=content)
        log.debug("%s %s", method, url)
        return await ep.client.send(request, stream=True)

    async def _follow(self, ep: Endpoint, resp: httpx.Response, method: str,
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

    async def _known_auth(self, ep: Endpoint, registry: str, scopes: list[str],
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

    async def _authorize(self, ep: Endpoint, registry: str, challenges: list[Challenge], scopes: list[str],
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

    async def _token(self, ep: Endpoint, registry: str, known: _AuthScheme, scopes: list[str],
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

    async def _fetch_token(self, ep: Endpoint, registry: str, known: _AuthScheme, scopes: list[str],
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
                                  f"({resp.status_code} {error_text_of(resp.content)}): {login_hint(registry, creds)}")
        if resp.status_code != 200:
            raise RegistryDataError(f"the token server of registry {registry} ({realm}) answered "
                                    f"{resp.status_code} {error_text_of(resp.content)}")
        try:
            return auth.parse_token_response(resp.content, realm)
        except ValueError as exc:
            raise RegistryDataError(str(exc)) from exc


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
