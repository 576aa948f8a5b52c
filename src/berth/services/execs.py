"""Exec: a further process in a running container.

Strategy: an exec is created from a typed `ExecConfig` (the API parses the
request); its process spec is the container's own (from its config.json:
capabilities, seccomp, rlimits, apparmor) with args, env, cwd, user (and
`--group-add`'s groups) and terminal replaced (services.execprocess). Under
runc (and, without a terminal, runsc and the VM, whose exec client conmon runs through
berth.vm.execruntime) a session runs under its own conmon (runtime.execmon),
as the container does: berthd is not its parent, so it outlives a restart of
the daemon, and its record (`session.json` in the session's directory, beside
conmon's files) gives `exec inspect` its exit code afterwards. The client's
stream is a connection to conmon's attach socket: output is framed with
wire.stdcopy unless the start request asked for a raw stream (Docker takes the
terminal from the create request, the framing from the start request), input
passes through a detach-key detector when there is a terminal, and a client
that leaves (or detaches) leaves the process running. With a terminal, runsc
(its exec has no --tty) and the VM (conmon forces ONLCR, which the guest's pty
already applies) run `<runtime> exec` in the foreground as berthd's child, on a
pty of ours (services.execforeground); those sessions end with the daemon. A
process that never started reports 126, as Docker does. The session's record
and files are services.execsessions'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import tempfile
import termios

from berth.errors import BerthError, Conflict, NotFound
from berth.host import fs, proc
from berth.runtime import execmon, monitor
from berth.services import execforeground, execprocess, execsessions
from berth.services.containers import Containers
from berth.services.execprocess import ExecConfig, ProcessSpec
from berth.services.execsessions import Exec, SavedSession
from berth.services.records import Container
from berth.wire import detachkeys, stdcopy

log = logging.getLogger(__name__)

KEPT_PER_CONTAINER = 64   # finished sessions kept (for inspect) per container; older ones are forgotten
END_WAIT = 30.0           # seconds a stream waits, once the output ended, for the exit code to be recorded
STDIN_PACKET = 16384      # the attach socket is SOCK_SEQPACKET: conmon reads one packet into 32 KiB
DETACHED = b"exec attach failed: error on attach stdin: read escape sequence\r\n"  # Docker's words


class Execs:
    def __init__(self, containers: Containers) -> None:
        self._containers = containers
        self._all: dict[str, Exec] = {}

    def get(self, exec_id: str) -> Exec:
        e = self._all.get(exec_id)
        if e is None or e.container.removed:
            raise NotFound(f"No such exec instance: {exec_id}")
        return e

    def create(self, ref: str, config: ExecConfig) -> str:
        """A new exec of *config* in the running container *ref*; its id.

        Raises:
            NotFound: no such container.  Conflict: it is not running, or it is paused.
        """
        c = self._containers.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.paused:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        self._tidy()
        exec_id = secrets.token_hex(32)
        self._all[exec_id] = Exec(exec_id, c, config)
        self._containers.event(c, "exec_create: " + " ".join(config.cmd), execID=exec_id)
        return exec_id

    def set_console_size(self, exec_id: str, size: tuple[int, int]) -> None:
        """The terminal's (height, width) for an exec not started yet (Docker's start request may give it)."""
        e = self.get(exec_id)
        e.config = dataclasses.replace(e.config, console_size=size)

    def check_startable(self, exec_id: str) -> Exec:
        """The exec, if it can start now (checked before a connection is hijacked, to answer with a status).

        Raises:
            NotFound: no such exec.  Conflict: already started, or its container is not running.
        """
        e = self.get(exec_id)
        if e.started or e.running or e.exit_code is not None:
            raise Conflict(f"exec {exec_id[:12]} has already been started")
        if not e.container.running:
            raise Conflict(f"Container {e.container.id} is not running")
        return e

    def resize(self, exec_id: str, height: int, width: int) -> None:
        e = self.get(exec_id)
        if e.session is not None and e.running:
            try:
                monitor.write_resize(e.session.directory, height, width)  # conmon resizes the pty it holds
            except OSError:  # the session ended meanwhile (no reader on its fifo)
                pass
        elif e.master >= 0:
            fcntl.ioctl(e.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            if e.child is not None and e.child.returncode is None:
                e.child.send_signal(signal.SIGWINCH)

    def probe_process(self, c: Container, argv: list[str]) -> ProcessSpec:
        """The OCI process of a health probe: *argv* with the container's own env, user and
        working directory (services.health runs it; it reads the container's files: call it in a thread)."""
        return execprocess.process_for(c, ExecConfig(cmd=tuple(argv)), False)

    async def start(self, exec_id: str, detach: bool, reader: asyncio.StreamReader | None,
                    writer: asyncio.StreamWriter | None, pending: bytes = b"", framed: bool | None = None) -> None:
        """Start the exec; attached (reader and writer: a hijacked connection), serve its stream to the end.

        *framed*: stdcopy frames on the stream (Docker: the start request's Tty false); by default
        when the process has no terminal.
        """
        e = self.check_startable(exec_id)
        e.started = True
        tty = e.config.tty
        if framed is None:
            framed = not tty
        command = self._containers.task_of(e.container).exec_monitored(tty)
        try:
            if command is not None:
                await self._start_monitored(e, command, tty, framed, None if detach else reader,
                                            None if detach else writer, pending)
            else:
                await self._start_foreground(e, tty, framed, detach, reader, writer, pending)
        except BaseException:
            if not e.running and e.exit_code is None:  # it never ran
                e.exit_code = 126
                e.done.set()
            raise

    async def _failed_to_start(self, e: Exec, exc: BerthError, framed: bool,
                               writer: asyncio.StreamWriter | None) -> None:
        """Reported in the stream, as Docker does once the connection is hijacked; raised when detached."""
        e.exit_code = 126
        e.done.set()
        if writer is None:
            raise exc
        message = f"{exc}\r\n".encode()
        writer.write(stdcopy.encode(1, message) if framed else message)
        await writer.drain()

    # under conmon ----------------------------------------------------------------------------------------
    async def _start_monitored(self, e: Exec, command: execmon.RuntimeCommand, tty: bool, framed: bool,
                               reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None,
                               pending: bytes) -> None:
        c = e.container
        loop = asyncio.get_running_loop()
        session = execmon.Session(os.path.join(c.dir, "execs", e.id), e.id)
        attached = reader is not None and writer is not None
        want_in = attached and e.config.attach_stdin
        try:
            process = await asyncio.to_thread(execprocess.process_for, c, e.config, tty)  # reads the image's files
        except BerthError as exc:
            await self._failed_to_start(e, exc, framed, writer)
            return
        await asyncio.to_thread(execsessions.prepare, session, process, e.config)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)

        async def connect() -> None:
            await loop.sock_connect(sock, execmon.attach_socket(command.socket_dir, session))

        argv = execmon.conmon_argv(command, c.id, session, tty=tty, stdin=want_in, attach=attached)
        e.session = session
        try:
            try:
                launched = await execmon.launch(argv, session, connect if attached else None)
            except execmon.ExecStartFailed as exc:
                await self._failed_to_start(e, exc, framed, writer)
                await asyncio.to_thread(execsessions.unlink_link, command.socket_dir, session)
                return
            e.pid, e.monitor_pid, e.running = launched.pid, launched.monitor_pid, True
            await asyncio.to_thread(execsessions.save, e)
            self._containers.event(c, "exec_start: " + " ".join(e.config.cmd), execID=e.id)
            e.watcher = loop.create_task(self._watch(e, command.socket_dir))
            if not attached:
                return
            assert reader is not None and writer is not None
            await self._pump(e, sock, tty, framed, want_in, reader, writer, pending)
        finally:
            sock.close()

    async def _pump(self, e: Exec, sock: socket.socket, tty: bool, framed: bool, want_in: bool,
                    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pending: bytes) -> None:
        """Relay between the client and the session's attach socket until the output ends, the client
        leaves or it detaches; the process goes on in the last two cases."""
        loop = asyncio.get_running_loop()
        cfg = e.config
        keys = detachkeys.Detector(detachkeys.parse(cfg.detach_keys) if tty else b"")

        async def output() -> str:
            while True:
                try:
                    packet = await loop.sock_recv(sock, 65536)
                except OSError:
                    return "ended"
                if not packet:
                    return "ended"
                number = 2 if packet[0] == 3 else 1
                if not (cfg.streams_stderr if number == 2 else cfg.streams_stdout):
                    continue
                writer.write(stdcopy.encode(number, packet[1:]) if framed else packet[1:])
                await writer.drain()

        async def send(data: bytes) -> None:
            for i in range(0, len(data), STDIN_PACKET):
                await loop.sock_sendall(sock, data[i:i + STDIN_PACKET])

        async def input_() -> str:
            data = pending
            while True:
                if data:
                    data = keys.feed(data)
                    if want_in and data:
                        await send(data)
                    if keys.detached:
                        return "detached"
                data = await reader.read(65536)
                if not data:
                    if want_in:
                        await send(keys.flush())
                        try:
                            sock.shutdown(socket.SHUT_WR)  # conmon closes the process's stdin
                        except OSError:
                            pass
                    await asyncio.Event().wait()  # a half-closed client still gets the output

        tasks = {asyncio.ensure_future(output()), asyncio.ensure_future(input_())}
        how = "gone"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.cancelled() or t.exception() is not None:
                    log.debug("exec %s stream: %s", e.id[:12], None if t.cancelled() else t.exception())
                else:
                    how = t.result()
        finally:
            for t in tasks:
                t.cancel()
        if how == "detached":
            self._containers.event(e.container, "exec_detach", execID=e.id)
            try:
                writer.write(stdcopy.encode(1, DETACHED) if framed else DETACHED)
                await writer.drain()
            except ConnectionError:
                pass
        elif how == "ended":  # the client reads the exit code next (exec inspect): record it first
            try:
                await asyncio.wait_for(e.done.wait(), END_WAIT)
            except asyncio.TimeoutError:
                log.warning("exec %s: output ended, exit not recorded within %ss", e.id[:12], END_WAIT)

    async def _watch(self, e: Exec, socket_dir: str) -> None:
        assert e.session is not None
        try:
            code = await execmon.wait(e.session, e.monitor_pid)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep the daemon alive; record what is known
            log.exception("waiting for exec %s", e.id[:12])
            code = None
        e.exit_code = code if code is not None else 255
        e.running = False
        e.done.set()
        await asyncio.to_thread(execsessions.save, e)
        await asyncio.to_thread(execsessions.unlink_link, socket_dir, e.session)
        self._died(e)
        self._tidy()

    async def recover(self) -> None:
        """After a daemon (re)start: find the sessions of every container again; watch the running ones,
        record how the others ended (while the daemon was down)."""
        for c in self._containers.all():
            command = self._containers.task_of(c).exec_monitored(False)
            if command is None:
                continue
            try:
                for saved in await asyncio.to_thread(execsessions.sessions, c.dir):
                    await self._adopt(c, saved, command.socket_dir)
            except Exception:  # one container's sessions must not keep the daemon from starting
                log.exception("exec sessions of %s", c.id[:12])

    async def _adopt(self, c: Container, saved: SavedSession, socket_dir: str) -> None:
        session = saved.session
        e = Exec(session.exec_id, c, saved.config, started=True, session=session,
                 pid=saved.pid, monitor_pid=saved.monitor_pid)
        self._all[e.id] = e
        if saved.exit_code is not None:
            e.exit_code = saved.exit_code
            e.done.set()
        elif e.monitor_pid > 0 and proc.pid_alive(e.monitor_pid) and execmon.is_monitor(e.monitor_pid, session):
            e.running = True
            e.watcher = asyncio.get_running_loop().create_task(self._watch(e, socket_dir))
        else:  # it ended while the daemon was down
            await self._watch(e, socket_dir)

    async def forget(self, exec_id: str) -> None:
        """Drop a finished exec and its files (a health probe's, say)."""
        e = self._all.pop(exec_id, None)
        if e is not None and e.session is not None and not e.running:
            await asyncio.to_thread(shutil.rmtree, e.session.directory, True)

    def _tidy(self) -> None:
        """Forget execs of removed containers, and all but the last KEPT_PER_CONTAINER finished ones of each."""
        finished: dict[str, list[Exec]] = {}
        for e in list(self._all.values()):
            if e.container.removed:
                self._all.pop(e.id, None)
            elif e.exit_code is not None and not e.running:
                finished.setdefault(e.container.id, []).append(e)
        gone = []
        for old in finished.values():
            for e in old[:-KEPT_PER_CONTAINER]:
                self._all.pop(e.id, None)
                if e.session is not None:
                    gone.append(e.session.directory)
        if gone:
            asyncio.get_running_loop().run_in_executor(None, execsessions.remove_all, gone)

    def _died(self, e: Exec) -> None:
        self._containers.event(e.container, "exec_die", execID=e.id, exitCode=str(e.exit_code))

    # in the foreground (VM, runsc with a terminal) ---------------------------------------------------
    async def _start_foreground(self, e: Exec, tty: bool, framed: bool, detach: bool,
                                reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None,
                                pending: bytes) -> None:
        c = e.container
        workdir = tempfile.mkdtemp(prefix="berth-exec-")
        try:
            spec_path = os.path.join(workdir, "process.json")
            try:
                process = await asyncio.to_thread(execprocess.process_for, c, e.config, tty)  # the image's files
            except BerthError as exc:
                await self._failed_to_start(e, exc, framed, None if detach else writer)
                return
            fs.atomic_write(spec_path, process.to_json())
            argv = self._containers.task_of(c).exec_argv(spec_path, os.path.join(workdir, "pid"))
            e.running = True
            self._containers.event(c, "exec_start: " + " ".join(e.config.cmd), execID=e.id)
            if detach or writer is None:
                child = await proc.spawn(argv, stdin=asyncio.subprocess.DEVNULL,
                                         stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                asyncio.ensure_future(execforeground.finish(e, child, workdir, self._died))
                workdir = ""
                return
            assert reader is not None
            if tty:
                await execforeground.run_tty(e, argv, framed, reader, writer, pending)
            else:
                await execforeground.run_pipes(e, argv, framed, reader, writer, pending)
            if not os.path.exists(os.path.join(workdir, "pid")):
                e.exit_code = 126
            self._died(e)
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
