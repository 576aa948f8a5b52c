"""Asking an upstream resolver: one query over UDP or TCP, and only its real answer accepted.

Strategy: a forwarded query carries a fresh, unguessable id, and a `Matcher`
accepts only a response with that id and the same question, so a stray or
spoofed datagram is ignored while the real answer may still arrive. Over UDP
the socket is connected to the upstream, so the kernel delivers nothing from
anyone else, and an ICMP error ends the wait at once; over TCP the message is
length-prefixed (RFC 1035 4.2.2) and a different answer is a MalformedMessage.
Timeouts are the caller's: it wraps each ask in its own deadline.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from berth.network import dnswire
from berth.network.resolvconf import PORT


async def ask_udp(upstream: str, wire: bytes, matcher: Matcher) -> bytes:
    """The upstream's answer to *wire* over UDP: the first datagram *matcher* accepts."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()
    # A connected socket: the kernel delivers only datagrams from the upstream.
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _UpstreamProtocol(got, matcher), remote_addr=(upstream, PORT)
    )
    try:
        transport.sendto(wire)
        return await got
    finally:
        transport.close()


async def ask_tcp(upstream: str, wire: bytes, matcher: Matcher) -> bytes:
    """The upstream's answer to *wire* over TCP; MalformedMessage when it answers another query."""
    reader, writer = await asyncio.open_connection(upstream, PORT)
    try:
        writer.write(struct.pack(">H", len(wire)) + wire)
        await writer.drain()
        (length,) = struct.unpack(">H", await reader.readexactly(2))
        raw = await reader.readexactly(length)
        if not matcher.matches(raw):
            raise dnswire.MalformedMessage(f"upstream {upstream} answered a different query over TCP")
        return raw
    finally:
        writer.close()


class Matcher:
    """Tells whether bytes from an upstream answer the query we sent it."""

    def __init__(self, upstream_id: int, query: dnswire.Message) -> None:
        self.id = upstream_id
        q = query.questions[0]
        self.question = (q.name.lower(), q.qtype, q.qclass)

    def matches(self, raw: bytes) -> bool:
        try:
            msg = dnswire.parse(raw)
        except dnswire.MalformedMessage:
            return False
        if not msg.qr or msg.id != self.id or len(msg.questions) != 1:
            return False
        q = msg.questions[0]
        return (q.name.lower(), q.qtype, q.qclass) == self.question


class _UpstreamProtocol(asyncio.DatagramProtocol):
    def __init__(self, got: asyncio.Future[bytes], matcher: Matcher) -> None:
        self._got = got
        self._matcher = matcher

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # Anything that is not the answer (a stray or spoofed datagram) is ignored;
        # the real answer may still come before the timeout.
        if not self._got.done() and self._matcher.matches(data):
            self._got.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: this upstream will not answer.
        if not self._got.done():
            self._got.set_exception(exc)
