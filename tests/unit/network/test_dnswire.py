"""Unit tests of berth.network.dnswire: round trips, compression, malformed input.

Hand-assembled byte strings (written from RFC 1035 section 4 and RFC 6891/8945
for OPT and TSIG) check the codec against the format itself rather than against
its own encoder.
"""

from __future__ import annotations

import random
import struct

import pytest

from berth.errors import InvalidArgument
from berth.network import dnswire
from berth.network.dnswire import (
    CLASS_IN,
    MalformedMessage,
    Message,
    Question,
    Rcode,
    Record,
    Type,
)

# A response to "web.example" A, written out by hand: the answer's owner name is a
# pointer (0xC00C) to the question name at offset 12.
HAND_RESPONSE = (
    b"\xbe\xef"  # id
    b"\x85\x80"  # QR, opcode 0, AA, RD, RA, rcode 0
    b"\x00\x01\x00\x02\x00\x00\x00\x00"
    b"\x03web\x07example\x00\x00\x01\x00\x01"  # question at offset 12
    b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x02\x58\x00\x04\xac\x12\x00\x02"  # A 172.18.0.2, TTL 600
    b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x02\x58\x00\x04\xac\x12\x00\x03"
)


def test_parse_hand_written_response_follows_pointers() -> None:
    msg = dnswire.parse(HAND_RESPONSE)
    assert msg.id == 0xBEEF and msg.qr and msg.aa and msg.rd and msg.ra and not msg.tc
    assert msg.rcode == Rcode.NOERROR
    assert msg.questions == (Question("web.example", Type.A, CLASS_IN),)
    assert [(r.name, r.rtype, r.ttl, r.data) for r in msg.answers] == [
        ("web.example", Type.A, 600, "172.18.0.2"),
        ("web.example", Type.A, 600, "172.18.0.3"),
    ]


def test_encode_compresses_owner_names_like_the_hand_written_one() -> None:
    msg = dnswire.parse(HAND_RESPONSE)
    assert dnswire.encode(msg) == HAND_RESPONSE


ROUND_TRIPS = [
    dnswire.query("example.org", Type.A, 1),
    dnswire.query("Example.ORG", Type.AAAA, 0xFFFF, rd=False, edns_size=1232),
    Message(id=7, qr=True, opcode=0, aa=True, tc=True, rd=False, ra=True, ad=True, cd=True, rcode=Rcode.NXDOMAIN),
    Message(
        id=42,
        qr=True,
        ra=True,
        questions=(Question("www.example.org", Type.A),),
        answers=(
            Record("www.example.org", Type.CNAME, CLASS_IN, 300, "web.example.org"),
            Record("web.example.org", Type.A, CLASS_IN, 300, "198.51.100.7"),
            Record("web.example.org", Type.AAAA, CLASS_IN, 300, "2001:db8::7"),
        ),
        authority=(Record("example.org", Type.NS, CLASS_IN, 86400, "ns1.example.org"),),
        additional=(
            Record("ns1.example.org", Type.TXT, CLASS_IN, 60, b"\x05hello"),
            dnswire.opt_record(4096),
        ),
    ),
    Message(
        id=9,
        qr=True,
        questions=(Question("2.0.18.172.in-addr.arpa", Type.PTR),),
        answers=(Record("2.0.18.172.in-addr.arpa", Type.PTR, CLASS_IN, 600, "web.mynet"),),
    ),
    # Labels holding a dot, a backslash, a space and a high byte survive as escapes.
    dnswire.query("a\\.b.c\\\\d.e\\032f.\\255", Type.TXT, 3),
    dnswire.query("", Type.NS, 4),  # the root
    dnswire.query("x.example", 65280, 5),  # a type berth has no name for
]


@pytest.mark.parametrize("msg", ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
def test_round_trip(msg: Message) -> None:
    wire = dnswire.encode(msg)
    assert dnswire.parse(wire) == msg
    assert dnswire.encode(dnswire.parse(wire)) == wire


def test_compression_shares_suffixes_and_ignores_case() -> None:
    msg = Message(
        id=1,
        qr=True,
        questions=(Question("a.example.com", Type.A),),
        answers=(
            Record("A.EXAMPLE.COM", Type.A, CLASS_IN, 1, "192.0.2.1"),
            Record("b.example.com", Type.CNAME, CLASS_IN, 1, "example.com"),
        ),
    )
    wire = dnswire.encode(msg)
    # Only the question spells "example" and "com" out; every later name points back.
    assert wire.count(b"\x07example") == 1 and wire.count(b"\x03com") == 1
    again = dnswire.parse(wire)
    assert again.answers[0].name == "a.example.com"  # the first spelling is what a pointer reads
    assert again.answers[1].name == "b.example.com" and again.answers[1].data == "example.com"


def test_name_text_forms() -> None:
    assert dnswire.parse(dnswire.encode(dnswire.query("web.", Type.A, 1))).questions[0].name == "web"
    assert dnswire.parse(dnswire.encode(dnswire.query(".", Type.A, 1))).questions[0].name == ""
    for bad in ("a..b", "..", "a\\", "caf\u00e9.example", "x" * 64 + ".example", ".".join(["a" * 63] * 4), "a\\300"):
        with pytest.raises(InvalidArgument):
            dnswire.encode(dnswire.query(bad, Type.A, 1))
    # 253 characters of text is the longest name: 255 octets on the wire.
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert dnswire.parse(dnswire.encode(dnswire.query(longest, Type.A, 1))).questions[0].name == longest


def _header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x0100) -> bytes:
    return struct.pack(">HHHHHH", 0x1234, flags, qd, an, ns, ar)


