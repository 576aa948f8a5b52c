"""Run a further process in a VM-isolated container, in the foreground (what `runc exec` is for runc).

    python -m berth.vm.execclient --control SOCKET --process process.json [--pid-file F]

Strategy: connect to the container's monitor (berth-vm-monitor) control
socket, send the line "exec" and the process (its OCI process object) as an
agent EXEC frame, then relay: our stdin -> STDIN frames (EOF -> STDIN_EOF), its
STDOUT / STDERR frames -> our fd 1 / 2, and exit with its code. Frames carry id
0 on this connection; the monitor gives the process its own id in the guest.
With a terminal our stdin is a pty that berthd handed us: it is put in raw
mode, and SIGWINCH sends our window size on as RESIZE, as runc does for its
foreground exec.

`process_frame` is also how the shim builds the container's main process and
how VmRuntime builds its `top`: one place turns an OCI process into a frame.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import tty
from collections.abc import Mapping
from typing import Any

from berth.errors import BerthError
from berth.wire import agentproto as ap

GUEST_ROOT = "/mnt/rootfs"  # where the guest mounts the container's root (the shim mounts it there)
EXEC_OP = b"exec\n"
NO_START = 126  # docker exec's code when the process could not be started


def process_frame(process: Mapping[str, Any], *, rows: int = 0, cols: int = 0, chroot: str = GUEST_ROOT) -> bytes:
    """The EXEC frame (id 0) that runs an OCI process object in the container's root.

    Raises:
        InvalidArgument: no args, an environment entry without "=", or a field out of range.
    """
    user = process.get("user") or {}
    return ap.encode_exec(0, ap.Exec(
        argv=tuple(process.get("args") or ()), env=tuple(process.get("env") or ()),
        cwd=process.get("cwd") or "/", uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
        tty=bool(process.get("terminal")), chroot=chroot, rows=rows, cols=cols))


def _winsize(fd: int) -> tuple[int, int]:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="berth-vm-exec")
    p.add_argument("--control", required=True)
    p.add_argument("--process", required=True)
    p.add_argument("--pid-file")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    with open(args.process) as f:
        process = json.load(f)
    terminal = bool(process.get("terminal"))
    rows, cols = _winsize(0) if terminal else (0, 0)
    try:
        request = EXEC_OP + process_frame(process, rows=rows, cols=cols)
    except BerthError as exc:
        os.write(2, f"{exc}\n".encode())
        sys.exit(NO_START)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(args.control)
    except OSError as exc:
        os.write(2, f"the container's VM monitor does not answer ({exc}): is the container running?\n".encode())
        sys.exit(NO_START)
    sock.sendall(request)
    saved = None
    if terminal and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    wake_r, wake_w = os.pipe()
    signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_w, b"w"))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    try:
        sel.register(0, selectors.EVENT_READ)
    except (PermissionError, ValueError):  # /dev/null or a file: nothing to wait for
        _send(sock, ap.encode_stdin_eof(0))
    sel.register(wake_r, selectors.EVENT_READ)
    decoder = ap.Decoder()
    code = NO_START
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    data = sock.recv(65536)
                    if not data:
                        return
                    for frame in decoder.feed(data):
                        if frame.type == ap.T.STARTED and args.pid_file:
                            with open(args.pid_file, "w") as f:
                                f.write(f"{ap.decode_started(frame.payload)}\n")
                        elif frame.type in (ap.T.STDOUT, ap.T.STDERR):
                            os.write(1 if frame.type == ap.T.STDOUT or terminal else 2, frame.payload)
                        elif frame.type == ap.T.ERROR:
                            os.write(2, (ap.decode_error(frame.payload) + "\n").encode())
                            code = NO_START
                            return
                        elif frame.type == ap.T.EXIT:
                            code = ap.decode_exit(frame.payload)
                            return
                elif key.fileobj == 0:
                    data = os.read(0, 65536)
                    frames = b"".join(ap.encode_stdin(0, data)) if data else ap.encode_stdin_eof(0)
                    if not _send(sock, frames) or not data:
                        sel.unregister(0)  # the process is gone or has all its input: still read its exit
                else:
                    os.read(wake_r, 64)
                    _send(sock, ap.encode_resize(0, *_winsize(0)))
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sys.exit(code)


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send to the monitor; False when it has already closed its side (the process ended first)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


if __name__ == "__main__":
    main()
