"""The local terminal: raw mode, window size, SIGWINCH, and signal proxying.

Strategy: context managers that always undo what they did (terminal attributes,
signal handlers), even when the body raises, so a failed `run -t` never leaves
the user's terminal in raw mode.
"""

from __future__ import annotations

import os
import signal
import termios
import tty as _tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# Signals a `run`/`attach` without a TTY forwards to the container (docker's --sig-proxy).
_NOT_PROXIED = {signal.SIGCHLD, signal.SIGPIPE, signal.SIGWINCH, signal.SIGKILL,
                signal.SIGSTOP, signal.SIGURG, signal.SIGTSTP, signal.SIGTTIN,
                signal.SIGTTOU, signal.SIGCONT}


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def terminal_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of the terminal on *fd*, or None when it is not a terminal."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    if size.lines <= 0 or size.columns <= 0:
        return None
    return size.lines, size.columns


@contextmanager
def raw_mode(fd: int, enabled: bool = True) -> Iterator[None]:
    """Put the terminal on *fd* in raw mode for the duration; restore it always."""
    if not enabled or not is_tty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        _tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def on_resize(callback: Callable[[int, int], None], fd: int = 1,
              enabled: bool = True) -> Iterator[None]:
    """Call callback(rows, cols) now and on every SIGWINCH while in the block."""
    if not enabled or terminal_size(fd) is None:
        yield
        return

    def fire(*_: object) -> None:
        size = terminal_size(fd)
        if size is not None:
            try:
                callback(*size)
            except Exception:  # a failed resize must not end the session
                pass

    previous = signal.signal(signal.SIGWINCH, fire)
    try:
        fire()
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


@contextmanager
def proxy_signals(forward: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """Forward catchable signals (by name, e.g. "SIGINT") to *forward* while in the block."""
    if not enabled:
        yield
        return
    saved: dict[signal.Signals, object] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            forward(signal.Signals(signum).name)
        except Exception:
            pass

    for sig in signal.valid_signals():
        if not isinstance(sig, signal.Signals) or sig in _NOT_PROXIED:
            continue
        try:
            saved[sig] = signal.signal(sig, handler)
        except (OSError, ValueError, RuntimeError):
            continue
    try:
        yield
    finally:
        for sig, prev in saved.items():
            try:
                signal.signal(sig, prev)  # type: ignore[arg-type]
            except (OSError, ValueError, TypeError):
                pass
