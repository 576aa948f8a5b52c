"""Exec requests as the Engine API takes them: the create body (ExecConfig) and the start body.

Strategy: pure parsing, no I/O: a JSON value in, a typed value out, or
InvalidArgument (400) in Docker's words naming the field. The create body
becomes services.execprocess's `ExecConfig`; docker-py spells DetachKeys
`detachKeys` (Docker's JSON matching ignores case), and both are read.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import InvalidArgument
from berth.services.execprocess import ExecConfig, console_size
from berth.wire import detachkeys


def create_request(body: object) -> ExecConfig:
    """The ExecConfig of POST /containers/{id}/exec.

    Raises:
        InvalidArgument: not an object, no command (Cmd a non-empty array of strings), Env not an
            array of strings, DetachKeys not a string or not keys Docker knows.
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object (ExecConfig)")
    cmd, env = body.get("Cmd"), body.get("Env")
    if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
        raise InvalidArgument("No exec command specified: Cmd must be a non-empty array of strings")
    if env is not None and (not isinstance(env, list) or not all(isinstance(x, str) for x in env)):
        raise InvalidArgument("ExecConfig.Env: expected an array of strings")
    keys = body.get("DetachKeys", body.get("detachKeys"))
    if keys is not None and not isinstance(keys, str):
        raise InvalidArgument("ExecConfig.DetachKeys: expected a string such as \"ctrl-p,ctrl-q\"")
    detachkeys.parse(keys)

    def given(key: str) -> bool | None:  # left out: the stream carries that output (inspect: false)
        return bool(body[key]) if key in body else None
    return ExecConfig(
        cmd=tuple(cmd), env=tuple(env or ()), user=str(body.get("User") or ""),
        working_dir=str(body.get("WorkingDir") or ""), tty=bool(body.get("Tty")),
        privileged=bool(body.get("Privileged")), attach_stdin=bool(body.get("AttachStdin")),
        attach_stdout=given("AttachStdout"), attach_stderr=given("AttachStderr"), detach_keys=keys,
        console_size=console_size(body.get("ConsoleSize")))


@dataclass(frozen=True, slots=True)
class ExecStart:
    """POST /exec/{id}/start's body: *detach*; *raw* (its Tty: the stream is not framed, as Docker
    takes the terminal from the create request and the framing from this one); a console size."""

    detach: bool = False
    raw: bool = False
    console_size: tuple[int, int] | None = None


def start_request(body: object) -> ExecStart:
    """Raises InvalidArgument when the body is not an object (an empty body is `{}`)."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return ExecStart(detach=bool(body.get("Detach")), raw=bool(body.get("Tty")),
                     console_size=console_size(body.get("ConsoleSize")))
