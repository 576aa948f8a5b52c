"""Container output and input: logs, and attach over a hijacked connection.

Strategy: logs are read from the log file conmon writes (services.k8slog),
which holds every line whether or not berthd was running, so a client that
disconnects, or a daemon that dies, loses nothing. Attach connects to
conmon's attach socket (SOCK_SEQPACKET; each packet starts with a byte
naming the stream: 2 stdout, 3 stderr) and pumps both ways. Without a TTY,
output is framed with wire.stdcopy; with one, it is passed raw.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import AsyncIterator

from berth import timefmt
from berth.errors import InvalidArgument
from berth.services.containers import Container, Containers
from berth.services.k8slog import Entry, Parser
from berth.wire import stdcopy

log = logging.getLogger(__name__)

STREAM_IDS = {"stdout": 1, "stderr": 2}
POLL = 0.05
DETACH = b"\x10\x11"  # ctrl-p ctrl-q
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
    opts = ((c.doc["HostConfig"].get("LogConfig") or {}).get("Config")) or {}
    labels = c.doc["Config"].get("Labels") or {}
    env = dict(e.split("=", 1) for e in c.doc["Config"].get("Env") or [] if "=" in e)
    pairs = [f"{k}={labels[k]}" for k in opts.get("labels", "").split(",") if k in labels]
    pairs += [f"{k}={env[k]}" for k in opts.get("env", "").split(",") if k in env]
    return (",".join(pairs) + " ").encode() if pairs else b""


def frame(c: Container, entry: Entry, timestamps: bool, prefix: bytes = b"") -> bytes:
    data = prefix + entry.data if prefix else entry.data
    if timestamps:
        data = timefmt.format_ns(entry.time_ns).encode() + b" " + data
    if c.doc["Config"].get("Tty"):
        return data
    return stdcopy.encode(STREAM_IDS.get(entry.stream, 1), data)


async def logs(containers: Containers, c: Container, opts: LogOptions) -> AsyncIterator[bytes]:
    """Yield the container's log as wire bytes, following while it runs when asked."""
    if not (opts.stdout or opts.stderr):
        raise InvalidArgument("You must choose at least one stream")
    if (c.doc["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
        raise InvalidArgument('configured logging driver does not support reading ("none")')
    want = {s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on}

    def keep(e: Entry) -> bool:
        return e.stream in want and e.time_ns >= opts.since_ns and (not opts.until_ns or e.time_ns <= opts.until_ns)

    prefix = details(c) if opts.details else b""
    yield b""  # request checked: let the caller send the headers now
    parser = Parser()
    pos = 0
    path = log_path(c)
    try:
        with open(path, "rb") as f:
            data = f.read()
            pos = len(data)
    except FileNotFoundError:
        data = b""
    entries = [e for e in parser.feed(data) if keep(e)]
    if opts.tail >= 0:
        entries = entries[len(entries) - opts.tail:] if opts.tail else []
    for e in entries:
        yield frame(c, e, opts.timestamps, prefix)
    if not opts.follow:
        return
    if opts.until_ns and opts.until_ns < timefmt.parse_ns(timefmt.now()):
        return
    exits = c.exits
    while True:
        running = c.running and c.exits == exits and not c.removed
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            data = b""
        pos += len(data)
        for e in parser.feed(data):
            if keep(e):
                yield frame(c, e, opts.timestamps, prefix)
        if not running:
            return
        if opts.until_ns and timefmt.parse_ns(timefmt.now()) > opts.until_ns:
            return
        try:
            async with c.changed:
                await asyncio.wait_for(c.changed.wait(), POLL)
        except asyncio.TimeoutError:
            pass


@dataclass(frozen=True, slots=True)
class AttachOptions:
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    stream: bool = True
    logs: bool = False
    detach_keys: bytes = DETACH


async def attach(containers: Containers, c: Container, opts: AttachOptions,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending_input: bytes) -> None:
    """Serve one hijacked attach connection until the container's output ends or the client leaves."""
    tty = bool(c.doc["Config"].get("Tty"))
    containers.event(c, "attach")
    if opts.logs:
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
            sock.connect(containers.runtime_of(c).attach_socket(c.id, c.dir))
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
        while True:
            if data:
                if tty and opts.detach_keys and opts.detach_keys in data:
                    before = data.split(opts.detach_keys, 1)[0]
                    for i in range(0, len(before), STDIN_PACKET):
                        await loop.sock_sendall(sock, before[i:i + STDIN_PACKET])
                    return
                for i in range(0, len(data), STDIN_PACKET):  # conmon reads one packet into 32 KiB
                    await loop.sock_sendall(sock, data[i:i + STDIN_PACKET])
            data = await reader.read(65536)
            if not data:
                if c.doc["Config"].get("StdinOnce"):
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                await asyncio.Event().wait()  # keep reading output until it ends

    out_task = asyncio.ensure_future(pump_out())
    tasks = {out_task}
    if opts.stdin and c.doc["Config"].get("OpenStdin"):
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
