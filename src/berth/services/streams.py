"""Container output and input: logs, and attach over a hijacked connection.

Strategy: logs are read from the log file conmon writes (services.k8slog),
which holds every line whether or not berthd was running, so a client that
disconnects, or a daemon that dies, loses nothing. The log is read in
blocks of READ_BLOCK in a thread (never on the event loop), `--tail N` from
its end (k8slog.tail_start), so the daemon holds a block and its frames
whatever the log's size; following, a log the monitor rotated
(`--log-opt max-size`: a new file renamed over the old one) is finished and
then reopened from its start. Attach connects to
conmon's attach socket (SOCK_SEQPACKET; each packet starts with a byte
naming the stream: 2 stdout, 3 stderr) and pumps both ways. Without a TTY,
output is framed with wire.stdcopy; with one, it is passed raw.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from dataclasses import dataclass
from typing import AsyncIterator, BinaryIO, Callable, Iterable

from berth import timefmt
from berth.errors import InvalidArgument
from berth.services.containers import Containers
from berth.services.records import Container
from berth.wire import detachkeys, k8slog, stdcopy
from berth.wire.k8slog import Entry, Parser

log = logging.getLogger(__name__)

STREAM_IDS = {"stdout": 1, "stderr": 2}
POLL = 0.05
DETACH = detachkeys.DEFAULT  # ctrl-p ctrl-q
READ_BLOCK = 1 << 20  # bytes of the log read at a time
STDIN_PACKET = 16384  # the attach socket is SOCK_SEQPACKET: a packet conmon cannot read whole is cut


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    stdout: bool = True
    stderr: bool = True
    since_ns: int = 0
    until_ns: int = 0
    timestamps: bool = False
    tail: int = -1     # -1 = all
    details: bool = False  # prefix the attributes named by --log-opt labels=/env=


def log_path(c: Container) -> str:
    return os.path.join(c.dir, "container.log")


def details(c: Container) -> bytes:
    """The `k=v,k=v ` prefix `docker logs --details` shows, from --log-opt labels= and env=."""
    opts = c.host.log_config.config
    labels = c.config.labels
    env = dict(e.split("=", 1) for e in c.config.env or [] if "=" in e)
    pairs = [f"{k}={labels[k]}" for k in opts.get("labels", "").split(",") if k in labels]
    pairs += [f"{k}={env[k]}" for k in opts.get("env", "").split(",") if k in env]
    return (",".join(pairs) + " ").encode() if pairs else b""


def frame(c: Container, entry: Entry, timestamps: bool, prefix: bytes = b"") -> bytes:
    data = prefix + entry.data if prefix else entry.data
    if timestamps:
        data = timefmt.format_ns(entry.time_ns).encode() + b" " + data
    if c.record.tty:
        return data
    return stdcopy.encode(STREAM_IDS.get(entry.stream, 1), data)


async def logs(containers: Containers, c: Container, opts: LogOptions) -> AsyncIterator[bytes]:
    """Yield the container's log as wire bytes, following while it runs when asked."""
    if not (opts.stdout or opts.stderr):
        raise InvalidArgument("You must choose at least one stream")
    if c.host.log_config.type == "none":
        raise InvalidArgument('configured logging driver does not support reading ("none")')
    want = {s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on}

    def keep(e: Entry) -> bool:
        return e.stream in want and e.time_ns >= opts.since_ns and (not opts.until_ns or e.time_ns <= opts.until_ns)

    prefix = details(c) if opts.details else b""

    def render(entries: Iterable[Entry]) -> bytes:
        return b"".join(frame(c, e, opts.timestamps, prefix) for e in entries if keep(e))

    yield b""  # request checked: let the caller send the headers now
    path = log_path(c)
    cur = _Cursor(await asyncio.to_thread(_open_log, path), 0, Parser())
    try:
        size = os.fstat(cur.file.fileno()).st_size if cur.file is not None else 0
        if cur.file is not None and opts.tail >= 0:
            f = cur.file
            cur.pos = await asyncio.to_thread(k8slog.tail_start, lambda off, n: os.pread(f.fileno(), n, off),
                                              size, opts.tail, keep)
        # What is there now; without --follow, up to the size it had when the request came, however
        # fast it grows.
        async for out in _read(cur, None if opts.follow else size, render):
            yield out
        if not opts.follow:
            return
        if opts.until_ns and opts.until_ns < timefmt.parse_ns(timefmt.now()):
            return
        exits = c.exits
        while True:
            running = c.running and c.exits == exits and not c.removed
            again = True
            while again:  # the monitor may have rotated the log (--log-opt max-size) since the last look
                cur.file, cur.pos, cur.parser, again = await asyncio.to_thread(
                    _reopen_if_rotated, path, cur.file, cur.pos, cur.parser)
                async for out in _read(cur, None, render):
                    yield out
            if not running:
                return
            if opts.until_ns and timefmt.parse_ns(timefmt.now()) > opts.until_ns:
                return
            try:
                async with c.changed:
                    await asyncio.wait_for(c.changed.wait(), POLL)
            except asyncio.TimeoutError:
                pass
    finally:
        if cur.file is not None:
            cur.file.close()


@dataclass
class _Cursor:
    """Where a reader of a log is: the open file (None before it exists), the offset, the parser's state."""

    file: BinaryIO | None
    pos: int
    parser: Parser


