"""The host side of the protocol spoken with berth's guest agent over virtio-serial.

Strategy: sans-IO, like `berth.wire.stdcopy`. A frame is a 9-byte header --
big-endian uint32 payload length, one type byte, big-endian uint32 id -- then the
payload (at most MAX_PAYLOAD bytes; longer output is split by the sender). The id
names a process for EXEC and its streams, and pairs a request with its OK/ERROR
for MOUNT, SETTIME and RNGSEED; the agent's READY uses id 0.

Payloads are fixed fields and length-prefixed strings, so the C agent parses them
without a JSON library:

    MOUNT    u32 flags (1 = container root: also mount proc, sys, dev in it),
             str tag, str target
    EXEC     u32 flags (1 = tty), u32 uid, u32 gid, u16 rows, u16 cols,
             str chroot ("" = none), str cwd, u32 argc, str*argc, u32 envc, str*envc
    STDIN    bytes             STDIN_EOF  empty
    SIGNAL   u32 signo         RESIZE     u16 rows, u16 cols
    SETTIME  u64 ns since the epoch        RNGSEED bytes     SHUTDOWN empty
    READY    str kernel release            STARTED u32 guest pid
    STDOUT/STDERR bytes        EXIT i32 (exit code, or 128+signal)
    OK       empty             ERROR str message

where str is a u32 length then that many bytes. `encode_*` build frames;
`Decoder.feed()` takes any split of the byte stream and returns complete frames;
`decode_*` read the payloads (both directions, so tests can check each against
the other).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from berth.errors import InvalidArgument

HEADER = struct.Struct(">IBI")
HEADER_LEN = HEADER.size
MAX_PAYLOAD = 64 * 1024


class T(enum.IntEnum):
    # host -> guest
    MOUNT = 0x01
    EXEC = 0x02
    STDIN = 0x03
    STDIN_EOF = 0x04
    SIGNAL = 0x05
    RESIZE = 0x06
    SETTIME = 0x07
    RNGSEED = 0x08
    SHUTDOWN = 0x09
    NETCONF = 0x0a
    # guest -> host
    READY = 0x81
    STARTED = 0x82
    STDOUT = 0x83
    STDERR = 0x84
    EXIT = 0x85
    ERROR = 0x86
    OK = 0x87


MOUNT_CONTAINER_ROOT = 1
MOUNT_SUBDIR = 2  # a pooled VM's share: the content is its subdirectory m
EXEC_TTY = 1


@dataclass(frozen=True, slots=True)
class Frame:
    type: T
    id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Mount:
    tag: str
    target: str
    container_root: bool = True
    subdir: bool = False  # a pooled VM's share: mount its subdirectory m (berth.vm.pool)


@dataclass(frozen=True, slots=True)
class Exec:
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    tty: bool = False
    chroot: str = ""
    rows: int = 0
    cols: int = 0


def frame(type_: T, id_: int, payload: bytes = b"") -> bytes:
    """Return one frame; payloads over MAX_PAYLOAD are refused (use `split_data`)."""
    if len(payload) > MAX_PAYLOAD:
        raise InvalidArgument(f"agent frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if not 0 <= id_ <= 0xFFFFFFFF:
        raise InvalidArgument(f"invalid agent frame id {id_}")
    return HEADER.pack(len(payload), int(type_), id_) + bytes(payload)


def _str(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(raw)) + raw


def _u32(v: int, what: str) -> bytes:
    if not 0 <= v <= 0xFFFFFFFF:
        raise InvalidArgument(f"{what} out of range: {v}")
    return struct.pack(">I", v)


def _u16(v: int, what: str) -> bytes:
    if not 0 <= v <= 0xFFFF:
        raise InvalidArgument(f"{what} out of range: {v}")
    return struct.pack(">H", v)


# ---- host -> guest -------------------------------------------------------------

def encode_mount(id_: int, m: Mount) -> bytes:
    if not m.tag or not m.target.startswith("/"):
        raise InvalidArgument(f"mount needs a tag and an absolute target, got {m.tag!r} {m.target!r}")
    flags = (MOUNT_CONTAINER_ROOT if m.container_root else 0) | (MOUNT_SUBDIR if m.subdir else 0)
    return frame(T.MOUNT, id_, _u32(flags, "flags") + _str(m.tag) + _str(m.target))


def encode_exec(id_: int, e: Exec) -> bytes:
    if not e.argv or not e.argv[0]:
        raise InvalidArgument("exec needs a non-empty argv")
    for kv in e.env:
        if "=" not in kv:
            raise InvalidArgument(f"environment entry {kv!r} is not KEY=VALUE")
    parts = [_u32(EXEC_TTY if e.tty else 0, "flags"), _u32(e.uid, "uid"), _u32(e.gid, "gid"),
             _u16(e.rows, "rows"), _u16(e.cols, "cols"), _str(e.chroot), _str(e.cwd or "/"),
             _u32(len(e.argv), "argc"), *(_str(a) for a in e.argv),
             _u32(len(e.env), "envc"), *(_str(v) for v in e.env)]
    return frame(T.EXEC, id_, b"".join(parts))


def encode_stdin(id_: int, data: bytes) -> list[bytes]:
    """Return the STDIN frames carrying *data* (split at MAX_PAYLOAD)."""
    return [frame(T.STDIN, id_, chunk) for chunk in split_data(data)]


def encode_stdin_eof(id_: int) -> bytes:
    return frame(T.STDIN_EOF, id_)


def encode_signal(id_: int, signo: int) -> bytes:
    if not 1 <= signo <= 64:
        raise InvalidArgument(f"invalid signal number {signo}")
    return frame(T.SIGNAL, id_, _u32(signo, "signal"))


def encode_resize(id_: int, rows: int, cols: int) -> bytes:
    return frame(T.RESIZE, id_, _u16(rows, "rows") + _u16(cols, "cols"))


def encode_settime(id_: int, ns: int) -> bytes:
    if not 0 <= ns < 1 << 64:
        raise InvalidArgument(f"invalid time {ns}")
    return frame(T.SETTIME, id_, struct.pack(">Q", ns))


def encode_rngseed(id_: int, seed: bytes) -> bytes:
    if not seed:
        raise InvalidArgument("empty random seed")
    return frame(T.RNGSEED, id_, seed)


@dataclass(frozen=True, slots=True)
class NetConf:
    """eth0 in the guest: its MAC, an IPv4 address with its prefix ("10.0.0.2/24"), the gateway ("" for none)."""

    mac: str
    address: str
    gateway: str = ""


def encode_netconf(id_: int, c: NetConf) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", c.mac):
        raise InvalidArgument(f"invalid MAC address {c.mac!r}")
    try:
        iface = ipaddress.IPv4Interface(c.address)
        if c.gateway:
            ipaddress.IPv4Address(c.gateway)
    except ValueError as exc:
        raise InvalidArgument(f"invalid guest address or gateway: {exc}") from None
    if "/" not in c.address:
        raise InvalidArgument(f"the guest address needs its prefix length: {c.address!r}")
    return frame(T.NETCONF, id_, _str(c.mac) + _str(iface.with_prefixlen) + _str(c.gateway))


def decode_netconf(payload: bytes) -> NetConf:
    r = _Reader(payload, "NETCONF")
    c = NetConf(r.str(), r.str(), r.str())
    r.end()
    return c


def encode_shutdown(id_: int = 0) -> bytes:
    return frame(T.SHUTDOWN, id_)


# ---- guest -> host (the agent's side; here for tests and fakes) ---------------

def encode_ready(release: str) -> bytes:
    return frame(T.READY, 0, _str(release))


def encode_started(id_: int, pid: int) -> bytes:
    return frame(T.STARTED, id_, _u32(pid, "pid"))


def encode_output(type_: T, id_: int, data: bytes) -> list[bytes]:
    if type_ not in (T.STDOUT, T.STDERR):
        raise InvalidArgument(f"not an output stream: {type_!r}")
    return [frame(type_, id_, chunk) for chunk in split_data(data)]


def encode_exit(id_: int, code: int) -> bytes:
    return frame(T.EXIT, id_, struct.pack(">i", code))


def encode_error(id_: int, message: str) -> bytes:
    return frame(T.ERROR, id_, _str(message.encode()[: MAX_PAYLOAD - 4]))


def encode_ok(id_: int) -> bytes:
    return frame(T.OK, id_)


def split_data(data: bytes) -> list[bytes]:
    """Split *data* into payloads of at most MAX_PAYLOAD bytes (none for empty data)."""
    return [bytes(data[i:i + MAX_PAYLOAD]) for i in range(0, len(data), MAX_PAYLOAD)]


# ---- payload readers -------------------------------------------------------------

class _Reader:
    def __init__(self, payload: bytes, what: str) -> None:
        self.buf, self.pos, self.what = payload, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise InvalidArgument(f"truncated {self.what} payload")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def str(self) -> str:
        return self.take(self.u32()).decode(errors="replace")

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise InvalidArgument(f"{len(self.buf) - self.pos} trailing bytes in {self.what} payload")


def decode_mount(payload: bytes) -> Mount:
    r = _Reader(payload, "MOUNT")
    flags = r.u32()
    m = Mount(r.str(), r.str(), bool(flags & MOUNT_CONTAINER_ROOT), bool(flags & MOUNT_SUBDIR))
    r.end()
    return m


def decode_exec(payload: bytes) -> Exec:
    r = _Reader(payload, "EXEC")
    flags, uid, gid, rows, cols = r.u32(), r.u32(), r.u32(), r.u16(), r.u16()
    chroot, cwd = r.str(), r.str()
    argv = tuple(r.str() for _ in range(r.u32()))
    env = tuple(r.str() for _ in range(r.u32()))
    r.end()
    return Exec(argv, env, cwd, uid, gid, bool(flags & EXEC_TTY), chroot, rows, cols)


def decode_u32(payload: bytes) -> int:
    r = _Reader(payload, "u32")
    v = r.u32()
    r.end()
    return v


decode_started = decode_signal = decode_u32


def decode_resize(payload: bytes) -> tuple[int, int]:
    r = _Reader(payload, "RESIZE")
    v = (r.u16(), r.u16())
    r.end()
    return v


def decode_settime(payload: bytes) -> int:
    r = _Reader(payload, "SETTIME")
    v = int(struct.unpack(">Q", r.take(8))[0])
    r.end()
    return v


def decode_exit(payload: bytes) -> int:
    r = _Reader(payload, "EXIT")
    v = int(struct.unpack(">i", r.take(4))[0])
    r.end()
    return v


def decode_str(payload: bytes) -> str:
    r = _Reader(payload, "string")
    v = r.str()
    r.end()
    return v


decode_ready = decode_error = decode_str


class Decoder:
    """Incremental frame decoder: `feed(bytes)` returns the frames now complete."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Add *data*; raise InvalidArgument on an oversized frame or unknown type."""
        self._buf += data
        out: list[Frame] = []
        while len(self._buf) >= HEADER_LEN:
            length, type_, id_ = HEADER.unpack_from(self._buf)
            if length > self._max:
                raise InvalidArgument(f"agent frame of {length} bytes exceeds {self._max}")
            try:
                kind = T(type_)
            except ValueError:
                raise InvalidArgument(f"unknown agent frame type 0x{type_:02x}") from None
            if len(self._buf) < HEADER_LEN + length:
                break
            out.append(Frame(kind, id_, bytes(self._buf[HEADER_LEN:HEADER_LEN + length])))
            del self._buf[:HEADER_LEN + length]
        return out


def exec_frame(id_: int, argv: Sequence[str], *, env: Sequence[str] = (), cwd: str = "/",
               uid: int = 0, gid: int = 0, tty: bool = False, chroot: str = "",
               rows: int = 0, cols: int = 0) -> bytes:
    """Convenience wrapper around `encode_exec`."""
    return encode_exec(id_, Exec(tuple(argv), tuple(env), cwd, uid, gid, tty, chroot, rows, cols))
