"""The embedded DNS resolver that berthd serves on each user-defined network.

Strategy: one `Resolver` per daemon, listening on UDP and TCP port 53 of every
network's gateway address (`start(address)` per network). A container's
/etc/resolv.conf names its gateway, so the address a query arrives on tells
which network asked; the resolver passes that address and the lower-cased name
to the `lookup` callback the network service gives it, and the service answers
from its own records (container names, aliases, short ids). What the callback
does not know is forwarded, bytes unchanged apart from a fresh query id, to the
host's resolvers as listed in the resolv.conf text given at construction.

Answers follow Docker's embedded DNS (127.0.0.11): TTL 600, authoritative; a
known name asked for a type it has no records of (AAAA for an IPv4-only
container, MX, ...) gets an empty NOERROR, never NXDOMAIN, so stub resolvers do
not give up on the A records. Reverse (PTR) queries are answered when a
`reverse` callback knows the address, and forwarded otherwise.

An address served with `forward=False` (an internal network's gateway) answers
only the network's own names: anything else gets SERVFAIL at once and nothing
is sent upstream, as Docker's embedded DNS does for a container without
external access. A container on an internal network cannot learn outside names,
nor use the host's resolvers to carry data out.

Forwarding mirrors the client's transport: a UDP query goes upstream over UDP
and a truncated upstream answer is relayed as it is, so the client asks again
over TCP and that query goes upstream over TCP. Each upstream gets
`timeout` seconds (2 by default) in turn; an upstream's SERVFAIL/REFUSED is kept
only as a last resort, and when nobody answers the client gets SERVFAIL.
Upstreams on loopback are skipped unless asked for (Docker drops them from the
host's resolv.conf), and so is any address this resolver itself serves on, which
would otherwise loop a query back to us until it timed out. Reading resolv.conf
is berth.network.resolvconf's part, asking one upstream berth.network.dnsupstream's.

Nothing that arrives can stop the server: `dnswire.parse` raises
`MalformedMessage` for garbage, which is answered FORMERR when it has a query
header and dropped otherwise; responses (QR set) are dropped; any other error
in handling one query is logged and answered SERVFAIL.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import secrets
import struct
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from berth.errors import FailedPrecondition, InvalidArgument
from berth.network import dnswire
from berth.network.dnsupstream import Matcher, ask_tcp, ask_udp
from berth.network.dnswire import Rcode, Type
from berth.network.resolvconf import PORT, parse_resolv_conf, upstreams

log = logging.getLogger(__name__)

TTL = 600  # seconds, as Docker's embedded DNS answers
FORWARD_TIMEOUT = 2.0  # seconds given to each upstream resolver
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may sit between queries
MAX_TCP_CONNECTIONS = 64  # per address; more are closed at once
MAX_FORWARDS = 256  # queries waiting on upstreams at once; more get SERVFAIL

Lookup = Callable[[str, str], list[str]]
"""(address the query arrived on, lower-cased name without trailing dot) -> addresses; [] = unknown."""

ReverseLookup = Callable[[str, str], list[str]]
"""(address the query arrived on, IP address asked about) -> names; [] = unknown."""

ClientLookup = Callable[[str, str, str], list[str]]
"""(server address, client address, name) -> addresses: names only that client sees (a container's legacy
links on a user network); asked before Lookup."""


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError as exc:
        raise InvalidArgument(f"{address!r} is not an IP address: give the network's gateway, like 172.18.0.1") from exc


@dataclass(slots=True)
class _Listener:
    """What serving one address holds: its sockets and the work in flight."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # UDP queries and TCP connections
    forward: bool = True  # names the network does not know go to the upstreams
    tcp_connections: int = 0
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None


