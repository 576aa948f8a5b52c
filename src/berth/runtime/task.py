"""A Task: one container as its isolation driver runs it, the handle every service uses.

Strategy: the drivers (runtime.oci for runc and runsc, runtime.vm for VM
isolation) keep their id-keyed `Runtime` protocol; a `Task` binds one driver to
one container (its id and bundle) and carries what the driver said about it
(its monitor's pid, its process's pid), so the services never pass ids,
bundles or monitor pids to a driver, never pick a driver's method by name,
and never read a monitor's files: `create` records what the driver started,
`load` (after a daemon restart) what the driver's own files say. A Task is
cheap: the container service makes one per container and keeps it.
"""

from __future__ import annotations

import os
from typing import Any

from berth.runtime import execmon
from berth.runtime.base import CreateOptions, Exit, Runtime


class Task:
    def __init__(self, runtime: Runtime, cid: str, bundle: str, *, monitor_pid: int = 0, pid: int = 0) -> None:
        self.runtime = runtime
        self.id = cid
        self.bundle = bundle
        self.monitor_pid = monitor_pid  # the per-container monitor (conmon, the VM monitor); 0 = none known
        self.pid = pid  # the container's first process, as the host sees it

    @property
    def log_path(self) -> str:
        """The container's log, written by its monitor (CRI format)."""
        return os.path.join(self.bundle, "container.log")

    # the container's life ----------------------------------------------------------
    async def create(self, opts: CreateOptions) -> None:
        """Create the container under its monitor (its process waits for `start`)."""
        started = await self.runtime.create(self.id, self.bundle, opts)
        self.monitor_pid, self.pid = started.monitor_pid, started.pid

    async def load(self) -> str | None:
        """After a daemon restart: the container's status as the driver's own files tell it ("created",
        "running", "paused", "stopped"), its pids taken; None when it was never handed to a monitor
        or its exit is already written."""
        loaded = await self.runtime.load(self.id, self.bundle)
        if loaded is None:
            return None
        self.monitor_pid, self.pid = loaded.monitor_pid, loaded.pid
        return loaded.status

    async def start(self) -> None:
        await self.runtime.start(self.id)

    async def wait(self) -> Exit:
        """Wait for the container to exit (also one started by an earlier daemon) and say how."""
        return await self.runtime.wait(self.id, self.bundle, self.monitor_pid)

    async def kill(self, signal: int) -> None:
        await self.runtime.kill(self.id, signal)

    async def pause(self) -> None:
        await self.runtime.pause(self.id)

    async def resume(self) -> None:
        await self.runtime.resume(self.id)

    async def status(self) -> str | None:
        return await self.runtime.status(self.id)

    async def delete(self) -> None:
        """Let the driver forget the container (its state, its cgroups); the pids are gone with it."""
        await self.runtime.delete(self.id)
        self.monitor_pid = self.pid = 0

    # while it runs -------------------------------------------------------------------
    async def update(self, resources: dict[str, Any]) -> None:
        await self.runtime.update(self.id, resources)

    async def top(self, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
        return await self.runtime.top(self.id, ps_args)

    def resize(self, height: int, width: int) -> None:
        self.runtime.resize(self.bundle, height, width)

    def attach_socket(self) -> str:
        """The monitor's attach socket (SOCK_SEQPACKET)."""
        return self.runtime.attach_socket(self.id, self.bundle)

    # further processes (exec, health probes) -------------------------------------------
    def exec_monitored(self, tty: bool) -> execmon.RuntimeCommand | None:
        """How a monitor (conmon) runs an exec session in this container, or None: run it in the foreground."""
        return self.runtime.exec_monitored(self.id, tty)

    def exec_argv(self, process_json: str, pid_file: str) -> list[str]:
        """The command that runs a further process (process.json) in the container, in the foreground."""
        return self.runtime.exec_argv(self.id, process_json, pid_file)

    async def kill_exec(self, pid_file: str, command_pid: int) -> None:
        await self.runtime.kill_exec(self.id, pid_file, command_pid)
