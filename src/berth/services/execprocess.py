"""An exec's process: what the create request asked for, and the OCI process the runtime gets.

Strategy: `ExecConfig` is Docker's ExecConfig, typed (the API parses the
request into it; services.execsessions stores it). `process_for` makes the
`ProcessSpec` of an exec or a health probe: the container's own process from
its config.json (capabilities, seccomp, rlimits, apparmor... kept as they are,
as JSON) with args, env, cwd, user (and `--group-add`'s groups), terminal and
console size replaced. `ProcessSpec.to_json` is the `process.json` handed to
`<runtime> exec --process`: the container's object with those fields set in
place, so its bytes are what runc always received.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from berth.oci import passwd
from berth.services import bundle as bundles
from berth.services.records import Container


@dataclass(frozen=True, slots=True)
class ExecConfig:
    """What an exec runs and how: Docker's ExecConfig, typed.

    *attach_stdout*/*attach_stderr* are None when the request did not say: the stream then
    carries that output (`streams_stdout`), while inspect shows false.
    *console_size* is (height, width). *detach_keys* is Docker's spelling ("ctrl-p,ctrl-q").
    """

    cmd: tuple[str, ...]
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    privileged: bool = False
    attach_stdin: bool = False
    attach_stdout: bool | None = None
    attach_stderr: bool | None = None
    detach_keys: str | None = None
    console_size: tuple[int, int] | None = None

    @property
    def streams_stdout(self) -> bool:
        return self.attach_stdout is not False

    @property
    def streams_stderr(self) -> bool:
        return self.attach_stderr is not False


def console_size(value: object) -> tuple[int, int] | None:
    """A ConsoleSize given as JSON ([height, width], both positive integers); None otherwise."""
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value):
        return value[0], value[1]
    return None


@dataclass(frozen=True, slots=True)
class ProcessUser:
    """Who the process runs as, resolved in the container's passwd and group files."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """The OCI process of an exec or a probe: *container_process* (the container's own process
    object from its config.json, as JSON text) with the other fields put in its place."""

    container_process: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    terminal: bool
    user: ProcessUser
    console_size: tuple[int, int] | None = None  # (height, width), with a terminal
    privileged: bool = False

    def to_json(self) -> bytes:
        """process.json for `<runtime> exec --process`."""
        process = json.loads(self.container_process)
        process.update(args=list(self.args), env=list(self.env), terminal=self.terminal, cwd=self.cwd,
                       user={"uid": self.user.uid, "gid": self.user.gid,
                             "additionalGids": list(self.user.additional_gids)})
        process.pop("consoleSize", None)
        if self.console_size is not None:
            process["consoleSize"] = {"height": self.console_size[0], "width": self.console_size[1]}
        if self.privileged:
            process["capabilities"] = process.get("capabilities") or {}
        return json.dumps(process).encode()


def process_for(c: Container, config: ExecConfig, tty: bool) -> ProcessSpec:
    """The process spec of *config* run in *c*: the container's env with the exec's over it (TERM=xterm
    added with a terminal), the exec's user (else the container's) resolved in the container's files.

    Blocking: it reads config.json and the image's passwd and group files.

    Raises:
        berth.errors.BerthError: the user or group is unknown in the container.
        OSError, ValueError, KeyError: config.json is gone or not a runtime config.
    """
    with open(os.path.join(c.dir, "config.json")) as f:
        process = json.load(f)["process"]
    user = config.user or c.config.user
    passwd_text, group_text = bundles.user_files(os.path.join(c.dir, "rootfs"), user)
    uid, gid, groups = passwd.resolve_user(user, passwd_text, group_text)
    groups = bundles.with_group_add(groups, c.host.group_add, group_text)
    env = list(process.get("env") or [])
    for item in config.env:
        key = item.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [item]
    if tty and not any(x.startswith("TERM=") for x in env):
        env.append("TERM=xterm")
    return ProcessSpec(
        container_process=json.dumps(process), args=config.cmd, env=tuple(env),
        cwd=config.working_dir or process.get("cwd") or "/", terminal=tty,
        user=ProcessUser(uid, gid, tuple(groups)), console_size=config.console_size if tty else None,
        privileged=config.privileged)
