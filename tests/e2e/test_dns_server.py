"""End-to-end tests of berth.network.dns: a real Resolver on real sockets.

Theory of operation
-------------------
Each test serves the resolver on port 53 of fresh random 127.53.x.y addresses
(all of 127/8 is local on Linux, so nothing needs configuring) and asks it
questions with a small blocking client built on dnswire, or with busybox's
nslookup. Forwarding goes to a fake upstream the test itself runs on another
127.53.x.y address; nothing here ever talks to the host's real resolver.
The resolver and the fake upstreams run on one asyncio loop in a background
thread, so the test body can use plain blocking sockets.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from berth.errors import FailedPrecondition
from berth.network import dns, dnswire, resolvconf
from berth.network.dnswire import CLASS_IN, Message, Rcode, Record, Type

T = TypeVar("T")

SHORT_ID = "3f2a1b9c0d4e"
NET_ONE = {  # what the network service would know about one network
    "web": ["172.30.0.2"],
    "www": ["172.30.0.2"],  # a network alias of web
    SHORT_ID: ["172.30.0.2"],
    "shared": ["172.30.0.3", "172.30.0.4"],  # an alias two containers carry
    "crowd": [f"172.30.1.{i}" for i in range(1, 61)],  # too many for 512 bytes
    "dual": ["172.30.0.5", "fd30::5"],
}
NET_TWO = {"db": ["172.31.0.2"]}
REVERSE_ONE = {"172.30.0.2": ["web.netone"]}
UPSTREAM_NAMES = {
    "example.test": ["198.51.100.7"],
    "big.test": [f"198.51.100.{i}" for i in range(1, 61)],
}


# --- a loop in a thread ---------------------------------------------------------


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


_taken: set[str] = set()


def free_address() -> str:
    """A 127.53.x.y address whose port 53 nobody uses (UDP and TCP)."""
    for _ in range(100):
        addr = f"127.53.{random.randrange(256)}.{random.randrange(2, 255)}"
        if addr in _taken:
            continue
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((addr, 53))
        except OSError:
            continue
        _taken.add(addr)
        return addr
    raise RuntimeError("no free 127.53.x.y address with port 53 unused")


# --- a fake upstream resolver -----------------------------------------------------


@dataclass
class FakeUpstream:
    """Answers UPSTREAM_NAMES (A, TTL 60) and NXDOMAIN for the rest; truncates UDP at 512 bytes."""

    address: str
    seen: list[tuple[str, int, str]] = field(default_factory=list)  # (transport, id, name)
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.Server | None = None

    def respond(self, data: bytes, transport: str) -> bytes:
        q = dnswire.parse(data)
        name = q.questions[0].name
        self.seen.append((transport, q.id, name))
        addrs = UPSTREAM_NAMES.get(name.lower())
        if addrs is None:
            return dnswire.encode(dnswire.reply(q, Rcode.NXDOMAIN))
        answers = tuple(Record(name, Type.A, CLASS_IN, 60, a) for a in addrs)
        return dnswire.encode(dnswire.reply(q, answers=answers), None if transport == "tcp" else 512)

    async def start(self) -> None:
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                self.transport.sendto(upstream.respond(data, "udp"), addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                (n,) = struct.unpack(">H", await reader.readexactly(2))
                reply = self.respond(await reader.readexactly(n), "tcp")
                writer.write(struct.pack(">H", len(reply)) + reply)
                await writer.drain()
            finally:
                writer.close()

        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.address, 53))
        self.tcp = await asyncio.start_server(tcp, self.address, 53)

    async def stop(self) -> None:
        assert self.udp is not None and self.tcp is not None
        self.udp.close()
        self.tcp.close()
        await self.tcp.wait_closed()


@pytest.fixture
def upstream(loop: LoopThread) -> Iterator[FakeUpstream]:
    up = FakeUpstream(free_address())
    loop.run(up.start())
    yield up
    loop.run(up.stop())


@dataclass
class Served:
    resolver: dns.Resolver
    one: str  # the address of network one's resolver
    two: str  # network two's


def _lookup(tables: dict[str, dict[str, list[str]]]) -> dns.Lookup:
    def lookup(server: str, name: str) -> list[str]:
        assert name == name.lower() and not name.endswith(".")
        return list(tables.get(server, {}).get(name, []))

    return lookup


@pytest.fixture
def served(loop: LoopThread, upstream: FakeUpstream) -> Iterator[Served]:
    one, two = free_address(), free_address()
    tables = {one: NET_ONE, two: NET_TWO}
    resolver = dns.Resolver(
        _lookup(tables),
        f"# the test's own upstream\nnameserver {upstream.address}\n",
        reverse=lambda server, ip: list(REVERSE_ONE.get(ip, [])) if server == one else [],
        loopback_upstreams=True,
    )
    loop.run(resolver.start(one))
    loop.run(resolver.start(two))
    yield Served(resolver, one, two)
    loop.run(resolver.close())


# --- a blocking client ----------------------------------------------------------


def exchange(server: str, data: bytes, *, tcp: bool = False, timeout: float = 10) -> bytes | None:
    """Send raw bytes to (server, 53) and return the reply, or None if none came in *timeout*."""
    if tcp:
        with socket.create_connection((server, 53), timeout=timeout) as s:
            s.sendall(struct.pack(">H", len(data)) + data)
            try:
                head = _recv_exactly(s, 2)
            except (TimeoutError, ConnectionError):
                return None
            if not head:
                return None
            return _recv_exactly(s, struct.unpack(">H", head)[0])
    # Over UDP, send again each second as stub resolvers do: a datagram may be
    # dropped while the server's receive buffer is full (the garbage test floods it).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((server, 53))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.send(data)
            s.settimeout(min(1.0, left))
            try:
                return s.recv(65535)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                return None
        return None


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def ask(server: str, name: str, qtype: int = Type.A, *, tcp: bool = False, edns: int | None = None) -> Message:
    qid = random.getrandbits(16)
    raw = exchange(server, dnswire.encode(dnswire.query(name, qtype, qid, edns_size=edns)), tcp=tcp)
    assert raw is not None, f"no answer from {server} to {name}"
    msg = dnswire.parse(raw)
    assert msg.id == qid and msg.qr
    assert msg.questions == (dnswire.Question(name.rstrip(".") if name != "." else "", qtype),)
    return msg


def addresses(msg: Message, rtype: int = Type.A) -> set[str]:
    return {str(r.data) for r in msg.answers if r.rtype == rtype}


# --- names the network knows --------------------------------------------------------


def test_names_aliases_and_short_ids(served: Served) -> None:
    for name in ("web", "WEB.", "Web", "www", SHORT_ID, SHORT_ID.upper()):
        msg = ask(served.one, name)
        assert msg.rcode == Rcode.NOERROR and msg.aa and msg.ra
        assert [(r.rtype, r.ttl, r.data) for r in msg.answers] == [(Type.A, 600, "172.30.0.2")]
        assert msg.answers[0].name == name.rstrip(".")  # the asker's spelling comes back
    assert addresses(ask(served.one, "shared")) == {"172.30.0.3", "172.30.0.4"}


def test_known_name_without_records_of_that_type_is_empty_noerror(served: Served) -> None:
    for qtype in (Type.AAAA, Type.MX, Type.TXT):
        msg = ask(served.one, "web", qtype)
        assert (msg.rcode, msg.answers, msg.aa) == (Rcode.NOERROR, (), True)
    assert addresses(ask(served.one, "dual", Type.AAAA), Type.AAAA) == {"fd30::5"}
    assert addresses(ask(served.one, "dual", Type.A)) == {"172.30.0.5"}


def test_each_network_answers_only_its_own_names(served: Served, upstream: FakeUpstream) -> None:
    assert addresses(ask(served.two, "db")) == {"172.31.0.2"}
    # "web" is not on network two: the question goes upstream, which does not know it.
    msg = ask(served.two, "web")
    assert msg.rcode == Rcode.NXDOMAIN and not msg.answers
    assert [(t, n) for t, _, n in upstream.seen] == [("udp", "web")]
    assert ask(served.one, "db").rcode == Rcode.NXDOMAIN


def test_reverse_lookups(served: Served, upstream: FakeUpstream) -> None:
    msg = ask(served.one, "2.0.30.172.in-addr.arpa", Type.PTR)
    assert [(r.rtype, r.ttl, r.data) for r in msg.answers] == [(Type.PTR, 600, "web.netone")] and msg.aa
    assert ask(served.one, "9.0.30.172.in-addr.arpa", Type.PTR).rcode == Rcode.NXDOMAIN  # forwarded
    assert [n for _, _, n in upstream.seen] == ["9.0.30.172.in-addr.arpa"]


def test_big_local_answers_truncate_over_udp_only(served: Served) -> None:
    cut = ask(served.one, "crowd")
    assert cut.tc and not cut.answers
    assert len(addresses(ask(served.one, "crowd", tcp=True))) == 60
    assert len(addresses(ask(served.one, "crowd", edns=4096))) == 60


# --- forwarding --------------------------------------------------------------------------


def test_forwarding_keeps_the_id_and_question(served: Served, upstream: FakeUpstream) -> None:
    msg = ask(served.one, "Example.TEST")  # ask() checks id and question
    assert msg.rcode == Rcode.NOERROR and not msg.aa
    assert [(r.rtype, r.ttl, r.data) for r in msg.answers] == [(Type.A, 60, "198.51.100.7")]
    assert ask(served.one, "nowhere.test").rcode == Rcode.NXDOMAIN
    assert [(t, n) for t, _, n in upstream.seen] == [("udp", "Example.TEST"), ("udp", "nowhere.test")]


def test_truncated_upstream_answer_is_relayed_then_asked_over_tcp(served: Served, upstream: FakeUpstream) -> None:
    cut = ask(served.one, "big.test")
    assert cut.tc and not cut.answers
    full = ask(served.one, "big.test", tcp=True)
    assert len(addresses(full)) == 60 and not full.tc
    assert [t for t, _, _ in upstream.seen] == ["udp", "tcp"]


def test_tcp_connection_carries_several_queries(served: Served) -> None:
    with socket.create_connection((served.one, 53), timeout=10) as s:
        for i, name in enumerate(["web", "shared", "example.test"]):
            q = dnswire.encode(dnswire.query(name, Type.A, 100 + i))
            s.sendall(struct.pack(">H", len(q)) + q)
            (n,) = struct.unpack(">H", _recv_exactly(s, 2))
            msg = dnswire.parse(_recv_exactly(s, n))
            assert msg.id == 100 + i and msg.answers


def test_an_upstream_that_stays_silent_is_skipped(loop: LoopThread, upstream: FakeUpstream) -> None:
    silent = free_address()
    addr = free_address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind((silent, 53))  # receives, never answers
        resolver = dns.Resolver(
            _lookup({}), f"nameserver {silent}\nnameserver {upstream.address}\n", loopback_upstreams=True
        )
        loop.run(resolver.start(addr))
        try:
            msg = ask(addr, "example.test")
            assert addresses(msg) == {"198.51.100.7"}
            assert hole.recv(512)  # the silent one was asked first
        finally:
            loop.run(resolver.close())


def test_servfail_when_no_upstream_answers(loop: LoopThread) -> None:
    silent, dead, addr = free_address(), free_address(), free_address()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind((silent, 53))
        resolver = dns.Resolver(_lookup({}), f"nameserver {dead}\nnameserver {silent}\n", loopback_upstreams=True)
        loop.run(resolver.start(addr))
        try:
            assert ask(addr, "example.test").rcode == Rcode.SERVFAIL
            assert ask(addr, "example.test", tcp=True).rcode == Rcode.SERVFAIL
        finally:
            loop.run(resolver.close())


def test_never_forwards_to_itself(loop: LoopThread) -> None:
    one, two = free_address(), free_address()
    resolver = dns.Resolver(_lookup({}), f"nameserver {one}\nnameserver {two}\n", loopback_upstreams=True)
    loop.run(resolver.start(one))
    loop.run(resolver.start(two))
    try:
        assert ask(one, "example.test").rcode == Rcode.SERVFAIL
        assert ask(two, "example.test", tcp=True).rcode == Rcode.SERVFAIL
    finally:
        loop.run(resolver.close())


def test_no_upstreams_without_loopback_permission() -> None:
    conf = "nameserver 127.0.0.53\nnameserver ::1\nnameserver 0.0.0.0\n"
    assert dns.Resolver(_lookup({}), conf).upstreams == ()
    assert dns.Resolver(_lookup({}), conf, loopback_upstreams=True).upstreams == ("127.0.0.53", "::1", "0.0.0.0")


# --- garbage ----------------------------------------------------------------------------


def test_garbage_is_answered_formerr_or_dropped_and_the_server_survives(served: Served) -> None:
    rng = random.Random(53)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(500):  # sent without waiting: some are answered FORMERR, the rest dropped
            s.sendto(bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))), (served.one, 53))
        seeds = [dnswire.encode(dnswire.query(n, Type.A, 1)) for n in ("web", "example.test")]
        for _ in range(500):  # queries with a few bytes changed, cut or added
            blob = bytearray(rng.choice(seeds))
            blob[rng.randrange(len(blob))] = rng.randrange(256)
            s.sendto(bytes(blob[: rng.randint(0, len(blob) + 4)]) + b"\x00" * rng.randint(0, 3), (served.one, 53))
    # A query header followed by junk: FORMERR carrying the id.
    raw = exchange(served.one, b"\x77\x77\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")
    assert raw is not None
    formerr = dnswire.parse(raw)
    assert (formerr.id, formerr.rcode, formerr.qr) == (0x7777, Rcode.FORMERR, True)
    # Responses, and anything shorter than a header, get nothing back.
    response = dnswire.encode(dnswire.reply(dnswire.query("web", Type.A, 9), Rcode.NOERROR))
    assert exchange(served.one, response, timeout=0.5) is None
    assert exchange(served.one, b"\x01\x02", timeout=0.5) is None
    # Two questions: FORMERR; another opcode: NOTIMP.
    two_q = Message(id=5, questions=(dnswire.Question("web", Type.A), dnswire.Question("www", Type.A)))
    assert dnswire.parse(exchange(served.one, dnswire.encode(two_q)) or b"").rcode == Rcode.FORMERR
    status = Message(id=6, opcode=dnswire.Opcode.STATUS)
    assert dnswire.parse(exchange(served.one, dnswire.encode(status)) or b"").rcode == Rcode.NOTIMP
    # Over TCP: a garbage message, then a connection that closes mid-length.
    raw = exchange(served.one, b"\x88\x88\x01\x00\x00\x05" + bytes(6), tcp=True)  # 5 questions, none there
    assert raw is not None and dnswire.parse(raw).rcode == Rcode.FORMERR
    with socket.create_connection((served.one, 53), timeout=5) as s:
        s.sendall(b"\x00")
    # Still serving.
    assert addresses(ask(served.one, "web")) == {"172.30.0.2"}
    assert addresses(ask(served.one, "web", tcp=True)) == {"172.30.0.2"}


def test_a_failing_lookup_gives_servfail(loop: LoopThread) -> None:
    addr = free_address()

    def broken(server: str, name: str) -> list[str]:
        raise RuntimeError("network service fell over")

    resolver = dns.Resolver(broken, "")
    loop.run(resolver.start(addr))
    try:
        assert ask(addr, "web").rcode == Rcode.SERVFAIL
    finally:
        loop.run(resolver.close())


# --- lifecycle ----------------------------------------------------------------------------


def test_start_stop_and_bind_errors(loop: LoopThread, served: Served) -> None:
    loop.run(served.resolver.start(served.one))  # again: nothing changes
    assert set(served.resolver.addresses) == {served.one, served.two}
    other = dns.Resolver(_lookup({}), "")
    with pytest.raises(FailedPrecondition, match="already in use"):
        loop.run(other.start(served.one))
    with pytest.raises(FailedPrecondition, match="no interface has that address"):
        loop.run(other.start("192.0.2.199"))  # TEST-NET-1: on no interface here; binding sends nothing
    loop.run(served.resolver.stop(served.two))
    loop.run(served.resolver.stop(served.two))  # unknown now: ignored
    assert served.resolver.addresses == (served.one,)
    assert exchange(served.two, dnswire.encode(dnswire.query("db", Type.A, 1)), timeout=0.5) is None
    assert addresses(ask(served.one, "web")) == {"172.30.0.2"}


# --- a real client ------------------------------------------------------------------------


def test_busybox_nslookup(served: Served) -> None:
    out = subprocess.run(
        ["busybox", "nslookup", "web", served.one], capture_output=True, text=True, timeout=30
    )
    assert "172.30.0.2" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(
        ["busybox", "nslookup", "example.test", served.one], capture_output=True, text=True, timeout=30
    )
    assert "198.51.100.7" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(
        ["busybox", "nslookup", "nowhere.test", served.one], capture_output=True, text=True, timeout=30
    )
    assert "NXDOMAIN" in out.stdout + out.stderr and "198.51" not in out.stdout


# --- resolv.conf ----------------------------------------------------------------------------


def test_parse_resolv_conf_and_write_the_containers() -> None:
    conf = resolvconf.parse_resolv_conf(
        "# comment\n; another\nnameserver 192.0.2.53\nnameserver not-an-ip\nnameserver fd00::53\n"
        "nameserver 192.0.2.53\ndomain old.example\nsearch corp.example lab.example\n"
        "options rotate\noptions timeout:1 attempts:3\n"
    )
    assert conf.nameservers == ("192.0.2.53", "fd00::53", "192.0.2.53")
    assert conf.search == ("corp.example", "lab.example")
    assert conf.options == ("rotate", "timeout:1", "attempts:3")
    assert resolvconf.upstreams(conf) == ("192.0.2.53", "fd00::53")
    text = resolvconf.container_resolv_conf("172.30.0.1", conf)
    assert text.splitlines()[1:] == [
        "nameserver 172.30.0.1",
        "search corp.example lab.example",
        "options rotate timeout:1 attempts:3 ndots:0",
    ]
    assert "ndots:0" not in resolvconf.container_resolv_conf("172.30.0.1", resolvconf.ResolvConf(options=("ndots:2",)))
