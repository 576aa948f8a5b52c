"""Detach keys: the sequence a client types to leave an attach or exec stream (ctrl-p ctrl-q by default).

Strategy: sans-IO. `parse` turns Docker's spelling ("ctrl-p,ctrl-q", "a,ctrl-x")
into bytes; a `Detector` is fed the client's input as it arrives and returns
what to pass on to the process, holding back a possible beginning of the
sequence until the next read shows whether it is one (a client that types
the keys sends one byte per write, with time between them). Held bytes that
turn out not to be the sequence are passed on, in order.
"""

from __future__ import annotations

from berth.errors import InvalidArgument

DEFAULT = b"\x10\x11"  # ctrl-p ctrl-q
_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(spec: str | None) -> bytes:
    """Docker's detach-keys spelling as bytes; DEFAULT when empty.

    Raises:
        InvalidArgument: a key that is neither one character nor ctrl-<a-z, @, [, \\, ], ^, _>.
    """
    if not spec:
        return DEFAULT
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_SPECIAL:
                out.append(_CTRL_SPECIAL[ch])
                continue
        elif len(key) == 1 and ord(key) < 128:
            out += key.encode()
            continue
        raise InvalidArgument(f"invalid detach keys ({spec}) provided: use a comma-separated list of single "
                              "characters and ctrl-<a-z, @, [, \\, ], ^, _>")
    return bytes(out)


class Detector:
    """Finds the detach sequence in a stream of input chunks."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        """The part of *data* (after what was held) to pass on; sets `detached` when the sequence is complete."""
        if self.detached:
            return b""
        if not self.keys:
            return data
        buf = self._held + data
        at = buf.find(self.keys)
        if at >= 0:
            self.detached = True
            self._held = b""
            return buf[:at]
        keep = 0  # the longest end of buf that begins the sequence
        for n in range(min(len(self.keys) - 1, len(buf)), 0, -1):
            if buf.endswith(self.keys[:n]):
                keep = n
                break
        self._held = buf[len(buf) - keep:] if keep else b""
        return buf[:len(buf) - keep]

    def flush(self) -> bytes:
        """What is held back, at the end of the input."""
        held, self._held = self._held, b""
        return held
