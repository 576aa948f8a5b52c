"""What every per-container monitor (conmon, the VM shim) shares: the bundle's files.

Strategy: both monitors take resize requests as "1 <rows> <cols>" lines on the
bundle's `ctl` fifo, and `top` comes back as ps's text table; one place writes the
one and parses the other, for every driver.
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgument


def write_resize(bundle: str, height: int, width: int) -> None:
    """Ask the monitor of *bundle* to resize the container's terminal.

    Raises:
        InvalidArgument: a size outside 0..1000.
        FileNotFoundError: the monitor is not running (no ctl fifo).
    """
    if not (0 <= height <= 1000 and 0 <= width <= 1000):
        raise InvalidArgument("resize: height and width must be between 0 and 1000")
    fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, f"1 {height} {width}\n".encode())
    finally:
        os.close(fd)


def parse_ps(text: str) -> tuple[list[str], list[list[str]]]:
    """ps's table -> (titles, rows); the last column (the command) keeps its spaces."""
    lines = text.splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    return titles, [line.split(None, len(titles) - 1) for line in lines[1:] if line.strip()]