MALFORMED = {
    "empty": b"",
    "short header": b"\x12\x34\x01\x00\x00\x01",
    "counts beyond the bytes": _header(qd=1000) + b"\x00\x00\x01\x00\x01",
    "question cut short": _header() + b"\x03web\x00\x00\x01",
    "label past the end": _header() + b"\x09web\x00\x00\x01\x00\x01",
    "name with no end": _header() + b"\x03web",
    "pointer to itself": _header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer forward": _header() + b"\xc0\x10\x00\x01\x00\x01\x00\x00",
    "pointer cut short": _header() + b"\xc0",
    # A label run at 12 whose pointer lands back inside it: a loop through an earlier offset.
    "pointer loop within a run": _header() + b"\x01a\xc0\x0c\x00\x01\x00\x01",
    "two pointers ping-pong": _header(qd=2) + b"\xc0\x11\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01",
    "extended label type": _header() + b"\x41abc\x00\x00\x01\x00\x01",
    "name longer than 255": _header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
    "long name built from pointers": (
        _header(qd=2)
        + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x00\x00\x01\x00\x01"
        + b"\x3f" + b"d" * 63 + b"\xc0\x0c\x00\x01\x00\x01"
    ),
    "A record of 5 bytes": _header(qd=0, an=1) + b"\x00\x00\x01\x00\x01\x00\x00\x00\x01\x00\x05abcde",
    "AAAA record of 4 bytes": _header(qd=0, an=1) + b"\x00\x00\x1c\x00\x01\x00\x00\x00\x01\x00\x04abcd",
    "rdata past the end": _header(qd=0, an=1) + b"\x00\x00\x10\x00\x01\x00\x00\x00\x01\x00\x09abc",
    "CNAME target shorter than its data": (
        _header(qd=0, an=1) + b"\x00\x00\x05\x00\x01\x00\x00\x00\x01\x00\x04\x01a\x00\x00"
    ),
    "trailing bytes": _header() + b"\x00\x00\x01\x00\x01" + b"junk",
    "two OPT records": _header(qd=0, ar=2) + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00" * 2,
    "OPT record in the answers": _header(qd=0, an=1) + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00",
    "OPT record with an option cut short": (
        _header(qd=0, ar=1) + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x03\x00\x0a\x00"
    ),
    "TSIG record not last": (
        _header(qd=0, ar=2)
        + b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00\x00\x1d" + b"\x0bhmac-sha256\x00" + bytes(16)
        + b"\x00\x00\x10\x00\x01\x00\x00\x00\x01\x00\x00"
    ),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_malformed_message(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        dnswire.parse(data)


def test_random_garbage_never_raises_anything_else() -> None:
    rng = random.Random(1035)
    seeds = [dnswire.encode(m) for m in ROUND_TRIPS] + [HAND_RESPONSE]
    for _ in range(5000):
        base = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            choice = rng.random()
            if choice < 0.5 and base:
                base[rng.randrange(len(base))] = rng.randrange(256)
            elif choice < 0.75:
                del base[rng.randrange(len(base) + 1) :]
            else:
                base += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        try:
            msg = dnswire.parse(bytes(base))
        except MalformedMessage:
            continue
        # Whatever parsed must encode again (maybe to different, compressed bytes).
        assert dnswire.parse(dnswire.encode(msg)) == msg


def test_reply_copies_id_question_and_flags() -> None:
    q = dnswire.query("Web", Type.A, 0x4242, edns_size=1400)
    r = dnswire.reply(q, Rcode.NXDOMAIN, aa=True)
    assert (r.id, r.qr, r.aa, r.ra, r.rd, r.rcode, r.questions) == (0x4242, True, True, True, True, 3, q.questions)
    assert dnswire.edns_payload_size(r) == 1232  # an OPT record answers an OPT record
    assert dnswire.edns_payload_size(dnswire.reply(dnswire.query("web", Type.A, 1), Rcode.NOERROR)) is None
    assert dnswire.edns_payload_size(dnswire.query("w", Type.A, 1, edns_size=512)) == 512


def test_encode_truncates_to_the_limit() -> None:
    q = dnswire.query("many.example", Type.A, 5)
    answers = tuple(Record("many.example", Type.A, CLASS_IN, 600, f"10.0.{i // 256}.{i % 256}") for i in range(60))
    full = dnswire.encode(dnswire.reply(q, answers=answers))
    assert len(full) > 512
    cut = dnswire.parse(dnswire.encode(dnswire.reply(q, answers=answers), limit=512))
    assert cut.tc and cut.answers == () and cut.questions == q.questions and cut.id == 5
    assert dnswire.encode(dnswire.reply(q, answers=answers), limit=4096) == full


def test_error_reply_to_raw() -> None:
    garbage = b"\xab\xcd\x01\x00" + b"\xff" * 20
    r = dnswire.parse(dnswire.error_reply_to_raw(garbage, Rcode.FORMERR) or b"")
    assert (r.id, r.qr, r.rd, r.rcode, r.questions) == (0xABCD, True, True, Rcode.FORMERR, ())
    assert dnswire.error_reply_to_raw(b"\xab\xcd\x81\x00" + b"\x00" * 8, Rcode.FORMERR) is None  # a response
    assert dnswire.error_reply_to_raw(b"\x00" * 11, Rcode.FORMERR) is None
    assert dnswire.peek_id(garbage) == 0xABCD and dnswire.peek_id(b"\x01") is None


def test_encode_rejects_wrong_record_data() -> None:
    bad = [
        Record("x", Type.A, CLASS_IN, 1, "2001:db8::1"),
        Record("x", Type.AAAA, CLASS_IN, 1, "192.0.2.1"),
        Record("x", Type.A, CLASS_IN, 1, b"\x01\x02\x03\x04"),
        Record("x", Type.PTR, CLASS_IN, 1, b"\x00"),
        Record("x", Type.TXT, CLASS_IN, 1, "text"),
        Record("x", Type.A, CLASS_IN, -1, "192.0.2.1"),
    ]
    for rr in bad:
        with pytest.raises(InvalidArgument):
            dnswire.encode(Message(id=1, qr=True, answers=(rr,)))
    with pytest.raises(InvalidArgument):
        dnswire.encode(Message(id=70000))


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("172.18.0.2", "2.0.18.172.in-addr.arpa"),
        ("10.0.0.1", "1.0.0.10.in-addr.arpa"),
        ("2001:db8::1", "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa"),
    ],
)
def test_reverse_names(address: str, name: str) -> None:
    assert dnswire.reverse_name(address) == name
    assert dnswire.address_from_reverse(name) == address
    assert dnswire.address_from_reverse(name.upper() + ".") == address


