"""The DNS message format (RFC 1035 section 4), enough for a stub resolver's server.

Strategy: sans-IO. `parse(bytes) -> Message` and `encode(Message) -> bytes`, with
frozen dataclasses in between; nothing here touches a socket. The reader checks
every length against the bytes actually present and raises `MalformedMessage`
(an InvalidArgument) for anything it cannot account for, so a server may hand it
whatever arrived on the wire.

Names are `str`: labels joined by dots, no trailing dot, the root is "". Labels
keep their case (DNS compares case-insensitively; callers lower-case when they
compare). A label byte that is a dot, a backslash or not printable ASCII is
written in master-file form (`\\.`, `\\\\`, `\\DDD`), so every wire name survives a
round trip through `str`.

Compression (section 4.1.4): the reader follows pointers, each of which must
point before the label run that contains it, so a chain of pointers strictly
decreases and cannot loop. The writer compresses owner names and the names
inside CNAME/NS/PTR data; other record data is carried as raw bytes and never
rewritten (its embedded names may point into the original message, which is why
a forwarder relays an upstream answer as bytes rather than re-encoding it).

Record data is typed by record type: A/AAAA carry the address as text, CNAME/NS/
PTR carry the target name, everything else (SOA, MX, TXT, OPT, ...) carries the
rdata bytes verbatim.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass, replace

from berth.errors import InvalidArgument

__all__ = [
    "CLASS_IN",
    "HEADER_LEN",
    "MAX_UDP",
    "MalformedMessage",
    "Message",
    "Opcode",
    "Question",
    "Rcode",
    "Record",
    "Type",
    "address_from_reverse",
    "edns_payload_size",
    "encode",
    "error_reply_to_raw",
    "opt_record",
    "parse",
    "peek_id",
    "query",
    "reply",
    "reverse_name",
]


class Type(enum.IntEnum):
    """Record types berth names; any other 16-bit value is carried as a plain int."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    ANY = 255


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1  # the server could not interpret the query
    SERVFAIL = 2  # the server could not answer it (e.g. no upstream answered)
    NXDOMAIN = 3  # the name does not exist
    NOTIMP = 4  # the server does not do this kind of query
    REFUSED = 5


class Opcode(enum.IntEnum):
    QUERY = 0
    IQUERY = 1
    STATUS = 2


CLASS_IN = 1
HEADER_LEN = 12
MAX_UDP = 512  # the classic UDP payload limit when the query carries no EDNS OPT record

_HEADER = struct.Struct(">HHHHHH")
_QFIXED = struct.Struct(">HH")
_RRFIXED = struct.Struct(">HHIH")
_MAX_NAME = 255  # octets on the wire, length bytes and the final zero included
_MAX_LABEL = 63
_NAME_TYPES = frozenset({Type.CNAME, Type.NS, Type.PTR})


class MalformedMessage(InvalidArgument):
    """Bytes that are not a well-formed DNS message (answer FORMERR, or drop them)."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. `data` is text for A/AAAA/CNAME/NS/PTR, bytes otherwise."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: str | bytes


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    qr: bool = False  # False: a query; True: a response
    opcode: int = Opcode.QUERY
    aa: bool = False  # authoritative answer
    tc: bool = False  # truncated: retry over TCP
    rd: bool = True  # recursion desired
    ra: bool = False  # recursion available
    ad: bool = False  # authentic data (DNSSEC)
    cd: bool = False  # checking disabled (DNSSEC)
    rcode: int = Rcode.NOERROR
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


# --- building messages -------------------------------------------------------


def query(name: str, qtype: int, id: int, *, rd: bool = True, edns_size: int | None = None) -> Message:
    """A one-question query; with *edns_size*, an OPT record advertising that UDP payload size."""
    additional = (opt_record(edns_size),) if edns_size is not None else ()
    return Message(id=id, rd=rd, questions=(Question(name, qtype),), additional=additional)


def reply(
    q: Message,
    rcode: int = Rcode.NOERROR,
    answers: tuple[Record, ...] = (),
    *,
    aa: bool = False,
    ra: bool = True,
) -> Message:
    """The response to *q*: same id, opcode, RD/CD bits and question section.

    An OPT record is added when the query carried one (RFC 6891 section 7), so the
    client knows the payload size it advertised was honoured.
    """
    additional = (opt_record(1232),) if edns_payload_size(q) is not None else ()
    return Message(
        id=q.id,
        qr=True,
        opcode=q.opcode,
        aa=aa,
        rd=q.rd,
        ra=ra,
        cd=q.cd,
        rcode=rcode,
        questions=q.questions,
        answers=answers,
        additional=additional,
    )


def opt_record(udp_size: int) -> Record:
    """The EDNS(0) pseudo-record: root owner, class = UDP payload size, version 0, no options."""
    if not 512 <= udp_size <= 0xFFFF:
        raise InvalidArgument(f"EDNS UDP payload size {udp_size} is out of range: use 512..65535")
    return Record("", Type.OPT, udp_size, 0, b"")


def edns_payload_size(msg: Message) -> int | None:
    """The UDP payload size the sender's OPT record advertises (at least 512), or None without EDNS."""
    for rr in msg.additional:
        if rr.rtype == Type.OPT:
            return max(MAX_UDP, rr.rclass)
    return None


