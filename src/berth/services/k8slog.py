"""Read container logs written by conmon in its k8s-file format.

Strategy: each line is `<RFC3339 time> <stdout|stderr> <P|F> <text>`; F ends a
line (conmon dropped the newline), P is a piece of a longer line. Parsing is
pure (feed bytes, get entries); following a growing file is a poll loop in the
caller. A P piece becomes an entry without a newline, as Docker's
json-file driver stores a line it had to split.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth import timefmt


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str      # "stdout" | "stderr"
    data: bytes      # including the trailing newline when the line ended
    time_ns: int


class Parser:
    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Entry]:
        """Entries completed by *data*; a P piece is an entry without its newline."""
        self._buf += data
        out: list[Entry] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return out
            line, self._buf = self._buf[:nl], self._buf[nl + 1:]
            parts = line.split(b" ", 3)
            if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
                continue
            try:
                ns = timefmt.parse_ns(parts[0].decode())
            except ValueError:
                continue
            text = parts[3] if len(parts) > 3 else b""
            out.append(Entry(parts[1].decode(), text if parts[2] == b"P" else text + b"\n", ns))
