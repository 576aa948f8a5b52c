"""Exec sessions under conmon: a further process in a running container, monitored like the container.

Strategy: berthd is never the parent of an exec's process. conmon (started with
`--exec`) double-forks away from berthd, runs `<runtime> exec --detach`, holds
the process's stdio (attach socket, SOCK_SEQPACKET, as for containers; with a
terminal it receives the pty's master and sets ONLCR on it, as Docker's shim
leaves it), and writes the exit code to the session directory's `exit` file
when the process ends. So a session outlives a restart of berthd, and the code
is there to read afterwards.

conmon speaks over three pipes named in its environment: it reads a first
"start" message before it forks (written before it runs, so running it returns
once it is on its own), tells on the attach pipe when its attach socket listens,
waits (with `--exec-attach`) for a second start message before it runs the
runtime, and sends the process's pid (or the runtime's complaint) on the sync
pipe. An attacher therefore connects before the first byte is written.

The session directory (`<container dir>/execs/<exec id>`) holds process.json,
conmon's pid files, its `ctl`/`winsz` fifos (resize) and `exit`; its attach
socket is reached by the short link `<socket dir>/<exec id prefix>/attach`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from berth.errors import CommandFailed
from berth.host import proc

CONMON = "/usr/bin/conmon"
MESSAGE_LIMIT = 64 << 10   # a pipe message longer than this is not conmon's
PIPE_TIMEOUT = 60.0        # seconds for conmon to answer on a pipe (the runtime runs meanwhile)
LINK_LEN = 16              # the exec id's prefix that names the attach socket's link


class ExecStartFailed(CommandFailed):
    """The runtime could not start the process (no such executable, bad user or directory).

    Its text is Docker's: "OCI runtime exec failed: <the runtime's words>: unknown".
    """

    def __init__(self, message: str) -> None:
        super().__init__(["runtime", "exec"], 126, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Session:
    """Where one session's files are."""

    directory: str
    exec_id: str

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    @property
    def link(self) -> str:
        return self.exec_id[:LINK_LEN]


@dataclass(frozen=True, slots=True)
class RuntimeCommand:
    """The OCI runtime conmon runs: its binary and the global arguments that come before `exec`."""

    binary: str
    global_args: tuple[str, ...]
    socket_dir: str


@dataclass(frozen=True, slots=True)
class Launched:
    monitor_pid: int
    pid: int


def conmon_argv(rt: RuntimeCommand, cid: str, session: Session, *, tty: bool, stdin: bool,
                attach: bool) -> list[str]:
    """conmon's command line for one session (pure)."""
    argv = [
        CONMON, "--api-version", "1", "-c", cid, "-u", session.link, "-n", cid[:12],
        "-r", rt.binary, "-b", session.directory,
        "-p", session.path("pid"), "-P", session.path("conmon.pid"), "-l", "none:",
        "--exit-dir", session.path("exits"), "-0", session.directory,
        "--socket-dir-path", rt.socket_dir, "--log-level", "error",
        "-e", "--exec-process-spec", session.path("process.json"),
    ]
    for arg in rt.global_args:
        argv += ["--runtime-arg", arg]
    if tty:
        argv.append("-t")
    if stdin:
        argv.append("-i")
    if attach:
        argv.append("--exec-attach")
    return argv


def attach_socket(socket_dir: str, session: Session) -> str:
    return os.path.join(socket_dir, session.link, "attach")


def parse_message(line: bytes) -> tuple[int, str]:
    """conmon's pipe message `{"data": N, "message": "..."}` -> (N, message); (-1, text) when it is not one."""
    try:
        doc = json.loads(line)
        return int(doc.get("data", doc.get("pid", -1))), str(doc.get("message") or "")
    except (ValueError, TypeError, AttributeError):
        return -1, line.decode(errors="replace")


