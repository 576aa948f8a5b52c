"""Health checks: Docker's HEALTHCHECK probes, run as execs in running containers.

Strategy: the rules (configuration, State.Health transitions, delays, output
limits) are pure and live in services.healthrules. `Health` drives them (it
reads the check from the container's Config as a typed `Healthcheck`, and keeps
the typed `HealthState` in the record):
`started(c)` (a start, a restart, a daemon that found the container running)
resets the status to `starting` and starts one asyncio task for the
container; `stopped(c)` cancels it. A container without a check costs
nothing: no task, no timer. Each probe is the runtime's exec command (runc,
runsc or the VM's exec client) with the container's own process spec, stdout
and stderr on one pipe kept to 4 KiB. Its timeout counts from the moment the
process has started (the runtime wrote its pid file), as Docker's does; a probe
past it is killed through the runtime (`Runtime.kill_exec`) and recorded as
"Health check exceeded timeout (…)". A probe that cannot start (no such
command) is a failure with the runtime's message, never a daemon error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from typing import BinaryIO, Callable, Protocol

from berth import timefmt
from berth.errors import BerthError
from berth.host import proc
from berth.runtime.task import Task
from berth.services.execprocess import ProcessSpec
from berth.services.healthrules import (
    DEFAULT_SHELL,
    EXEC_START_TIMEOUT,
    OUTPUT_GRACE,
    SECOND,
    STARTING,
    Healthcheck,
    HealthLogEntry,
    Output,
    Probe,
    delay,
    probe_of,
    record,
    reset,
    start_error,
    timeout_output,
)
from berth.services.records import Container

log = logging.getLogger(__name__)

ProcessOf = Callable[[Container, list[str]], ProcessSpec]


class ProbeHost(Protocol):
    """What the health checker needs of the container service (berth.services.containers.Containers)."""

    def task_of(self, c: Container) -> Task: ...

    def event(self, c: Container, action: str, **attributes: str) -> None: ...

    def save(self, c: Container) -> None: ...


class Health:
    """Runs the probes of running containers: one task per container that has a check.

    Args:
        containers: the container service (task_of, event, save).
        process_of: the OCI process spec of a command run in a container as a probe
            (the container's own env, user and working directory); it reads files, so it
            is called in a worker thread.
    """

    def __init__(self, containers: ProbeHost, process_of: ProcessOf) -> None:
        self._containers = containers
        self._process_of = process_of
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def started(self, c: Container) -> None:
        """*c* started (or restarted, or was found running by a new daemon): probe it from `starting`."""
        self.stopped(c)
        probe = _probe(c)
        if probe is None:
            return
        c.state.health = reset(c.state.health)
        task = asyncio.get_running_loop().create_task(self._monitor(c, probe), name=f"health {c.id[:12]}")
        self._tasks[c.id] = task
        task.add_done_callback(lambda t: self._tasks.pop(c.id, None) if self._tasks.get(c.id) is t else None)

    def stopped(self, c: Container) -> None:
        """*c* stopped or is being removed: stop probing it (a probe under way is killed)."""
        task = self._tasks.pop(c.id, None)
        if task is not None:
            task.cancel()

    async def _monitor(self, c: Container, probe: Probe) -> None:
        try:
            started_ns = timefmt.parse_ns(c.state.started_at)
        except (KeyError, ValueError):
            started_ns = time.time_ns()
        while True:
            status = c.state.health.status if c.state.health is not None else STARTING
            await asyncio.sleep(delay(probe, time.time_ns() - started_ns, status))
            if not c.running or c.removed or c.removing:
                return
            if c.state.paused:
                continue  # Docker stops probing a paused container; the next tick looks again
            began = time.time_ns()
            try:
                result = await self._run(c, probe)
            except Exception as exc:  # noqa: BLE001 - a probe's trouble is its result, never the daemon's
                log.warning("health check of %s: %s", c.id[:12], exc, exc_info=not isinstance(exc, BerthError))
                result = HealthLogEntry(timefmt.format_ns(began), timefmt.now(), -1, str(exc))
            if not c.running or c.removed or c.removing:
                return  # it stopped meanwhile: the result says nothing about it any more
            before = c.state.health if c.state.health is not None else reset(None)
            after = record(before, result, probe.retries, began - started_ns < probe.start_period)
            c.state.health = after
            self._containers.save(c)
            if after.status != before.status:
                self._containers.event(c, "health_status: " + after.status)

    async def _run(self, c: Container, probe: Probe) -> HealthLogEntry:
        start = timefmt.now()
        exec_id = secrets.token_hex(32)
        command = " ".join(probe.argv)
        self._containers.event(c, "exec_create: " + command, execID=exec_id)
        workdir = await asyncio.to_thread(tempfile.mkdtemp, prefix="berth-probe-")
        try:
            code, output = await self._exec(c, probe, exec_id, command, workdir)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        return HealthLogEntry(start, timefmt.now(), code, output)

    async def _exec(self, c: Container, probe: Probe, exec_id: str, command: str, workdir: str) -> tuple[int, str]:
        try:
            process = await asyncio.to_thread(self._process_of, c, list(probe.argv))
        except (BerthError, OSError, ValueError) as exc:  # its user is unknown, its config.json is gone...
            return -1, str(exc)
        spec, pid_file = os.path.join(workdir, "process.json"), os.path.join(workdir, "pid")
        await asyncio.to_thread(_write_new, spec, process.to_json())  # a private directory of ours
        task = self._containers.task_of(c)
        self._containers.event(c, "exec_start: " + command, execID=exec_id)
        # stdout and stderr share one pipe of ours (not asyncio's): a process the probe leaves behind in
        # the container may hold its write end for ever, and our end is closed all the same.
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        try:
            child = await proc.spawn(task.exec_argv(spec, pid_file), stdin=asyncio.subprocess.DEVNULL,
                                     stdout=wfd, stderr=wfd, die_with_parent=True)
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        out = Output()
        pipe = os.fdopen(rfd, "rb", buffering=0)
        reader = asyncio.ensure_future(_drain(pipe, out))
        exited = asyncio.ensure_future(child.wait())
        try:
            if not await _until_started(exited, pid_file):
                if not exited.done():
                    await self._kill(c, pid_file, child, exited)
                    return -1, f"timed out starting health check for container {c.id}"
                await _finish_reading(reader)
                return -1, start_error(out.text())
            done, _ = await asyncio.wait({exited}, timeout=probe.timeout / SECOND)
            if not done:
                await self._kill(c, pid_file, child, exited)
                await _finish_reading(reader)
                return -1, timeout_output(probe.timeout, out.text())
            await _finish_reading(reader)
            return child.returncode if child.returncode is not None else -1, out.text()
        finally:
            if not exited.done():  # cancelled: the container stopped, or the check was stopped
                with contextlib.suppress(BaseException):
                    await self._kill(c, pid_file, child, exited)
            reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait({reader})
            pipe.close()  # (the reader closed it, unless it was cancelled before it began)
            if exited.done():
                code = child.returncode if child.returncode is not None else -1
                self._containers.event(c, "exec_die", execID=exec_id,
                                       exitCode=str(128 - code if code < 0 else code))

    async def _kill(self, c: Container, pid_file: str, child: asyncio.subprocess.Process,
                    exited: asyncio.Future[int]) -> None:
        """Kill the probe's process in the container, then the runtime's exec command."""
        with contextlib.suppress(BerthError, OSError):
            await self._containers.task_of(c).kill_exec(pid_file, child.pid)
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
        await asyncio.wait({exited}, timeout=30)


def _probe(c: Container) -> Probe | None:
    """The container's probe, from its Config's Healthcheck (and Shell, for CMD-SHELL)."""
    shell = c.config.shell
    return probe_of(Healthcheck.from_doc(c.config.healthcheck), tuple(shell) if shell else DEFAULT_SHELL)


def _write_new(path: str, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)


async def _drain(pipe: BinaryIO, out: Output) -> None:
    """Read *pipe* into *out* until its end, and close it (also when cancelled)."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=65536)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
    try:
        while data := await stream.read(65536):
            out.feed(data)
    finally:
        transport.close()


async def _finish_reading(reader: asyncio.Future[None]) -> None:
    """Let the reader take what is left in the pipe; a process the probe left behind may keep it open."""
    await asyncio.wait({reader}, timeout=OUTPUT_GRACE)


async def _until_started(exited: asyncio.Future[int], pid_file: str) -> bool:
    """True once the runtime has written the probe's pid file; False if its command ended first,
    or did not start the process within EXEC_START_TIMEOUT (then it is still running)."""
    deadline = time.monotonic() + EXEC_START_TIMEOUT
    pause = 0.005
    while True:
        if await asyncio.to_thread(os.path.exists, pid_file):
            return True
        if exited.done():
            return bool(await asyncio.to_thread(os.path.exists, pid_file))
        if time.monotonic() >= deadline:
            return False
        await asyncio.wait({exited}, timeout=pause)
        pause = min(pause * 2, 0.1)
