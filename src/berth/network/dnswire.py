"""The DNS message format (RFC 1035 section 4), as berth's resolver sees it.

Strategy: sans-IO. `parse(bytes) -> Message` and `encode(Message) -> bytes`, with
frozen dataclasses in between; nothing here touches a socket. dnspython does all
the reading and writing of the wire format (`dns.message.from_wire`,
`Message.to_wire`); this module only maps its objects to the small values the
resolver and its tests work with. Whatever dnspython cannot read (short, cut,
looping compression pointers, bytes left over, bad record data) comes out as
`MalformedMessage` (an InvalidArgument), so a server may hand `parse` whatever
arrived on the wire.

Names are `str` in master-file form: labels joined by dots, no trailing dot, the
root is "". Labels keep their case (callers lower-case when they compare). A
label byte that is a dot, a backslash, another special character or not
printable ASCII is escaped (`\\.`, `\\\\`, `\\DDD`), so every wire name survives a
round trip through `str`.

Records keep the order and TTL they had on the wire, one `Record` each (a TTL
above 2**31 - 1 reads as 0, as RFC 2181 section 8 asks). Data is typed by record
type: A/AAAA carry the address as text, CNAME/NS/PTR the target name (compressed
when written), everything else (SOA, MX, TXT, OPT, ...) its rdata bytes, names
uncompressed, written back verbatim. The OPT and TSIG pseudo-records, which
dnspython keeps apart, end the additional section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import dns.exception
import dns.flags
import dns.ipv4
import dns.ipv6
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.nsbase
import dns.reversename
import dns.rrset

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

Type = dns.rdatatype.RdataType  # record types; any 16-bit value is one
Rcode = dns.rcode.Rcode
Opcode = dns.opcode.Opcode

CLASS_IN = 1
HEADER_LEN = 12
MAX_UDP = 512  # the classic UDP payload limit when the query carries no EDNS OPT record

_NAME_TYPES = frozenset({Type.CNAME, Type.NS, Type.PTR})
# The record types whose data is text, and the dnspython class that writes it in any
# record class (named here: dnspython's own lookup by class can answer its generic one).
_TEXT_DATA: dict[int, Callable[..., dns.rdata.Rdata]] = {
    Type.A: dns.rdtypes.IN.A.A,
    Type.AAAA: dns.rdtypes.IN.AAAA.AAAA,
    Type.CNAME: dns.rdtypes.ANY.CNAME.CNAME,
    Type.NS: dns.rdtypes.ANY.NS.NS,
    Type.PTR: dns.rdtypes.ANY.PTR.PTR,
}


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
    ident = peek_id(data)
    flags = int.from_bytes(data[2:4], "big")
    if ident is None or flags & dns.flags.QR:
        return None
    rd = bool(flags & dns.flags.RD)
    return encode(Message(id=ident, qr=True, opcode=dns.opcode.from_flags(flags), rd=rd, ra=True, rcode=rcode))


# --- reverse names -------------------------------------------------------------


def reverse_name(address: str) -> str:
    """The in-addr.arpa / ip6.arpa name whose PTR record names *address*."""
    try:
        return dns.reversename.from_address(address).to_text(omit_final_dot=True)
    except (dns.exception.DNSException, ValueError) as exc:
        raise InvalidArgument(f"{address!r} is not an IP address: give one like 172.18.0.2") from exc


def address_from_reverse(name: str) -> str | None:
    """The address a reverse name stands for, or None when *name* is no complete one.

    Accepts any case and an optional trailing dot: "2.0.18.172.in-addr.arpa" ->
    "172.18.0.2". Partial names (a reverse zone rather than one address), and any
    other spelling than the address's own reverse name (leading zeros, escaped
    dots), give None.
    """
    try:
        address = dns.reversename.to_address(dns.name.from_text(name))
    except (dns.exception.DNSException, ValueError):
        return None
    return address if reverse_name(address) == name.lower().removesuffix(".") else None


# --- parsing -----------------------------------------------------------------


def parse(data: bytes) -> Message:
    """Decode one whole DNS message.

    Raises:
        MalformedMessage: the bytes are short, inconsistent, loop, or have bytes left over.
    """
    if len(data) < HEADER_LEN:
        raise MalformedMessage(f"message of {len(data)} bytes is shorter than the 12-byte header")
    flags = int.from_bytes(data[2:4], "big")
    # dnspython reads an UPDATE by RFC 2136's own rules; berth answers every opcode
    # but QUERY with NOTIMP, so it reads them all as plain messages (opcode 0).
    plain = data[:2] + (flags & ~0x7800).to_bytes(2, "big") + data[4:]
    try:
        # keyring=False: a TSIG record is read but not checked (berth holds no keys).
        m = dns.message.from_wire(plain, keyring=False, one_rr_per_rrset=True)
        pseudo = [rrset for rrset in (m.opt, m.tsig) if rrset is not None]
        return Message(
            id=m.id,
            qr=bool(flags & dns.flags.QR),
            opcode=dns.opcode.from_flags(flags),
            aa=bool(flags & dns.flags.AA),
            tc=bool(flags & dns.flags.TC),
            rd=bool(flags & dns.flags.RD),
            ra=bool(flags & dns.flags.RA),
            ad=bool(flags & dns.flags.AD),
            cd=bool(flags & dns.flags.CD),
            rcode=Rcode(flags & 0xF),  # the header's 4 bits; an OPT record's upper bits stay in its TTL
            questions=tuple(Question(_text(q.name), q.rdtype, q.rdclass) for q in m.question),
            answers=_records(m.answer),
            authority=_records(m.authority),
            additional=_records([*m.additional, *pseudo]),
        )
    except (dns.exception.DNSException, ValueError) as exc:
        raise MalformedMessage(f"not a DNS message: {' '.join(str(exc).split())}") from exc


def _records(rrsets: list[dns.rrset.RRset]) -> tuple[Record, ...]:
    return tuple(Record(_text(s.name), s.rdtype, s.rdclass, s.ttl, _data(rd)) for s in rrsets for rd in s)


def _data(rd: dns.rdata.Rdata) -> str | bytes:
    raw = rd.to_wire() or b""  # to_wire without a file returns the bytes, names uncompressed
    # Addresses are read from the bytes, whatever the class (dnspython reads a CHAOS A otherwise).
    if rd.rdtype == Type.A:
        return dns.ipv4.inet_ntoa(raw)
    if rd.rdtype == Type.AAAA:
        return dns.ipv6.inet_ntoa(raw)
    if rd.rdtype in _NAME_TYPES and isinstance(rd, dns.rdtypes.nsbase.NSBase):
        return _text(rd.target)
    return raw


def _text(name: dns.name.Name) -> str:
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True)


# --- encoding ----------------------------------------------------------------


def encode(msg: Message, limit: int | None = None) -> bytes:
    """Encode *msg*, compressing names.

    With *limit* (the client's UDP payload size, at least 512), a message that would
    not fit is sent instead with TC set, its question, no records and only the OPT
    record, which tells the client to ask again over TCP.

    Raises:
        InvalidArgument: a field is out of range, a name or record data is not valid,
            or the message is longer than 65535 bytes.
    """
    try:
        try:
            return _to_dns(msg).to_wire(max_size=limit or 0xFFFF)
        except dns.exception.TooBig:
            if limit is None:
                raise
        opt = tuple(rr for rr in msg.additional if rr.rtype == Type.OPT)
        return _to_dns(replace(msg, tc=True, answers=(), authority=(), additional=opt)).to_wire()
    except (dns.exception.DNSException, ValueError) as exc:
        raise InvalidArgument(f"cannot encode DNS message {msg.id}: {exc}") from exc


def _to_dns(msg: Message) -> dns.message.Message:
    for field_name, value, width in (("id", msg.id, 0xFFFF), ("opcode", msg.opcode, 0xF), ("rcode", msg.rcode, 0xF)):
        if not 0 <= value <= width:
            raise InvalidArgument(f"DNS header {field_name} {value} is out of range 0..{width}")
    m = dns.message.Message(id=msg.id)
    m.flags = (
        (dns.flags.QR if msg.qr else 0)
        | dns.opcode.to_flags(Opcode(msg.opcode))
        | (dns.flags.AA if msg.aa else 0)
        | (dns.flags.TC if msg.tc else 0)
        | (dns.flags.RD if msg.rd else 0)
        | (dns.flags.RA if msg.ra else 0)
        | (dns.flags.AD if msg.ad else 0)
        | (dns.flags.CD if msg.cd else 0)
        | msg.rcode
    )
    m.question = [
        dns.rrset.RRset(_name(q.name), dns.rdataclass.RdataClass.make(q.qclass), Type.make(q.qtype))
        for q in msg.questions
    ]
    # One RRset per record keeps each record's place and TTL (dnspython would merge them).
    for section, records in ((m.answer, msg.answers), (m.authority, msg.authority), (m.additional, msg.additional)):
        section.extend(dns.rrset.from_rdata(_name(rr.name), _ttl(rr), _rdata(rr)) for rr in records)
    return m


def _ttl(rr: Record) -> int:
    if not 0 <= rr.ttl <= 0xFFFFFFFF:
        raise InvalidArgument(f"TTL {rr.ttl} of record {rr.name!r} is out of range")
    return rr.ttl


def _rdata(rr: Record) -> dns.rdata.Rdata:
    kind = Type.to_text(Type.make(rr.rtype))
    text_data = _TEXT_DATA.get(rr.rtype)
    if text_data is None:
        if not isinstance(rr.data, bytes):
            raise InvalidArgument(f"{kind} record {rr.name!r} needs its data as bytes")
        return dns.rdata.GenericRdata(dns.rdataclass.RdataClass.make(rr.rclass), Type.make(rr.rtype), rr.data)
    if not isinstance(rr.data, str):
        raise InvalidArgument(f"{kind} record {rr.name!r} needs its data as text")
    value = rr.data if rr.rtype in (Type.A, Type.AAAA) else _name(rr.data)
    try:
        return text_data(rr.rclass, rr.rtype, value)
    except (dns.exception.DNSException, ValueError) as exc:
        raise InvalidArgument(f"{kind} record {rr.name!r}: {rr.data!r} is not valid data: {exc}") from exc


def _name(text: str) -> dns.name.Name:
    if not text.isascii():
        # dnspython would turn it into punycode; a DNS server must not guess.
        raise InvalidArgument(f"DNS name {text!r} is not ASCII: convert it to punycode (IDNA) first")
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise InvalidArgument(f"{text!r} is not a valid DNS name: {exc}") from exc
