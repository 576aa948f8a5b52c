"""Per registry, where to send requests and with which TLS settings: the ones Docker would use.

Strategy: an endpoint is a base URL and an httpx client, made once per
registry (under a lock, so concurrent first requests share it) and kept
until the client closes:

- secure registries get https, verified against the system CAs plus
  <certs_dir>/<registry>/*.crt, with a client certificate from
  <certs_dir>/<registry>/<name>.cert + <name>.key when there is one;
- insecure registries (listed in insecure_registries, or loopback ones) are
  probed once: https without verification if the server speaks TLS, plain
  http otherwise.

Redirects are never followed by httpx here: the transport follows them by
hand (berth.registry.transport).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from berth.errors import FailedPrecondition
from berth.registry.base import RegistryOptions
from berth.registry.failures import causes
from berth.wire import registrynames as names

log = logging.getLogger(__name__)

_USER_AGENT = "berth/0.1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A registry's base URL and the httpx client that carries its TLS settings."""

    base: str  # "https://host:port"
    client: httpx.AsyncClient

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base + path_or_url


class Endpoints:
    """The endpoint of every registry used so far; close them with aclose()."""

    def __init__(self, options: RegistryOptions) -> None:
        self._opts = options
        self._endpoints: dict[str, Endpoint] = {}
        self._endpoint_locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for ep in endpoints:
            await ep.client.aclose()

    async def for_registry(self, registry: str) -> Endpoint:
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
                ep = Endpoint(f"https://{host}", self._new_client(self._tls_context(registry, verify=True)))
            self._endpoints[registry] = ep
            return ep

    async def _probe(self, registry: str, host: str) -> Endpoint:
        """For an insecure registry: https without verification if it speaks TLS, else plain http."""
        tls = self._new_client(self._tls_context(registry, verify=False))
        try:
            await tls.get(f"https://{host}/v2/")
            return Endpoint(f"https://{host}", tls)
        except httpx.TransportError as tls_error:
            await tls.aclose()
            if any(isinstance(c, socket.gaierror) for c in causes(tls_error)):
                raise
            plain = self._new_client(self._tls_context(registry, verify=True))
            try:
                await plain.get(f"http://{host}/v2/")
            except httpx.TransportError:
                await plain.aclose()
                raise tls_error from None
            log.info("registry %s does not speak TLS; using plain HTTP", registry)
            return Endpoint(f"http://{host}", plain)

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


def _cert_dirs(certs_dir: Path, registry: str) -> list[Path]:
    """Where Docker looks for *registry*'s TLS files: certs.d/<host:port>/ (and the API host's, for Hub)."""
    out = []
    for name in dict.fromkeys((registry, names.endpoint_host(registry))):
        folder = certs_dir / name
        if folder.is_dir():
            out.append(folder)
    return out
