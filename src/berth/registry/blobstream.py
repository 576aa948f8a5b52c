"""A blob download in progress, as RegistryClient.open_blob returns it.

Strategy: the stream hands on the registry's bytes as they come and counts
them, so that when the connection breaks the Unavailable it raises names the
offset to resume from; resuming (and verifying the digest) is the caller's
business, nothing is retried here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from berth.errors import Unavailable
from berth.registry.failures import describe


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
                              f"after byte {at} ({describe(exc)}); resume it from offset {at}") from exc

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> BlobStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