def peek_id(data: bytes) -> int | None:
    """The message id of raw bytes, or None when they are shorter than a header."""
    if len(data) < HEADER_LEN:
        return None
    return int.from_bytes(data[:2], "big")


def error_reply_to_raw(data: bytes, rcode: int) -> bytes | None:
    """A bare response with *rcode* to bytes that could not be parsed as a query.

    It copies the id, opcode and RD bit and has no sections (RFC 1035 allows a
    FORMERR to omit the question). Returns None when the bytes are too short to
    carry a header, or are themselves a response: answering those would let two
    servers bounce errors at each other forever.
    """
    if len(data) < HEADER_LEN or data[2] & 0x80:
        return None
    ident, flags = struct.unpack_from(">HH", data)
    opcode = (flags >> 11) & 0xF
    rd = bool(flags & 0x0100)
    return encode(Message(id=ident, qr=True, opcode=opcode, rd=rd, ra=True, rcode=rcode))


# --- reverse names -------------------------------------------------------------


def reverse_name(address: str) -> str:
    """The in-addr.arpa / ip6.arpa name whose PTR record names *address*."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise InvalidArgument(f"{address!r} is not an IP address: give one like 172.18.0.2") from exc
    return ip.reverse_pointer


def address_from_reverse(name: str) -> str | None:
    """The address a reverse name stands for, or None when *name* is no complete one.

    Accepts any case and an optional trailing dot: "2.0.18.172.in-addr.arpa" ->
    "172.18.0.2". Partial names (a reverse zone rather than one address) give None.
    """
    labels = name.lower().rstrip(".").split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        octets = labels[:4]
        if all(o.isdigit() and len(o) <= 3 and int(o) <= 255 and (o == "0" or not o.startswith("0")) for o in octets):
            return ".".join(reversed(octets))
        return None
    if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = labels[:32]
        if all(len(n) == 1 and n in "0123456789abcdef" for n in nibbles):
            hexed = "".join(reversed(nibbles))
            return str(ipaddress.IPv6Address(int(hexed, 16)))
        return None
    return None


# --- names -----------------------------------------------------------------------


def _label_to_text(raw: bytes) -> str:
    out = []
    for b in raw:
        if b in (0x2E, 0x5C):  # "." and "\"
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _text_to_labels(name: str) -> list[bytes]:
    """Split a text name into wire labels, undoing master-file escapes."""
    if name in ("", "."):
        return []
    labels: list[bytes] = []
    cur = bytearray()
    i = 0
    n = len(name)
    while i < n:
        ch = name[i]
        if ch == "\\":
            digits = name[i + 1 : i + 4]
            if len(digits) == 3 and all(c in "0123456789" for c in digits):
                value = int(digits)
                if value > 255:
                    raise InvalidArgument(f"bad escape in DNS name {name!r}: \\DDD must be at most 255")
                cur.append(value)
                i += 4
                continue
            if i + 1 >= n:
                raise InvalidArgument(f"DNS name {name!r} ends in a lone backslash")
            escaped = name[i + 1]
            if not escaped.isascii():
                raise InvalidArgument(f"DNS name {name!r} escapes a non-ASCII character: use \\DDD")
            cur += escaped.encode("ascii")
            i += 2
            continue
        if ch == ".":
            if i == n - 1:  # the trailing dot of an absolute name
                break
            if not cur:
                raise InvalidArgument(f"DNS name {name!r} has an empty label: remove the doubled dot")
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
            continue
        try:
            cur += ch.encode("ascii")
        except UnicodeEncodeError as exc:
            raise InvalidArgument(
                f"DNS name {name!r} is not ASCII: convert it to punycode (IDNA) first"
            ) from exc
        i += 1
    if not cur:
        raise InvalidArgument(f"DNS name {name!r} has an empty label")
    labels.append(bytes(cur))
    for label in labels:
        if len(label) > _MAX_LABEL:
            raise InvalidArgument(f"label of {len(label)} octets in DNS name {name!r}: at most 63 are allowed")
    if sum(len(label) + 1 for label in labels) + 1 > _MAX_NAME:
        raise InvalidArgument(f"DNS name {name!r} is longer than 255 octets on the wire")
    return labels


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """Read the name at *pos*; return it and the offset just past it (past the first pointer)."""
    labels: list[str] = []
    wire_len = 1
    end: int | None = None  # where the caller resumes: after the first pointer, if any
    run_start = pos  # start of the label run being read; pointers must land before it
    while True:
        if pos >= len(data):
            raise MalformedMessage(f"name at offset {run_start} runs past the end of the message")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(data):
                raise MalformedMessage(f"compression pointer at offset {pos} is cut short")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= run_start:
                raise MalformedMessage(
                    f"compression pointer at offset {pos} points at or after the start of its own name (to {target})"
                )
            if end is None:
                end = pos + 2
            pos = run_start = target
            continue
        if kind != 0:
            raise MalformedMessage(f"unsupported label type 0x{kind:02x} at offset {pos}")
        if length == 0:
            return ".".join(labels), (end if end is not None else pos + 1)
        wire_len += length + 1
        if wire_len > _MAX_NAME:
            raise MalformedMessage(f"name at offset {run_start} is longer than 255 octets")
        if pos + 1 + length > len(data):
            raise MalformedMessage(f"label at offset {pos} runs past the end of the message")
        labels.append(_label_to_text(data[pos + 1 : pos + 1 + length]))
        pos += 1 + length


class _Writer:
    """Appends to a message buffer, remembering where each name suffix was written."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._offsets: dict[tuple[bytes, ...], int] = {}

    def name(self, name: str) -> None:
        labels = _text_to_labels(name)
        keys = [label.lower() for label in labels]
        for i in range(len(labels)):
            suffix = tuple(keys[i:])
            if suffix in self._offsets:
                self.buf += struct.pack(">H", 0xC000 | self._offsets[suffix])
                return
            if len(self.buf) < 0x4000:
                self._offsets.setdefault(suffix, len(self.buf))
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)


