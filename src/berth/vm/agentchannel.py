"""A running VM's channel to its guest agent: requests, processes in the guest, one reader task.

    gp = await vm.exec(["uname", "-r"], rootfs_tag="rootfs")
    await gp.close_stdin()
    code = await gp.wait()

Strategy: the channel is a unix socket that QEMU's virtio-serial port is
connected to (`berth.vm.boot` sets that up and hands the two stream ends here).
One reader task decodes frames (`berth.wire.agentproto`) and routes them by id
to whoever waits: request futures (MOUNT/SETTIME/RNGSEED -> OK/ERROR, EXEC ->
STARTED/ERROR) and `GuestProcess` objects (output queue, exit future). Output is
buffered without bound here; a real driver would apply backpressure per process.
When the channel ends, every waiter is failed with Unavailable, so nobody waits
on a VM that is gone. `AgentChannel` is the base of `berth.vm.boot.UtilityVM`,
which adds how the VM is started, saved and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import CommandFailed, Unavailable
from berth.wire import agentproto as ap

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class GuestProcess:
    """A process the agent started; output frames land in `output` as (T.STDOUT|T.STDERR, bytes)."""

    vm: AgentChannel
    id: int
    pid: int = 0
    output: asyncio.Queue[tuple[ap.T, bytes]] = field(default_factory=asyncio.Queue)
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def write(self, data: bytes) -> None:
        await self.vm._send(*ap.encode_stdin(self.id, data))

    async def close_stdin(self) -> None:
        await self.vm._send(ap.encode_stdin_eof(self.id))

    async def signal(self, signo: int) -> None:
        await self.vm._send(ap.encode_signal(self.id, signo))

    async def resize(self, rows: int, cols: int) -> None:
        await self.vm._send(ap.encode_resize(self.id, rows, cols))

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)


class AgentChannel:
    """The engine's end of a running VM's agent channel (UtilityVM is one, with QEMU around it)."""

    def __init__(self, qemu: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, workdir: Path) -> None:
        self.qemu = qemu
        self.workdir = workdir
        self.kernel_release = ""
        self.boot_seconds = 0.0  # QEMU start -> agent READY
        self._reader = reader
        self._writer = writer
        self._ids = iter(range(1, 1 << 32))
        self._pending: dict[int, asyncio.Future[ap.Frame]] = {}
        self._procs: dict[int, GuestProcess] = {}
        self._mounted: dict[str, str] = {}
        self._ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._dead: BaseException | None = None
        self._task = asyncio.create_task(self._read_loop(), name="berth-vm-agent-reader")

    def channel_fd(self) -> int:
        """The agent channel's descriptor, for a monitor that takes the VM over (call when it is quiet)."""
        return int(self._writer.get_extra_info("socket").fileno())

    async def _close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    # -- the channel --

    async def _send(self, *frames: bytes) -> None:
        if self._dead is not None:
            raise Unavailable(f"the VM's agent is gone: {self._dead}")
        for f in frames:
            self._writer.write(f)
        await self._writer.drain()

    async def _request(self, make: Callable[[int], bytes], *, timeout: float = 60.0) -> ap.Frame:
        """Send the frame `make(id)` builds and wait for the reply with that id."""
        id_ = next(self._ids)
        fut: asyncio.Future[ap.Frame] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        try:
            await self._send(make(id_))
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(id_, None)
        if reply.type == ap.T.ERROR:
            raise CommandFailed(["berth-agent"], -1, ap.decode_error(reply.payload))
        return reply

    async def _read_loop(self) -> None:
        decoder = ap.Decoder()
        try:
            while True:
                data = await self._reader.read(256 * 1024)
                if not data:
                    raise Unavailable("the agent channel closed (did the VM stop?)")
                for frame in decoder.feed(data):
                    self._dispatch(frame)
        except asyncio.CancelledError:
            self._fail(Unavailable("the VM is shutting down"))
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of it
            log.debug("agent reader stopped: %s", exc)
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._dead = exc
        if not self._ready.done():
            self._ready.set_exception(exc if isinstance(exc, Unavailable) else Unavailable(str(exc)))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable(f"the VM's agent is gone: {exc}"))
        for p in self._procs.values():
            if not p.exited.done():
                p.exited.set_exception(Unavailable(f"the VM's agent is gone: {exc}"))
        self._procs.clear()
        with contextlib.suppress(asyncio.InvalidStateError):
            self._ready.exception()  # mark retrieved

    def _dispatch(self, frame: ap.Frame) -> None:
        if frame.type == ap.T.READY:
            if not self._ready.done():
                self._ready.set_result(ap.decode_ready(frame.payload))
            return
        fut = self._pending.get(frame.id)
        if fut is not None and not fut.done() and frame.type in (ap.T.OK, ap.T.ERROR, ap.T.STARTED):
            fut.set_result(frame)
            return
        p = self._procs.get(frame.id)
        if p is None:
            if frame.type == ap.T.ERROR:
                log.warning("agent error (id %d): %s", frame.id, ap.decode_error(frame.payload))
            return
        if frame.type in (ap.T.STDOUT, ap.T.STDERR):
            p.output.put_nowait((frame.type, frame.payload))
        elif frame.type == ap.T.EXIT:
            del self._procs[frame.id]
            if not p.exited.done():
                p.exited.set_result(ap.decode_exit(frame.payload))
        elif frame.type == ap.T.ERROR:
            log.warning("agent error for process %d: %s", frame.id, ap.decode_error(frame.payload))

    # -- what callers use --

    async def mount(self, tag: str, target: str | None = None, *, container_root: bool = True,
                    subdir: bool = False) -> str:
        """Mount the 9p share *tag* in the guest (once) and return where (*subdir*: its subdirectory m,
        as a pooled VM's shares hold what they serve)."""
        if tag in self._mounted:
            return self._mounted[tag]
        where = target or f"/mnt/{tag}"
        await self._request(lambda i: ap.encode_mount(i, ap.Mount(tag, where, container_root, subdir)))
        self._mounted[tag] = where
        return where

    async def netconf(self, conf: ap.NetConf) -> None:
        """Configure the guest's eth0: the container's MAC, address/prefix and default route."""
        await self._request(lambda i: ap.encode_netconf(i, conf))

    async def exec(self, argv: Sequence[str], *, env: Sequence[str] | Mapping[str, str] | None = None,
                   cwd: str = "/", uid: int = 0, gid: int = 0, tty: bool = False,
                   rootfs_tag: str | None = None, rows: int = 0, cols: int = 0) -> GuestProcess:
        """Start *argv* in the guest (chrooted into the share *rootfs_tag*, mounted on demand)."""
        root = await self.mount(rootfs_tag) if rootfs_tag else ""
        if env is None:
            env_list = [f"PATH={DEFAULT_PATH}"]
        elif isinstance(env, Mapping):
            env_list = [f"{k}={v}" for k, v in env.items()]
        else:
            env_list = list(env)
        spec = ap.Exec(tuple(argv), tuple(env_list), cwd, uid, gid, tty, root, rows, cols)
        id_ = next(self._ids)
        gp = GuestProcess(self, id_)
        self._procs[id_] = gp  # before sending: output may follow STARTED at once
        fut: asyncio.Future[ap.Frame] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        try:
            await self._send(ap.encode_exec(id_, spec))
            reply = await asyncio.wait_for(fut, 60)
        except BaseException:
            self._procs.pop(id_, None)
            raise
        finally:
            self._pending.pop(id_, None)
        if reply.type == ap.T.ERROR:
            self._procs.pop(id_, None)
            raise CommandFailed(list(argv), 127, ap.decode_error(reply.payload))
        gp.pid = ap.decode_started(reply.payload)
        return gp

    async def run(self, argv: Sequence[str], *, env: Sequence[str] | Mapping[str, str] | None = None,
                  cwd: str = "/", rootfs_tag: str | None = None, stdin: bytes | None = None,
                  uid: int = 0, gid: int = 0, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """Run *argv* to completion: (exit code, stdout, stderr)."""
        gp = await self.exec(argv, env=env, cwd=cwd, rootfs_tag=rootfs_tag, uid=uid, gid=gid)
        if stdin:
            await gp.write(stdin)
        await gp.close_stdin()
        try:
            code = await asyncio.wait_for(gp.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(Exception):
                await gp.signal(signal.SIGKILL)
            raise CommandFailed(list(argv), -1, f"timed out after {timeout}s in the VM") from None
        out, err = bytearray(), bytearray()
        while not gp.output.empty():
            kind, data = gp.output.get_nowait()
            (out if kind == ap.T.STDOUT else err).extend(data)
        return code, bytes(out), bytes(err)
