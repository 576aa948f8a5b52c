"""An exec session: its in-memory record, and the files that keep it across daemon restarts.

Strategy: an exec is an `Exec` (what the daemon knows of it now) around an
`ExecConfig` (services.execprocess: what the create request asked for). A session runs under its own conmon (runtime.execmon) in a
directory of the container's (`execs/<id>`): its process spec, conmon's
files, and `session.json`, the record `exec inspect` reads after the
process, or the daemon, is gone: {"ID", "Config" (the ExecConfig in Docker's
field names), "Pid", "MonitorPid", "ExitCode"}, which `sessions` reads back
as `SavedSession`s. Everything here that touches those files blocks: callers
run it in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from berth.host import fs
from berth.runtime import execmon
from berth.services.execprocess import ExecConfig, ProcessSpec, console_size
from berth.services.records import Container

log = logging.getLogger(__name__)

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Exec:
    id: str
    container: Container
    config: ExecConfig
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    master: int = -1                       # our pty (foreground sessions with a terminal)
    child: asyncio.subprocess.Process | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False
    monitor_pid: int = 0                   # the session's conmon (monitored sessions)
    session: execmon.Session | None = None
    watcher: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class SavedSession:
    """A session's record as found on disk: what it ran, its pids, and its exit code once it ended."""

    session: execmon.Session
    config: ExecConfig
    pid: int = 0
    monitor_pid: int = 0
    exit_code: int | None = None


def prepare(session: execmon.Session, process: ProcessSpec, config: ExecConfig) -> None:
    """The session's directory with its process spec and first record. Blocking."""
    os.makedirs(os.path.dirname(session.directory), mode=0o700, exist_ok=True)
    os.makedirs(session.directory, mode=0o700, exist_ok=True)
    os.makedirs(session.path("exits"), mode=0o700, exist_ok=True)  # conmon's --exit-dir
    fs.atomic_write(session.path("process.json"), process.to_json())
    fs.atomic_write(session.path("session.json"),
                    json.dumps({"ID": session.exec_id, "Config": _config_doc(config)}).encode())


def save(e: Exec) -> None:
    """The session's record, as it stands. Blocking."""
    if e.session is None or not os.path.isdir(e.session.directory):
        return  # the container was removed meanwhile
    doc = {"ID": e.id, "Config": _config_doc(e.config), "Pid": e.pid, "MonitorPid": e.monitor_pid,
           "ExitCode": e.exit_code}
    try:
        fs.atomic_write(e.session.path("session.json"), json.dumps(doc).encode())
    except OSError as exc:
        log.warning("exec %s: record not saved: %s", e.id[:12], exc)


def sessions(container_dir: str) -> list[SavedSession]:
    """The sessions recorded under a container's directory, oldest first; records without a command
    are passed over. Blocking."""
    base = os.path.join(container_dir, "execs")
    try:
        names = sorted(os.listdir(base), key=lambda n: _mtime(os.path.join(base, n)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        if not HEX64.fullmatch(name):
            continue
        session = execmon.Session(os.path.join(base, name), name)
        doc = execmon.record(session)
        config = _config_of(doc.get("Config")) if doc is not None else None
        if doc is not None and config is not None:
            code = doc.get("ExitCode")
            out.append(SavedSession(session, config, _int(doc.get("Pid")), _int(doc.get("MonitorPid")),
                                    code if isinstance(code, int) else None))
    return out


def _config_doc(config: ExecConfig) -> dict[str, Any]:
    """The stored Config: Docker's field names; the attach and detach fields only when the request gave them."""
    doc: dict[str, Any] = {
        "Cmd": list(config.cmd), "Env": list(config.env), "User": config.user, "WorkingDir": config.working_dir,
        "Tty": config.tty, "Privileged": config.privileged, "AttachStdin": config.attach_stdin,
    }
    if config.attach_stdout is not None:
        doc["AttachStdout"] = config.attach_stdout
    if config.attach_stderr is not None:
        doc["AttachStderr"] = config.attach_stderr
    if config.detach_keys is not None:
        doc["DetachKeys"] = config.detach_keys
    if config.console_size is not None:
        doc["ConsoleSize"] = list(config.console_size)
    return doc


def _config_of(doc: object) -> ExecConfig | None:
    """A stored Config read back (also one an older daemon wrote: the create request as it came);
    None without a command. Fields of the wrong type are taken as not given."""
    if not isinstance(doc, dict):
        return None
    cmd, env = doc.get("Cmd"), doc.get("Env")
    if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
        return None
    keys = doc.get("DetachKeys", doc.get("detachKeys"))

    def given(key: str) -> bool | None:
        return bool(doc[key]) if key in doc else None
    return ExecConfig(
        cmd=tuple(cmd), env=tuple(x for x in env if isinstance(x, str)) if isinstance(env, list) else (),
        user=str(doc.get("User") or ""), working_dir=str(doc.get("WorkingDir") or ""),
        tty=bool(doc.get("Tty")), privileged=bool(doc.get("Privileged")),
        attach_stdin=bool(doc.get("AttachStdin")), attach_stdout=given("AttachStdout"),
        attach_stderr=given("AttachStderr"), detach_keys=keys if isinstance(keys, str) else None,
        console_size=console_size(doc.get("ConsoleSize")))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def remove_all(directories: list[str]) -> None:
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def _mtime(path: str) -> float:
    try:
        return os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def unlink_link(socket_dir: str, session: execmon.Session) -> None:
    """conmon's short link to the session's directory (it removes the socket, not the link). Blocking."""
    link = os.path.join(socket_dir, session.link)
    try:
        if os.path.islink(link) and os.readlink(link) == session.directory:
            os.unlink(link)
    except OSError:
        pass