# --- parsing -----------------------------------------------------------------


def parse(data: bytes) -> Message:
    """Decode one whole DNS message.

    Raises:
        MalformedMessage: the bytes are short, inconsistent, loop, or have bytes left over.
    """
    if len(data) < HEADER_LEN:
        raise MalformedMessage(f"message of {len(data)} bytes is shorter than the 12-byte header")
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    # Each question needs at least 5 bytes and each record 11: refuse counts the
    # bytes cannot hold before allocating anything for them.
    if qd * 5 + (an + ns + ar) * 11 > len(data) - HEADER_LEN:
        raise MalformedMessage(f"section counts ({qd}, {an}, {ns}, {ar}) need more bytes than the {len(data)} given")
    pos = HEADER_LEN
    questions = []
    for _ in range(qd):
        name, pos = _read_name(data, pos)
        if pos + 4 > len(data):
            raise MalformedMessage(f"question {name!r} is cut short")
        qtype, qclass = _QFIXED.unpack_from(data, pos)
        pos += 4
        questions.append(Question(name, _typed(qtype), qclass))
    sections: list[tuple[Record, ...]] = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            rr, pos = _read_record(data, pos)
            records.append(rr)
        sections.append(tuple(records))
    if pos != len(data):
        raise MalformedMessage(f"{len(data) - pos} bytes follow the end of the message")
    return Message(
        id=ident,
        qr=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100),
        ra=bool(flags & 0x0080),
        ad=bool(flags & 0x0020),
        cd=bool(flags & 0x0010),
        rcode=_rcode(flags & 0xF),
        questions=tuple(questions),
        answers=sections[0],
        authority=sections[1],
        additional=sections[2],
    )


def _typed(value: int) -> int:
    try:
        return Type(value)
    except ValueError:
        return value


def _rcode(value: int) -> int:
    try:
        return Rcode(value)
    except ValueError:
        return value


