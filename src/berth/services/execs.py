"""Exec: a further process in a running container.

Strategy: the process spec is the container's own (from its config.json:
capabilities, seccomp, rlimits, apparmor) with args, env, cwd, user and
terminal replaced, run by `<runtime> exec` as berthd's child. With a TTY the
runtime runs in the foreground on a pty of ours and relays to the container's
pty; without one, stdio are pipes framed with wire.stdcopy. A process that
never started (no pid file) reports 126, as Docker does. Exec sessions, like Docker's
before a restart of the daemon's shim, end with the daemon.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import struct
import tempfile
import termios
from dataclasses import dataclass, field
from typing import Any

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.host import fs, proc
from berth.oci import passwd
from berth.services import bundle as bundles
from berth.services.containers import Container, Containers
from berth.wire import stdcopy

log = logging.getLogger(__name__)


@dataclass
class Exec:
    id: str
    container: Container
    config: dict[str, Any]
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int = -1
    child: asyncio.subprocess.Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Execs:
    def __init__(self, containers: Containers) -> None:
        self._containers = containers
        self._all: dict[str, Exec] = {}

    def get(self, exec_id: str) -> Exec:
        try:
            return self._all[exec_id]
        except KeyError:
            raise NotFound(f"No such exec instance: {exec_id}") from None

    def create(self, ref: str, body: Any) -> str:
        c = self._containers.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object (ExecConfig)")
        cmd = body.get("Cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidArgument("No exec command specified: Cmd must be a non-empty array of strings")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        for key in ("Env",):
            if body.get(key) is not None and not isinstance(body[key], list):
                raise InvalidArgument(f"ExecConfig.{key}: expected an array of strings")
        exec_id = secrets.token_hex(32)
        self._all[exec_id] = Exec(exec_id, c, body)
        self._containers.event(c, "exec_create: " + " ".join(cmd), execID=exec_id)
        c.doc.setdefault("ExecIDs", [])
        return exec_id

    def check_startable(self, exec_id: str) -> Exec:
        """The exec, if it can start now (checked before a connection is hijacked, to answer with a status).

        Raises:
            NotFound: no such exec.  Conflict: already started, or its container is not running.
        """
        e = self.get(exec_id)
        if e.running or e.exit_code is not None:
            raise Conflict(f"exec {exec_id[:12]} has already been started")
        if not e.container.running:
            raise Conflict(f"Container {e.container.id} is not running")
        return e

    def inspect(self, exec_id: str) -> dict[str, Any]:
        e = self.get(exec_id)
        cfg = e.config
        return {
            "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "ContainerID": e.container.id,
            "OpenStdin": bool(cfg.get("AttachStdin")), "OpenStdout": bool(cfg.get("AttachStdout")),
            "OpenStderr": bool(cfg.get("AttachStderr")), "CanRemove": False, "DetachKeys": "",
            "Pid": e.pid,
            "ProcessConfig": {"tty": bool(cfg.get("Tty")), "entrypoint": cfg["Cmd"][0],
                              "arguments": cfg["Cmd"][1:], "privileged": bool(cfg.get("Privileged")),
                              "user": cfg.get("User", "")},
        }

    def resize(self, exec_id: str, height: int, width: int) -> None:
        e = self.get(exec_id)
        if e.master >= 0:
            fcntl.ioctl(e.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            if e.child is not None and e.child.returncode is None:
                e.child.send_signal(signal.SIGWINCH)

    def _process_json(self, e: Exec, tty: bool) -> dict[str, Any]:
        c = e.container
        with open(os.path.join(c.dir, "config.json")) as f:
            process = json.load(f)["process"]
        cfg = e.config
        rootfs = os.path.join(c.dir, "rootfs")
        user = cfg.get("User") or c.doc["Config"].get("User") or ""
        uid, gid, groups = passwd.resolve_user(user, *bundles.user_files(rootfs, user))
        env = list(process.get("env") or [])
        for item in cfg.get("Env") or []:
            key = item.split("=", 1)[0]
            env = [x for x in env if x.split("=", 1)[0] != key] + [item]
        if tty and not any(x.startswith("TERM=") for x in env):
            env.append("TERM=xterm")
        process.update(args=list(cfg["Cmd"]), env=env, terminal=tty,
                       cwd=cfg.get("WorkingDir") or process.get("cwd") or "/",
                       user={"uid": uid, "gid": gid, "additionalGids": list(groups)})
        if cfg.get("Privileged"):
            caps = process.get("capabilities") or {}
            process["capabilities"] = caps
        return process

    async def start(self, exec_id: str, detach: bool, reader: asyncio.StreamReader | None,
                    writer: asyncio.StreamWriter | None, pending: bytes = b"") -> None:
        e = self.check_startable(exec_id)
        c = e.container
        tty = bool(e.config.get("Tty"))
        workdir = tempfile.mkdtemp(prefix="berth-exec-")
        try:
            spec_path = os.path.join(workdir, "process.json")
            try:
                process = await asyncio.to_thread(self._process_json, e, tty)  # reads the image's files
            except BerthError as exc:  # reported in the stream, as Docker does once hijacked
                e.exit_code = 126
                e.done.set()
                if writer is not None:
                    message = f"{exc}\n".encode()
                    writer.write(message if tty else stdcopy.encode(2, message))
                    await writer.drain()
                    return
                raise
            fs.atomic_write(spec_path, json.dumps(process).encode())
            argv = self._containers.runtime_of(c).exec_argv(c.id, spec_path, os.path.join(workdir, "pid"))
            e.running = True
            self._containers.event(c, "exec_start: " + " ".join(e.config["Cmd"]), execID=e.id)
            if detach or writer is None:
                child = await proc.spawn(argv, stdin=asyncio.subprocess.DEVNULL,
                                         stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                asyncio.ensure_future(self._finish(e, child, workdir))
                workdir = ""
                return
            assert reader is not None
            if tty:
                await self._run_tty(e, argv, reader, writer, pending)
            else:
                await self._run_pipes(e, argv, reader, writer, pending)
            if not os.path.exists(os.path.join(workdir, "pid")):
                e.exit_code = 126
            self._died(e)
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _finish(self, e: Exec, child: asyncio.subprocess.Process, workdir: str) -> None:
        try:
            e.exit_code = await child.wait()
        finally:
            e.running = False
            e.done.set()
            shutil.rmtree(workdir, ignore_errors=True)
            self._died(e)

    def _died(self, e: Exec) -> None:
        self._containers.event(e.container, "exec_die", execID=e.id, exitCode=str(e.exit_code))

    async def _run_pipes(self, e: Exec, argv: list[str], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter, pending: bytes) -> None:
        want_in = bool(e.config.get("AttachStdin"))
        child = await proc.spawn(argv, stdin=asyncio.subprocess.PIPE if want_in else asyncio.subprocess.DEVNULL,
                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        async def pump(stream: asyncio.StreamReader | None, number: int, wanted: bool) -> None:
            assert stream is not None
            while data := await stream.read(65536):
                if wanted:
                    writer.write(stdcopy.encode(number, data))
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
            await asyncio.gather(pump(child.stdout, 1, e.config.get("AttachStdout", True)),
                                 pump(child.stderr, 2, e.config.get("AttachStderr", True)))
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            e.exit_code = await child.wait()
            e.running = False
            e.done.set()
            if feeder:
                feeder.cancel()

    async def _run_tty(self, e: Exec, argv: list[str], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, pending: bytes) -> None:
        # runc refuses a console socket unless it detaches, so it runs in the
        # foreground on a pty of ours and relays to the container's own pty;
        # it copies our window size across on SIGWINCH.
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        e.master = master
        size = e.config.get("ConsoleSize")
        if size and len(size) == 2:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(size[0]), int(size[1]), 0, 0))
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
            writer.write(data)

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