async def _read(cur: _Cursor, upto: int | None, render: Callable[[Iterable[Entry]], bytes]) -> AsyncIterator[bytes]:
    """What the log holds from the cursor on (to offset *upto*, or its end), rendered, a block at a time.

    Memory stays at a block and its frames, whatever the log's size; the reads run in a thread.
    """
    while cur.file is not None and (upto is None or cur.pos < upto):
        step = READ_BLOCK if upto is None else min(READ_BLOCK, upto - cur.pos)
        data = await asyncio.to_thread(os.pread, cur.file.fileno(), step, cur.pos)
        if not data:
            return
        cur.pos += len(data)
        out = render(cur.parser.feed(data))
        if out:
            yield out


def _open_log(path: str) -> BinaryIO | None:
    """The log file, opened without following a symlink; None when there is none yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, OSError):
        return None
    f = os.fdopen(fd, "rb", buffering=0)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        return None
    return f  # type: ignore[return-value]


def _reopen_if_rotated(path: str, f: BinaryIO | None, pos: int,
                       parser: Parser) -> tuple[BinaryIO | None, int, Parser, bool]:
    """(file, offset, parser, again) to go on reading the log at *path*.

    The same file while it is still the log; from 0 when it was truncated in
    place; the new log once the old one (replaced by a rename) has been read to
    its end. *again*: read, then ask once more (the switch may not be done yet).
    """
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return f, pos, parser, False
    if f is None:
        new = _open_log(path)
        return new, 0, parser, new is not None
    mine = os.fstat(f.fileno())
    if (mine.st_ino, mine.st_dev) == (st.st_ino, st.st_dev):
        if mine.st_size >= pos:
            return f, pos, parser, False
        return f, 0, Parser(), True  # truncated in place
    if os.pread(f.fileno(), 1, pos):
        return f, pos, parser, True  # replaced: first what was written to the old file before the rename
    f.close()
    return _open_log(path), 0, Parser(), True


@dataclass(frozen=True, slots=True)
class AttachOptions:
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    stream: bool = True
    logs: bool = False
    detach_keys: bytes = DETACH


LOG_REPLAY_PAUSE = 0.05  # s between the upgrade headers and an attach's replay of the log


async def attach(containers: Containers, c: Container, opts: AttachOptions,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending_input: bytes) -> None:
    """Serve one hijacked attach connection until the container's output ends or the client leaves."""
    tty = c.record.tty
    containers.event(c, "attach")
    if opts.logs:
        # docker-py (and so compose 1.x) reads the 101 headers through a buffered reader and then reads
        # the socket itself: log bytes that arrive together with the headers land in that buffer and are
        # lost to it (1 in ~30 `attach(logs=True, stream=False)` came back empty). Give it the moment it
        # needs to take the headers alone; a live stream needs no such pause (its output comes later).
        await asyncio.sleep(LOG_REPLAY_PAUSE)
        async for chunk in logs(containers, c, LogOptions(stdout=opts.stdout, stderr=opts.stderr)):
            writer.write(chunk)
        await writer.drain()
    if not opts.stream:
        return
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setblocking(False)
    connected = loop.create_future()

    def connect(ok: bool = True) -> None:
        if connected.done():
            return
        if not ok:
            connected.set_result(False)
            return
        try:
            sock.connect(containers.task_of(c).attach_socket())
            connected.set_result(True)
        except OSError as exc:
            connected.set_exception(exc)

    if c.running:
        connect()
    else:  # wait for the start that docker run / start -a is about to send
        c.pending_attach.append(connect)
    try:
        while not connected.done():
            async with c.changed:
                await c.changed.wait_for(lambda: connected.done() or c.removed)
            if c.removed:
                connect(False)
        ok = await connected
    except OSError as exc:
        log.info("attach %s: %s", c.id[:12], exc)
        ok = False
    finally:
        if connect in c.pending_attach:
            c.pending_attach.remove(connect)
    if not ok:
        sock.close()
        return

    async def pump_out() -> None:
        while True:
            try:
                packet = await loop.sock_recv(sock, 65536)
            except OSError:
                return
            if not packet:
                return
            kind, data = packet[0], packet[1:]
            name = "stderr" if kind == 3 else "stdout"
            if (name == "stdout" and not opts.stdout) or (name == "stderr" and not opts.stderr):
                continue
            writer.write(data if tty else stdcopy.encode(STREAM_IDS[name], data))
            await writer.drain()

    async def pump_in() -> None:
        data = pending_input
        keys = detachkeys.Detector(opts.detach_keys if tty else b"")  # as Docker: with a terminal only
        while True:
            if data:
                data = keys.feed(data)
                for i in range(0, len(data), STDIN_PACKET):  # conmon reads one packet into 32 KiB
                    await loop.sock_sendall(sock, data[i:i + STDIN_PACKET])
                if keys.detached:  # the stream ends, the container goes on
                    containers.event(c, "detach")
                    return
            data = await reader.read(65536)
            if not data:
                if tail := keys.flush():
                    await loop.sock_sendall(sock, tail)
                if c.config.stdin_once:
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                await asyncio.Event().wait()  # keep reading output until it ends

    out_task = asyncio.ensure_future(pump_out())
    tasks = {out_task}
    if opts.stdin and c.config.open_stdin:
        tasks.add(asyncio.ensure_future(pump_in()))
    else:
        tasks.add(asyncio.ensure_future(_until_closed(reader)))
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.debug("attach %s: %s", c.id[:12], t.exception())
    finally:
        sock.close()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    """Wait until the client closes its side (data it sends is ignored)."""
    while await reader.read(65536):
        pass
    await asyncio.Event().wait()
