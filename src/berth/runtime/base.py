"""The isolation driver interface.

Strategy: every isolation mode consumes the same OCI bundle (a directory with
config.json and a prepared root) and is driven through this protocol; the
services reach it only through a `runtime.task.Task` per container. A
driver's container is owned by a monitor process that is NOT berthd's child,
so containers outlive the daemon; the driver can find them again from the
files the monitor leaves in the bundle (pid files, exit file, attach socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from berth.errors import CommandFailed, InvalidArgument
from berth.runtime import execmon


class CommandNotFound(InvalidArgument):
    """The container's program does not exist in its root: the docker CLI exits 127, so does berth's
    record of the failed start."""

    exit_code = 127


class CannotExecute(InvalidArgument):
    """The container's program exists but cannot be run (permission denied): exit 126."""

    exit_code = 126


class StartFailed(CommandFailed):
    """The runtime could not start the container for another reason (its words in the message): exit 128."""

    exit_code = 128


def start_exit_code(exc: BaseException) -> int:
    """The exit code a failed start records, by the error's type (never by its text)."""
    return exc.exit_code if isinstance(exc, (CommandNotFound, CannotExecute, StartFailed)) else 128


@dataclass(frozen=True, slots=True)
class Started:
    monitor_pid: int     # the per-container monitor (conmon)
    pid: int             # the container's first process, as the host sees it


@dataclass(frozen=True, slots=True)
class Exit:
    code: int
    oom_killed: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class VmNic:
    """A VM-isolated container's network card: the host tap QEMU gives the guest, and how the guest
    configures it ("" gateway: no default route, as on an internal network)."""

    tap: str
    mac: str
    address: str  # address/prefix
    gateway: str


@dataclass(frozen=True, slots=True)
class CreateOptions:
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = True
    log: bool = True            # False: the "none" log driver, nothing is kept
    log_size_max: int = 0       # bytes; 0 = unlimited
    nic: VmNic | None = None    # VM isolation on a network: its card (the process drivers join a namespace)


@dataclass(frozen=True)
class Loaded:
    """A container the runtime runs (or holds) whose start the daemon may not have recorded."""

    status: str       # "created", "running", "paused" or "stopped"
    monitor_pid: int  # the per-container monitor (conmon, the VM monitor)
    pid: int          # the container's process as the runtime reports it (0 when unknown)


class Runtime(Protocol):
    name: str

    async def create(self, cid: str, bundle: str, opts: CreateOptions) -> Started:
        """Create the container under its monitor; its process waits for start()."""
        ...

    async def start(self, cid: str) -> None: ...

    async def kill(self, cid: str, signal: int) -> None: ...

    async def pause(self, cid: str) -> None: ...

    async def resume(self, cid: str) -> None: ...

    async def wait(self, cid: str, bundle: str, monitor_pid: int) -> Exit:
        """Wait for the container to exit (also after a daemon restart) and return how."""
        ...

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Apply new limits (runtime_spec.limits) to a running container."""
        ...

    async def status(self, cid: str) -> str | None:
        """"created", "running", "paused", "stopped", or None when the runtime does not know *cid*."""
        ...

    async def load(self, cid: str, bundle: str) -> Loaded | None:
        """After a daemon restart: the container as the runtime has it, when it was handed to a
        monitor and its exit is not yet written; None otherwise. Each driver reads its own
        monitor's files."""
        ...

    async def delete(self, cid: str) -> None: ...

    def held(self) -> list[str]:
        """The ids the runtime still keeps state for (a delete the daemon did not live to finish shows here)."""
        ...

    def tidy(self) -> list[str]:
        """After a daemon restart: remove what the driver left for containers that are gone (a link to a
        removed bundle); returns what it removed."""
        ...

    async def top(self, cid: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]: ...

    def attach_socket(self, cid: str, bundle: str) -> str:
        """Path of the monitor's attach socket (SOCK_SEQPACKET)."""
        ...

    def resize(self, bundle: str, height: int, width: int) -> None: ...

    def exec_argv(self, cid: str, process_json: str, pid_file: str) -> list[str]:
        """The command that runs a further process (process.json) in the running container, in the foreground."""
        ...

    def exec_monitored(self, cid: str, tty: bool) -> execmon.RuntimeCommand | None:
        """How conmon runs an exec session in the container (runc; runsc and the VM without a terminal),
        or None when the session must run in the foreground."""
        ...

    async def kill_exec(self, cid: str, pid_file: str, command_pid: int) -> None:
        """SIGKILL the process that exec_argv's command (*command_pid*, still running) started, e.g. a
        health probe past its timeout. The caller kills the command itself afterwards."""
        ...
