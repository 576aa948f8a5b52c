"""What an Engine API handler answers: a whole reply, a stream of chunks, or the connection itself.

Strategy: handlers return data and never write to the connection; the server
(berth.api.server) frames and sends all three kinds in one place, with the
headers every answer carries:
  Reply        a complete body (JSON-able or bytes, or none), with status and headers
  Stream       an async iterator of body chunks, sent chunked as they come
  Hijack       the raw connection: after a 101 UPGRADED (client asked for
               `Upgrade: tcp`) or a bare 200 (it did not), `run` gets the
               socket's reader/writer plus any bytes h11 already buffered
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable


@dataclass
class Reply:
    status: int = 200
    body: Any = None                 # JSON-able, or bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class Stream:
    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Hijack:
    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
    content_type: str = "application/vnd.docker.raw-stream"