def runtime_message(text: str) -> str:
    """The runtime's complaint, as Docker words a failed exec (pure)."""
    text = " ".join(text.strip().split())
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', text)
    if m:
        text = m.group(1).replace('\\"', '"')
    return f"OCI runtime exec failed: {text or 'the runtime did not start the process'}: unknown"


async def launch(argv: list[str], session: Session,
                 attach: Callable[[], Awaitable[None]] | None = None) -> Launched:
    """Run conmon for a session (its directory made, process.json written) and return once the process runs.

    With *attach*, it is awaited once the attach socket listens, before the process starts.

    Raises:
        ExecStartFailed: the runtime did not start the process.
        CommandFailed: conmon itself failed or did not answer.
    """
    start_r, start_w = os.pipe()
    attach_r, attach_w = os.pipe()
    sync_r, sync_w = os.pipe()
    ours = [start_w, attach_r, sync_r]
    theirs = [start_r, attach_w, sync_w]
    try:
        os.write(start_w, b"0")  # read before conmon forks: running it returns once it is on its own
        env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w), _OCI_STARTPIPE=str(start_r),
                   _OCI_ATTACHPIPE=str(attach_w))
        try:
            await proc.run(argv, timeout=30, env=env, pass_fds=theirs, cwd=session.directory)
        finally:
            for fd in theirs:
                os.close(fd)
            theirs = []
        if attach is not None:
            await read_message(attach_r, PIPE_TIMEOUT)
            await attach()
            os.write(start_w, b"0")  # with --exec-attach, the runtime runs now
        line = await read_message(sync_r, PIPE_TIMEOUT)
        pid, message = parse_message(line) if line else (-1, "")
        if pid <= 0:
            raise ExecStartFailed(runtime_message(message))
        monitor = _read_int(session.path("conmon.pid"))
        return Launched(monitor, pid)
    finally:
        for fd in ours + theirs:
            os.close(fd)


async def read_message(fd: int, timeout: float) -> bytes:
    """One line from a conmon pipe (b"" at EOF), read without blocking the event loop.

    Raises:
        CommandFailed: nothing within *timeout* seconds, or a line over MESSAGE_LIMIT.
    """
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = bytearray()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ready.wait()
                ready.clear()
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                if not data:
                    return bytes(buf)
                buf += data
                if b"\n" in buf:
                    return bytes(buf.split(b"\n", 1)[0])
                if len(buf) > MESSAGE_LIMIT:
                    raise CommandFailed(["conmon"], -1, "conmon's message is too long")
    except TimeoutError:
        raise CommandFailed(["conmon"], -1, f"conmon did not answer within {timeout:.0f}s") from None
    finally:
        loop.remove_reader(fd)


def is_monitor(pid: int, session: Session) -> bool:
    """True when *pid* is this session's conmon (checked by command line: pids are reused)."""
    argv = proc.cmdline(pid)
    return bool(argv) and os.path.basename(argv[0]) == "conmon" and session.directory in argv


async def wait(session: Session, monitor_pid: int) -> int | None:
    """Wait for the session's process to end (also after a daemon restart); its code, None if unrecorded."""
    watched = monitor_pid > 0 and is_monitor(monitor_pid, session)
    if watched:
        await proc.wait_pid_exit(monitor_pid)
    for _ in range(50 if watched else 1):  # conmon writes the file just before it exits
        code = await asyncio.to_thread(_exit_code, session)
        if code is not None:
            return code
        await asyncio.sleep(0.02)
    return None


def _exit_code(session: Session) -> int | None:
    try:
        with open(session.path("exit")) as f:
            text = f.read(64).strip()
        return int(text) if text.lstrip("-").isdigit() else None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read(64).strip() or 0)
    except (OSError, ValueError):
        return 0


def record(session: Session) -> dict[str, Any] | None:
    """The session's saved record (session.json), None when absent or unreadable. Blocking."""
    try:
        with open(session.path("session.json"), "rb") as f:
            doc = json.loads(f.read(1 << 20))
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None