def _read_record(data: bytes, pos: int) -> tuple[Record, int]:
    name, pos = _read_name(data, pos)
    if pos + _RRFIXED.size > len(data):
        raise MalformedMessage(f"record {name!r} is cut short")
    rtype, rclass, ttl, rdlen = _RRFIXED.unpack_from(data, pos)
    pos += _RRFIXED.size
    end = pos + rdlen
    if end > len(data):
        raise MalformedMessage(f"record {name!r} claims {rdlen} bytes of data but the message ends first")
    raw = data[pos:end]
    value: str | bytes
    if rtype == Type.A:
        if rdlen != 4:
            raise MalformedMessage(f"A record {name!r} has {rdlen} bytes of data instead of 4")
        value = str(ipaddress.IPv4Address(raw))
    elif rtype == Type.AAAA:
        if rdlen != 16:
            raise MalformedMessage(f"AAAA record {name!r} has {rdlen} bytes of data instead of 16")
        value = str(ipaddress.IPv6Address(raw))
    elif rtype in _NAME_TYPES:
        value, after = _read_name(data, pos)
        if after != end:
            raise MalformedMessage(f"{Type(rtype).name} record {name!r}: the target name does not fill its data")
    else:
        value = bytes(raw)
    return Record(name, _typed(rtype), rclass, ttl, value), end


# --- encoding ----------------------------------------------------------------


def encode(msg: Message, limit: int | None = None) -> bytes:
    """Encode *msg*, compressing names.

    With *limit* (the client's UDP payload size), a message that would not fit is
    sent instead with TC set, its question, no records and only the OPT record,
    which tells the client to ask again over TCP.
    """
    data = _encode(msg)
    if limit is not None and len(data) > limit:
        opt = tuple(rr for rr in msg.additional if rr.rtype == Type.OPT)
        data = _encode(replace(msg, tc=True, answers=(), authority=(), additional=opt))
    return data


def _encode(msg: Message) -> bytes:
    for field_name, value, width in (("id", msg.id, 0xFFFF), ("opcode", msg.opcode, 0xF), ("rcode", msg.rcode, 0xF)):
        if not 0 <= value <= width:
            raise InvalidArgument(f"DNS header {field_name} {value} is out of range 0..{width}")
    flags = (
        (0x8000 if msg.qr else 0)
        | (msg.opcode << 11)
        | (0x0400 if msg.aa else 0)
        | (0x0200 if msg.tc else 0)
        | (0x0100 if msg.rd else 0)
        | (0x0080 if msg.ra else 0)
        | (0x0020 if msg.ad else 0)
        | (0x0010 if msg.cd else 0)
        | msg.rcode
    )
    w = _Writer()
    w.buf += _HEADER.pack(
        msg.id, flags, len(msg.questions), len(msg.answers), len(msg.authority), len(msg.additional)
    )
    for q in msg.questions:
        w.name(q.name)
        w.buf += _QFIXED.pack(q.qtype, q.qclass)
    for rr in (*msg.answers, *msg.authority, *msg.additional):
        _write_record(w, rr)
    return bytes(w.buf)


def _write_record(w: _Writer, rr: Record) -> None:
    if not 0 <= rr.ttl <= 0xFFFFFFFF:
        raise InvalidArgument(f"TTL {rr.ttl} of record {rr.name!r} is out of range")
    w.name(rr.name)
    fixed_at = len(w.buf)
    w.buf += _RRFIXED.pack(rr.rtype, rr.rclass, rr.ttl, 0)
    start = len(w.buf)
    if rr.rtype in (Type.A, Type.AAAA):
        if not isinstance(rr.data, str):
            raise InvalidArgument(f"{Type(rr.rtype).name} record {rr.name!r} needs its address as text")
        version = 4 if rr.rtype == Type.A else 6
        try:
            ip = ipaddress.IPv4Address(rr.data) if version == 4 else ipaddress.IPv6Address(rr.data)
        except ValueError as exc:
            raise InvalidArgument(
                f"{Type(rr.rtype).name} record {rr.name!r}: {rr.data!r} is not an IPv{version} address"
            ) from exc
        w.buf += ip.packed
    elif rr.rtype in _NAME_TYPES:
        if not isinstance(rr.data, str):
            raise InvalidArgument(f"{Type(rr.rtype).name} record {rr.name!r} needs its target name as text")
        w.name(rr.data)
    else:
        if not isinstance(rr.data, bytes):
            raise InvalidArgument(f"record {rr.name!r} of type {rr.rtype} needs its data as bytes")
        w.buf += rr.data
    rdlen = len(w.buf) - start
    if rdlen > 0xFFFF:
        raise InvalidArgument(f"record {rr.name!r} has {rdlen} bytes of data; at most 65535 fit")
    struct.pack_into(">H", w.buf, fixed_at + 8, rdlen)