@pytest.mark.parametrize(
    "name",
    ["18.172.in-addr.arpa", "256.0.18.172.in-addr.arpa", "02.0.18.172.in-addr.arpa", "x.0.18.172.in-addr.arpa",
     "web.example", "in-addr.arpa", "1.2.3.4.5.in-addr.arpa", "g" + ".0" * 31 + ".ip6.arpa"],
)
def test_not_reverse_names(name: str) -> None:
    assert dnswire.address_from_reverse(name) is None


def test_reverse_name_rejects_non_addresses() -> None:
    with pytest.raises(InvalidArgument):
        dnswire.reverse_name("web")


# A query for "web" carrying an OPT record (payload 1232, the DO bit, a DNS cookie
# option) and, last, a TSIG record: RFC 6891 section 6.1.2 and RFC 8945 section 4.2.
OPT_RDATA = b"\x00\x0a\x00\x08" + b"\x01\x02\x03\x04\x05\x06\x07\x08"
TSIG_RDATA = (
    b"\x0bhmac-sha256\x00"  # algorithm
    b"\x00\x00\x65\x00\x00\x00\x01\x2c"  # time signed (48 bits), fudge
    b"\x00\x02\xab\xcd"  # MAC size, MAC
    b"\x12\x34\x00\x00\x00\x00"  # original id, error, other length
)
SIGNED_QUERY = (
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x02"
    b"\x03web\x00\x00\x01\x00\x01"
    b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00" + struct.pack(">H", len(OPT_RDATA)) + OPT_RDATA
    + b"\x03key\x00\x00\xfa\x00\xff\x00\x00\x00\x00" + struct.pack(">H", len(TSIG_RDATA)) + TSIG_RDATA
)


