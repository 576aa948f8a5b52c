"""The one door to subprocesses.

Strategy: argv lists only (no shell), a timeout on everything that is awaited,
and cancellation that sends SIGTERM, waits briefly, then SIGKILL. A non-zero
exit raises CommandFailed carrying the tail of stderr. argv is logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

from berth.errors import CommandFailed, FailedPrecondition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    cwd: str | None = None,
) -> Result:
    """Run *argv* to completion and return its output.

    Raises:
        CommandFailed: the program exited non-zero (when check is true) or timed out.
        FailedPrecondition: the program is not installed.
    """
    log.debug("run %s", list(argv))
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            pass_fds=tuple(pass_fds),
            cwd=cwd,
        )
    except FileNotFoundError as exc:
        raise FailedPrecondition(f"{argv[0]} is not installed (run the README's set-up)") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        await _terminate(proc)
        if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
            raise
        raise CommandFailed(list(argv), -1, f"timed out after {timeout}s") from None
    assert proc.returncode is not None
    if check and proc.returncode != 0:
        raise CommandFailed(list(argv), proc.returncode, err.decode(errors="replace"))
    return Result(proc.returncode, out, err)


async def run_beside(argv: Sequence[str], *, timeout: float = 60.0) -> Result:
    """Run *argv* to completion from a worker thread (no input; its exit code not checked).

    For clean-ups that go on beside an answer (a runtime's delete after an exit): forking from
    the event loop would hold it (0.5-1 ms) just when the answer is due. Not cut short when the
    caller is cancelled: it ends within *timeout* (then it is killed).

    Raises:
        FailedPrecondition: the program is not installed.
    """
    log.debug("run beside %s", list(argv))

    def go() -> Result:
        try:
            done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Result(-1, b"", f"timed out after {timeout}s".encode())
        except FileNotFoundError as exc:
            raise FailedPrecondition(f"{argv[0]} is not installed (run the README's set-up)") from exc
        return Result(done.returncode, done.stdout, done.stderr)
    return await asyncio.to_thread(go)


def first_line(argv: Sequence[str], timeout: float = 5.0) -> str:
    """The first line *argv* prints on stdout, "" when it is missing, fails to start or times out.

    Blocking: for start-up facts (a tool's `--version`), never on the event loop while it serves.
    """
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 3)
    except ProcessLookupError:
        return
    except asyncio.TimeoutError:
        log.warning("process %s ignored SIGTERM; killing", proc.pid)
        proc.kill()
        await proc.wait()


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    import ctypes  # in the child, between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def pid_alive(pid: int) -> bool:
    """True when *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
    except OSError:
        return []


async def wait_pid_exit(pid: int) -> None:
    """Wait until *pid* (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, lambda: None if done.done() else done.set_result(None))
    try:
        if pid_alive(pid):
            await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def spawn(argv: Sequence[str], *, stdin: int | None, stdout: int | None, stderr: int | None,
                pass_fds: Sequence[int] = (), die_with_parent: bool = False) -> asyncio.subprocess.Process:
    """Start *argv* with the given stdio (asyncio.subprocess.PIPE/DEVNULL or an fd); the caller waits.

    With *die_with_parent*, the kernel kills the child (SIGKILL) when this process dies,
    however it dies: a monitor killed with SIGKILL leaves no QEMU behind.

    Raises:
        FailedPrecondition: the program is not installed.
    """
    log.debug("spawn %s", list(argv))
    try:
        return await asyncio.create_subprocess_exec(*argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                                    pass_fds=tuple(pass_fds),
                                                    preexec_fn=_die_with_parent if die_with_parent else None)
    except FileNotFoundError as exc:
        raise FailedPrecondition(f"{argv[0]} is not installed (run the README's set-up)") from exc
