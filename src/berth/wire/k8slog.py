"""Read container logs written by conmon in its k8s-file format.

Strategy: each line is `<RFC3339 time> <stdout|stderr> <P|F> <text>`; F ends a
line (conmon dropped the newline), P is a piece of a longer line. Parsing is
pure (feed bytes, get entries); following a growing file is a poll loop in the
caller. A P piece becomes an entry without a newline, as Docker's
json-file driver stores a line it had to split.

Bounds: conmon and the VM monitor write records of a few KiB (longer lines
are split into P pieces), so a record longer than MAX_RECORD is not one of
theirs: the parser drops it rather than buffer it. `tail_start` finds where
the last N wanted records begin by reading the file backwards in blocks, so
`docker logs --tail N` of a large log reads only its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from berth import timefmt

MAX_RECORD = 1 << 20  # bytes of one log record, time and stream included
BLOCK = 1 << 20  # what tail_start reads at a time


@dataclass(frozen=True, slots=True)
class Entry:
    stream: str      # "stdout" | "stderr"
    data: bytes      # including the trailing newline when the line ended
    time_ns: int


def parse_record(line: bytes) -> Entry | None:
    """One record without its newline; None when it is not a valid record."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
        return None
    try:
        ns = timefmt.parse_ns(parts[0].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    text = parts[3] if len(parts) > 3 else b""
    return Entry(parts[1].decode(), text if parts[2] == b"P" else text + b"\n", ns)


class Parser:
    """Feed bytes, get entries; holds at most MAX_RECORD bytes of an unfinished record."""

    def __init__(self) -> None:
        self._buf = b""
        self._skipping = False  # inside a record longer than MAX_RECORD: drop up to its newline

    def feed(self, data: bytes) -> list[Entry]:
        """Entries completed by *data*; a P piece is an entry without its newline."""
        buf = self._buf + data if self._buf else data
        out: list[Entry] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            elif nl - start <= MAX_RECORD:
                entry = parse_record(buf[start:nl])
                if entry is not None:
                    out.append(entry)
            start = nl + 1
        rest = buf[start:]
        if self._skipping or len(rest) > MAX_RECORD:
            self._skipping, rest = True, b""
        self._buf = rest
        return out


def tail_start(read_at: Callable[[int, int], bytes], size: int, n: int,
               wanted: Callable[[Entry], bool]) -> int:
    """The offset where the last *n* wanted complete records of a log of *size* bytes begin.

    *read_at(offset, length)* reads the log; blocks of BLOCK bytes are read from
    the end until *n* wanted records are found (0: the whole log has fewer). A
    record not yet ended by a newline is not counted. With n == 0, the offset
    after the last complete record.
    """
    pos = size
    line_end: int | None = None  # end (after its newline) of the record being collected
    later = b""  # the part of that record read from later blocks
    overlong = False
    count = 0

    def counts(line: bytes) -> bool:
        if overlong or len(line) > MAX_RECORD:
            return False
        entry = parse_record(line)
        return entry is not None and wanted(entry)

    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        block = read_at(pos, step)
        if len(block) != step:
            raise OSError(f"the log shrank while it was read (at {pos}, wanted {step} bytes, got {len(block)})")
        i = len(block)
        while True:
            j = block.rfind(b"\n", 0, i)
            if j < 0:
                if line_end is not None and not overlong:
                    later = block[:i] + later
                    if len(later) > MAX_RECORD:
                        overlong, later = True, b""
                break
            if line_end is None:
                if n == 0:
                    return pos + j + 1
            elif counts(block[j + 1:i] + later):
                count += 1
                if count == n:
                    return pos + j + 1
            line_end, later, overlong, i = pos + j + 1, b"", False, j
    return 0
