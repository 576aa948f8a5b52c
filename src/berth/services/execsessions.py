"""An exec session: its in-memory record, and the files that keep it across daemon restarts.

Strategy: a session runs under its own conmon (runtime.execmon) in a
directory of the container's (`execs/<id>`): its process spec, conmon's
files, and `session.json`, the record `exec inspect` reads after the
process, or the daemon, is gone. Everything here that touches those files
blocks: callers run it in a thread.
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
from berth.services.records import Container

log = logging.getLogger(__name__)

HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Exec:
    id: str
    container: Container
    config: dict[str, Any]
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


def prepare(session: execmon.Session, process: dict[str, Any], config: dict[str, Any]) -> None:
    """The session's directory with its process spec and first record. Blocking."""
    os.makedirs(os.path.dirname(session.directory), mode=0o700, exist_ok=True)
    os.makedirs(session.directory, mode=0o700, exist_ok=True)
    os.makedirs(session.path("exits"), mode=0o700, exist_ok=True)  # conmon's --exit-dir
    fs.atomic_write(session.path("process.json"), json.dumps(process).encode())
    fs.atomic_write(session.path("session.json"), json.dumps({"ID": session.exec_id, "Config": config}).encode())


def save(e: Exec) -> None:
    """The session's record, as it stands. Blocking."""
    if e.session is None or not os.path.isdir(e.session.directory):
        return  # the container was removed meanwhile
    doc = {"ID": e.id, "Config": e.config, "Pid": e.pid, "MonitorPid": e.monitor_pid, "ExitCode": e.exit_code}
    try:
        fs.atomic_write(e.session.path("session.json"), json.dumps(doc).encode())
    except OSError as exc:
        log.warning("exec %s: record not saved: %s", e.id[:12], exc)


def sessions(container_dir: str) -> list[tuple[execmon.Session, dict[str, Any]]]:
    """The sessions recorded under a container's directory. Blocking."""
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
        if doc is not None:
            out.append((session, doc))
    return out


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