def test_opt_and_tsig_records_are_kept_as_they_came() -> None:
    msg = dnswire.parse(SIGNED_QUERY)
    assert msg.additional == (
        Record("", Type.OPT, 1232, 0x8000, OPT_RDATA),
        Record("key", Type.TSIG, 255, 0, TSIG_RDATA),  # read, not checked: berth holds no keys
    )
    assert dnswire.edns_payload_size(msg) == 1232
    assert dnswire.encode(msg) == SIGNED_QUERY


def test_extended_rcode_bits_stay_in_the_opt_ttl() -> None:
    # Header rcode 0 with upper bits 1 in the OPT TTL is BADVERS (16) to EDNS; the
    # header's own field still reads 0 and the TTL comes back unchanged.
    wire = _header(qd=0, ar=1, flags=0x8000) + b"\x00\x00\x29\x04\xd0\x01\x00\x00\x00\x00\x00"
    msg = dnswire.parse(wire)
    assert msg.rcode == Rcode.NOERROR and msg.additional == (Record("", Type.OPT, 1232, 0x01000000, b""),)
    assert dnswire.encode(msg) == wire


def test_every_opcode_reads_like_a_query() -> None:
    # An UPDATE (opcode 5) whose "zone" is not a SOA question: no RFC 2136 rules apply,
    # so the resolver can answer it NOTIMP like any other opcode it does not serve.
    wire = (
        _header(an=1, flags=0x2800)
        + b"\x07example\x00\x00\x01\x00\x01"
        + b"\x03web\xc0\x0c\x00\x01\x00\xff\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    )
    msg = dnswire.parse(wire)
    assert msg.opcode == dnswire.Opcode.UPDATE and msg.questions == (Question("example", Type.A),)
    assert msg.answers == (Record("web.example", Type.A, 255, 60, "192.0.2.1"),)
    assert dnswire.encode(msg) == wire


def test_records_keep_their_order_ttls_and_duplicates() -> None:
    answers = (
        Record("web", Type.A, CLASS_IN, 600, "192.0.2.1"),
        Record("web", Type.AAAA, CLASS_IN, 600, "2001:db8::1"),
        Record("web", Type.A, CLASS_IN, 30, "192.0.2.2"),
        Record("web", Type.A, CLASS_IN, 600, "192.0.2.1"),
    )
    msg = Message(id=1, qr=True, questions=(Question("web", Type.ANY),), answers=answers)
    assert dnswire.parse(dnswire.encode(msg)).answers == answers


def test_addresses_are_read_whatever_the_class() -> None:
    wire = _header(qd=0, an=1) + b"\x00\x00\x01\x00\x03\x00\x00\x00\x01\x00\x04\xc0\x00\x02\x01"  # class CHAOS
    assert dnswire.parse(wire).answers == (Record("", Type.A, 3, 1, "192.0.2.1"),)


def test_names_with_odd_bytes_in_record_data() -> None:
    # A PTR record whose target holds a dot, a NUL and a high byte inside its labels.
    target = b"\x03a.b\x02\x00\xff\x00"
    owner = b"\x01@\x00"  # "@" is a label here, not master-file shorthand for the origin
    fixed = b"\x00\x0c\x00\x01\x00\x00\x00\x01" + struct.pack(">H", len(target))  # PTR, IN, TTL 1
    wire = _header(qd=0, an=1, flags=0x8000) + owner + fixed + target
    msg = dnswire.parse(wire)
    assert msg.answers == (Record("\\@", Type.PTR, CLASS_IN, 1, "a\\.b.\\000\\255"),)
    assert dnswire.encode(msg) == wire


def test_encode_refuses_messages_over_65535_bytes() -> None:
    big = Record("x", Type.TXT, CLASS_IN, 1, b"\xff" + b"a" * 255)
    with pytest.raises(InvalidArgument):
        dnswire.encode(Message(id=1, qr=True, answers=(big,) * 300))


def test_truncation_keeps_the_opt_record() -> None:
    q = dnswire.query("many.example", Type.A, 5, edns_size=600)
    answers = tuple(Record("many.example", Type.A, CLASS_IN, 600, f"10.0.0.{i}") for i in range(60))
    cut = dnswire.parse(dnswire.encode(dnswire.reply(q, answers=answers), limit=600))
    assert cut.tc and cut.answers == () and dnswire.edns_payload_size(cut) == 1232


@pytest.mark.parametrize(
    "name",
    ["2\\.0.18.172.in-addr.arpa", "2.0.18\\.172.in-addr.arpa", "2.0.18.172\\000.in-addr.arpa",
     "caf\u00e9.0.18.172.in-addr.arpa", "::1.ip6.arpa", "2.0.18.172.in-addr.arpa.x"],
)
def test_odd_reverse_names_are_no_addresses(name: str) -> None:
    assert dnswire.address_from_reverse(name) is None
