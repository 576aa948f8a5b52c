"""Run a further process in a VM-isolated container, in the foreground (what `runc exec` is for runc).

    python -m berth.vm.execclient --control SOCKET --process process.json [--pid-file F]

Strategy: connect to the container's shim, send the process (its OCI process
object), then relay: our stdin -> STDIN frames (EOF -> STDIN_EOF), its STDOUT /
STDERR frames -> our fd 1 / 2, and exit with its code. With a terminal our stdin
is a pty that berthd handed us: it is put in raw mode, and SIGWINCH sends our
window size on as RESIZE, as runc does for its foreground exec.
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

from berth.wire import agentproto as ap


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
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(args.control)
    sock.sendall(json.dumps({"op": "exec", "process": process, "rows": rows, "cols": cols}).encode() + b"\n")
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
        sock.sendall(ap.encode_stdin_eof(0))
    sel.register(wake_r, selectors.EVENT_READ)
    decoder = ap.Decoder()
    code = 126
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
                            code = 126
                            return
                        elif frame.type == ap.T.EXIT:
                            code = ap.decode_exit(frame.payload)
                            return
                elif key.fileobj == 0:
                    data = os.read(0, 65536)
                    if data:
                        sock.sendall(b"".join(ap.encode_stdin(0, data)))
                    else:
                        sock.sendall(ap.encode_stdin_eof(0))
                        sel.unregister(0)
                else:
                    os.read(wake_r, 64)
                    sock.sendall(ap.encode_resize(0, *_winsize(0)))
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sys.exit(code)


if __name__ == "__main__":
    main()
