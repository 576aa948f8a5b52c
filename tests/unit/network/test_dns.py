"""Unit tests of berth.network.dns: `Resolver.answer`, transport-free (no sockets).

The resolver is given no upstreams, so anything the network does not know is
answered SERVFAIL at once; tests/e2e/test_dns_server.py covers forwarding and the
real sockets.
"""

from __future__ import annotations

import asyncio

import pytest

from berth.network import dns, dnswire
from berth.network.dnswire import CLASS_IN, Message, Question, Rcode, Record, Type

SERVER = "172.30.0.1"
NAMES = {"web": ["172.30.0.2"], "dual": ["172.30.0.5", "fd30::5"], "crowd": [f"172.30.1.{i}" for i in range(1, 61)]}


@pytest.fixture
def asked() -> list[str]:
    return []


@pytest.fixture
def resolver(asked: list[str]) -> dns.Resolver:
    def lookup(server: str, name: str) -> list[str]:
        asked.append(name)
        return list(NAMES.get(name, [])) if server == SERVER else []

    def reverse(server: str, address: str) -> list[str]:
        return ["web.netone"] if address == "172.30.0.2" else []

    return dns.Resolver(lookup, "", reverse=reverse)


def answer(resolver: dns.Resolver, data: bytes, *, tcp: bool = False) -> bytes | None:
    return asyncio.run(resolver.answer(SERVER, data, tcp=tcp))


def ask(resolver: dns.Resolver, msg: Message, *, tcp: bool = False) -> Message:
    data = dnswire.encode(msg)
    raw = answer(resolver, data, tcp=tcp)
    assert raw is not None
    reply = dnswire.parse(raw)
    assert reply.id == msg.id and reply.qr and reply.questions == dnswire.parse(data).questions
    return reply


def test_names_are_answered_in_the_askers_spelling(resolver: dns.Resolver, asked: list[str]) -> None:
    reply = ask(resolver, dnswire.query("WeB.", Type.A, 7))
    assert (reply.rcode, reply.aa, reply.ra) == (Rcode.NOERROR, True, True)
    assert reply.answers == (Record("WeB", Type.A, CLASS_IN, dns.TTL, "172.30.0.2"),)
    assert asked == ["web"]  # the network is asked in lower case, without the dot
    assert ask(resolver, dnswire.query("web", Type.MX, 8)).answers == ()  # known name: empty NOERROR
    assert [r.data for r in ask(resolver, dnswire.query("dual", Type.AAAA, 9)).answers] == ["fd30::5"]


def test_unknown_names_fail_without_upstreams(resolver: dns.Resolver) -> None:
    assert ask(resolver, dnswire.query("nowhere.test", Type.A, 1)).rcode == Rcode.SERVFAIL


def test_big_answers_truncate_over_udp_unless_edns_or_tcp_allows(resolver: dns.Resolver) -> None:
    cut = ask(resolver, dnswire.query("crowd", Type.A, 1))
    assert cut.tc and cut.answers == ()
    assert len(ask(resolver, dnswire.query("crowd", Type.A, 2), tcp=True).answers) == 60
    big = ask(resolver, dnswire.query("crowd", Type.A, 3, edns_size=4096))
    assert len(big.answers) == 60 and not big.tc and dnswire.edns_payload_size(big) == 1232
    cut = ask(resolver, dnswire.query("crowd", Type.A, 4, edns_size=600))
    assert cut.tc and cut.answers == () and dnswire.edns_payload_size(cut) == 1232


def test_reverse_names(resolver: dns.Resolver) -> None:
    reply = ask(resolver, dnswire.query("2.0.30.172.IN-ADDR.ARPA", Type.PTR, 1))
    assert reply.answers == (Record("2.0.30.172.IN-ADDR.ARPA", Type.PTR, CLASS_IN, dns.TTL, "web.netone"),)
    # The same digits with an escaped dot are another name: not the container's.
    assert ask(resolver, dnswire.query("2\\.0.30.172.in-addr.arpa", Type.PTR, 2)).rcode == Rcode.SERVFAIL


def test_names_with_odd_bytes_reach_the_lookup_escaped(resolver: dns.Resolver, asked: list[str]) -> None:
    for name in ("we\\.b", "web\\000", "w\\255eb", "\\@"):
        assert ask(resolver, dnswire.query(name, Type.A, 1)).rcode == Rcode.SERVFAIL
    assert asked == ["we\\.b", "web\\000", "w\\255eb", "\\@"]


def test_garbage_gets_formerr_or_nothing(resolver: dns.Resolver) -> None:
    raw = answer(resolver, b"\x77\x77\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")
    formerr = dnswire.parse(raw or b"")
    assert (formerr.id, formerr.qr, formerr.rd, formerr.rcode, formerr.questions) == (0x7777, True, True, 1, ())
    # A compression pointer loop, over TCP too.
    loop = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\xc0\x0c\x00\x01\x00\x01"
    assert dnswire.parse(answer(resolver, loop, tcp=True) or b"").rcode == Rcode.FORMERR
    assert answer(resolver, b"\x01\x02") is None  # shorter than a header
    response = dnswire.encode(dnswire.reply(dnswire.query("web", Type.A, 9)))
    assert answer(resolver, response) is None  # a response: never answered
    assert answer(resolver, b"\x12\x34\x81\x00" + bytes(8) + b"\xff") is None  # a malformed one neither


def test_queries_it_does_not_serve(resolver: dns.Resolver) -> None:
    two = Message(id=5, questions=(Question("web", Type.A), Question("www", Type.A)))
    reply = dnswire.parse(answer(resolver, dnswire.encode(two)) or b"")  # bare: no question section
    assert (reply.id, reply.rcode, reply.questions) == (5, Rcode.FORMERR, ())
    for opcode in (dnswire.Opcode.STATUS, dnswire.Opcode.UPDATE, dnswire.Opcode.NOTIFY):
        msg = Message(id=6, opcode=opcode, questions=(Question("web", Type.A),))
        reply = ask(resolver, msg)
        assert (reply.opcode, reply.rcode) == (opcode, Rcode.NOTIMP)
