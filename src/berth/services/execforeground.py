"""Exec sessions that run in the foreground, as berthd's children: runsc and VM sessions with a terminal.

Strategy: runsc's exec has no --tty and conmon's pty settings do not suit
the VM's guest terminal, so `<runtime> exec` runs here on a pty of ours
(relayed to the client, window size passed on) or on pipes; such sessions
end with the daemon. Each function records the exit in the `Exec` and sets
its `done` event.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import struct
import termios
from collections.abc import Callable

from berth.host import proc
from berth.services.execsessions import Exec
from berth.wire import stdcopy


async def finish(e: Exec, child: asyncio.subprocess.Process, workdir: str, died: Callable[[Exec], None]) -> None:
    """Wait for a detached session's process; record its exit and remove its scratch directory."""
    try:
        e.exit_code = await child.wait()
    finally:
        e.running = False
        e.done.set()
        shutil.rmtree(workdir, ignore_errors=True)
        died(e)


async def run_pipes(e: Exec, argv: list[str], framed: bool, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter, pending: bytes) -> None:
    """The session on pipes: stdout and stderr to the client (framed or raw), the client's input to stdin."""
    want_in = e.config.attach_stdin
    child = await proc.spawn(argv, stdin=asyncio.subprocess.PIPE if want_in else asyncio.subprocess.DEVNULL,
                             stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def pump(stream: asyncio.StreamReader | None, number: int, wanted: bool) -> None:
        assert stream is not None
        while data := await stream.read(65536):
            if wanted:
                writer.write(stdcopy.encode(number, data) if framed else data)
                await writer.drain()

    async def feed() -> None:
        assert child.stdin is not None
        data = pending
        try:
            while True:
                if data:
                    child.stdin.write(data)
                    await child.stdin.drain()
                data = await reader.read(65536)
                if not data:
                    break
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            child.stdin.close()

    feeder = asyncio.ensure_future(feed()) if want_in else None
    try:
        await asyncio.gather(pump(child.stdout, 1, e.config.streams_stdout),
                             pump(child.stderr, 2, e.config.streams_stderr))
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        e.exit_code = await child.wait()
        e.running = False
        e.done.set()
        if feeder:
            feeder.cancel()


async def run_tty(e: Exec, argv: list[str], framed: bool, reader: asyncio.StreamReader,
             writer: asyncio.StreamWriter, pending: bytes) -> None:
    """The session on a pty of ours, relayed both ways to the client."""
    # runc refuses a console socket unless it detaches, so it runs in the
    # foreground on a pty of ours and relays to the container's own pty;
    # it copies our window size across on SIGWINCH.
    loop = asyncio.get_running_loop()
    master, slave = os.openpty()
    e.master = master
    size = e.config.console_size
    if size is not None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    try:
        child = await proc.spawn(argv, stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    e.child = child
    os.set_blocking(master, False)
    out_done = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
            if not out_done.done():
                out_done.set_result(None)
            return
        writer.write(stdcopy.encode(1, data) if framed else data)

    async def feed() -> None:
        data = pending
        while True:
            if data:
                os.write(master, data)
            data = await reader.read(65536)
            if not data:
                return

    loop.add_reader(master, readable)
    feeder = asyncio.ensure_future(feed())
    try:
        e.exit_code = await child.wait()
        await asyncio.wait({out_done}, timeout=1)
        await writer.drain()
    finally:
        loop.remove_reader(master)
        feeder.cancel()
        os.close(master)
        e.master = -1
        e.child = None
        if child.returncode is None:
            child.kill()
            await child.wait()
        e.running = False
        e.done.set()