class Resolver:
    """Serves DNS on port 53 (UDP and TCP) of any number of addresses, one per network.

    Args:
        lookup: answers names for the network whose gateway the query arrived on.
        resolv_conf: text of the host's resolv.conf; its nameservers are the upstreams.
        reverse: answers PTR queries for the network (None: forward them all).
        loopback_upstreams: keep 127.x/::1 nameservers (berthd forwards from the host's
            namespace, where they are reachable; tests run their upstream there).
        timeout: seconds given to each upstream.
    """

    def __init__(
        self,
        lookup: Lookup,
        resolv_conf: str,
        *,
        reverse: ReverseLookup | None = None,
        loopback_upstreams: bool = False,
        timeout: float = FORWARD_TIMEOUT,
        client_lookup: ClientLookup | None = None,
    ) -> None:
        self._lookup = lookup
        self._client_lookup = client_lookup
        self._reverse = reverse
        self._loopback = loopback_upstreams
        self._timeout = timeout
        self._upstreams: tuple[str, ...] = ()
        self._listeners: dict[str, _Listener] = {}
        self._forwards = 0
        self.set_resolv_conf(resolv_conf)

    # --- configuration -----------------------------------------------------

    def set_resolv_conf(self, text: str) -> None:
        """Take the upstreams from *text* (call again when the host's resolv.conf changes)."""
        self._upstreams = upstreams(parse_resolv_conf(text), loopback=self._loopback)
        if not self._upstreams:
            log.warning("no usable nameserver in the host's resolv.conf: names outside the networks will fail")

    @property
    def upstreams(self) -> tuple[str, ...]:
        return self._upstreams

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses being served, canonical form."""
        return tuple(self._listeners)

    # --- serving -------------------------------------------------------------

    async def start(self, address: str, *, forward: bool = True) -> None:
        """Serve on (*address*, 53), UDP and TCP. Serving an address twice only updates *forward*.

        Args:
            forward: send names the network does not know to the upstreams; False
                (an internal network) answers them SERVFAIL without asking anyone.

        Raises:
            InvalidArgument: *address* is not an IP address.
            FailedPrecondition: the address is not on this host, or port 53 there is taken.
        """
        addr = _canonical(address)
        if addr in self._listeners:
            self._listeners[addr].forward = forward
            return
        loop = asyncio.get_running_loop()
        listener = _Listener(forward=forward)
        try:
            listener.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, addr, listener.tasks), local_addr=(addr, PORT)
            )
        except OSError as exc:
            raise _bind_error(addr, "UDP", exc) from exc
        try:
            listener.tcp = await asyncio.start_server(
                lambda r, w: self._serve_tcp(addr, listener, r, w), host=addr, port=PORT, reuse_address=True
            )
        except OSError as exc:
            listener.udp.close()
            raise _bind_error(addr, "TCP", exc) from exc
        self._listeners[addr] = listener
        log.info("DNS resolver serving on %s port %d", addr, PORT)

    async def stop(self, address: str) -> None:
        """Stop serving on *address* and drop its queries in flight; unknown addresses are ignored."""
        listener = self._listeners.pop(_canonical(address), None)
        if listener is None:
            return
        assert listener.udp is not None and listener.tcp is not None
        listener.udp.close()
        listener.tcp.close()
        for task in list(listener.tasks):
            task.cancel()
        if listener.tasks:
            await asyncio.gather(*listener.tasks, return_exceptions=True)
        await listener.tcp.wait_closed()
        log.info("DNS resolver stopped on %s", address)

    async def close(self) -> None:
        """Stop serving everywhere."""
        for addr in list(self._listeners):
            await self.stop(addr)

    # --- answering -----------------------------------------------------------

    async def answer(self, server: str, data: bytes, *, tcp: bool = False, client: str = "") -> bytes | None:
        """The reply to the query *data* that arrived on *server*, or None to send nothing.

        Transport-free: the UDP and TCP servers both call this. For UDP (*tcp* false)
        a local answer larger than the client's payload size comes back truncated.
        """
        try:
            msg = dnswire.parse(data)
        except dnswire.MalformedMessage as exc:
            log.debug("malformed DNS query on %s: %s", server, exc)
            return dnswire.error_reply_to_raw(data, Rcode.FORMERR)
        if msg.qr:
            return None
        try:
            return await self._answer(server, msg, data, tcp, client)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DNS query on %s failed; answering SERVFAIL", server)
            return dnswire.encode(dnswire.reply(msg, Rcode.SERVFAIL))

    async def _answer(self, server: str, msg: dnswire.Message, data: bytes, tcp: bool, client: str = "") -> bytes:
        if msg.opcode != dnswire.Opcode.QUERY:
            return dnswire.encode(dnswire.reply(msg, Rcode.NOTIMP))
        if len(msg.questions) != 1:
            bare = dnswire.Message(id=msg.id, opcode=msg.opcode, rd=msg.rd)
            return dnswire.encode(dnswire.reply(bare, Rcode.FORMERR))
        limit = None if tcp else (dnswire.edns_payload_size(msg) or dnswire.MAX_UDP)
        local = self._local(server, msg.questions[0], client)
        if local is not None:
            return dnswire.encode(dnswire.reply(msg, Rcode.NOERROR, local, aa=True), limit)
        listener = self._listeners.get(server)
        if listener is not None and not listener.forward:
            return dnswire.encode(dnswire.reply(msg, Rcode.SERVFAIL), limit)
        forwarded = await self._forward(msg, data, tcp)
        if forwarded is None:
            return dnswire.encode(dnswire.reply(msg, Rcode.SERVFAIL), limit)
        return forwarded

    def _local(self, server: str, q: dnswire.Question, client: str = "") -> tuple[dnswire.Record, ...] | None:
        """Records for *q* from the network's own names; None when the network does not know it."""
        name = q.name.lower()
        if q.qclass != dnswire.CLASS_IN or not name:
            return None
        if q.qtype == Type.PTR:
            address = dnswire.address_from_reverse(name)
            if address is None or self._reverse is None:
                return None
            names = self._reverse(server, address)
            if not names:
                return None
            return tuple(dnswire.Record(q.name, Type.PTR, dnswire.CLASS_IN, TTL, n.rstrip(".")) for n in names)
        addresses = self._client_lookup(server, client, name) if client and self._client_lookup else []
        addresses = addresses or self._lookup(server, name)
        if not addresses:
            return None
        v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
        wanted: list[tuple[int, str]] = []
        if q.qtype in (Type.A, Type.ANY):
            wanted += [(Type.A, a) for a in v4]
        if q.qtype in (Type.AAAA, Type.ANY):
            wanted += [(Type.AAAA, a) for a in v6]
        random.shuffle(wanted)  # round-robin over the containers behind one alias, as Docker does
        return tuple(dnswire.Record(q.name, rtype, dnswire.CLASS_IN, TTL, a) for rtype, a in wanted)

    # --- forwarding ----------------------------------------------------------

    async def _forward(self, msg: dnswire.Message, data: bytes, tcp: bool) -> bytes | None:
        """The first usable upstream answer, with the client's id put back; None if there is none."""
        targets = [u for u in self._upstreams if _canonical(u.split("%")[0]) not in self._listeners]
        if not targets:
            return None
        if self._forwards >= MAX_FORWARDS:
            log.warning("%d DNS queries already wait on upstreams; refusing more", self._forwards)
            return None
        self._forwards += 1
        try:
            fallback: bytes | None = None
            for upstream in targets:
                upstream_id = secrets.randbits(16)  # unguessable, against spoofed answers
                wire = struct.pack(">H", upstream_id) + data[2:]
                ask = ask_tcp if tcp else ask_udp
                try:
                    raw = await asyncio.wait_for(ask(upstream, wire, Matcher(upstream_id, msg)), self._timeout)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, dnswire.MalformedMessage) as exc:
                    log.debug("upstream %s did not answer %s: %r", upstream, msg.questions[0].name, exc)
                    continue
                answer = data[:2] + raw[2:]
                if dnswire.parse(raw).rcode in (Rcode.SERVFAIL, Rcode.REFUSED):
                    fallback = answer
                    continue
                return answer
            return fallback
        finally:
            self._forwards -= 1

    # --- TCP server ------------------------------------------------------------

    async def _serve_tcp(
        self, server: str, listener: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            listener.tasks.add(task)
        peer = writer.get_extra_info("peername")
        listener.tcp_connections += 1
        try:
            if listener.tcp_connections > MAX_TCP_CONNECTIONS:
                log.warning("too many DNS TCP connections on %s; closing one", server)
                return
            while True:
                # RFC 1035 4.2.2: each message is preceded by its length as two bytes.
                prefix = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack(">H", prefix)
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                reply = await self.answer(server, data, tcp=True, client=str((peer or ("",))[0]))
                if reply is None:
                    return
                writer.write(struct.pack(">H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        finally:
            listener.tcp_connections -= 1
            if task is not None:
                listener.tasks.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, server: str, tasks: set[asyncio.Task[None]]) -> None:
        self._resolver = resolver
        self._server = server
        self._tasks = tasks
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._spawn(self._handle(data, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket on %s: %s", self._server, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = await self._resolver.answer(self._server, data, tcp=False, client=str(addr[0]))
        if reply is not None and self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)


def _bind_error(address: str, proto: str, exc: OSError) -> FailedPrecondition:
    if exc.errno == errno.EADDRINUSE:
        return FailedPrecondition(
            f"{proto} port 53 on {address} is already in use by another program: "
            f"stop it (see `ss -lnp 'sport = 53'`) so berth can serve DNS for the network"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return FailedPrecondition(
            f"cannot serve DNS on {address}: no interface has that address; "
            f"bring the network's bridge up with its gateway address first"
        )
    return FailedPrecondition(f"cannot serve DNS ({proto}) on {address} port 53: {exc}")
