"""What every command shares: the invocation context, output helpers, exit statuses.

Strategy: commands are functions `(ctx, argv) -> int`. They reach the daemon
only through `ctx.client` (created on first use, so `--help` needs no daemon),
write through `ctx.out`/`ctx.err`, and signal a specific exit code by raising
`StatusError`. Commands acting on several objects use `for_each`, which keeps
going after a failure and reports it the way docker does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from berth.cli.tables import inspected_tail
from berth.client.engine import Client
from berth.client.errors import APIError
from berth.client.tls import TlsConfig
from berth.errors import BerthError


class StatusError(BerthError):
    """End the command with this exit code, after printing message (if any) on stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Ctx:
    host: str
    debug: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: Client | None = None
    tls: TlsConfig | None = None  # None: plain, unless the environment asks for TLS
    context: str = "default"  # the docker context this command line uses (-c, DOCKER_CONTEXT, config.json)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.host, tls=self.tls)
        return self._client

    def print(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)

    def error(self, text: str) -> None:
        self.out.flush()
        self.err.write(text + "\n")
        self.err.flush()

    def flush(self) -> None:
        self.out.flush()


def describe(exc: BaseException) -> str:
    """The line docker prints for an error."""
    if isinstance(exc, APIError):
        return f"Error response from daemon: {exc.message}"
    return str(exc)


def for_each(ctx: Ctx, names: Iterable[str], action: Callable[[str], str | None],
             missing_ok: bool = False) -> int:
    """Run action on each name; print what it returns, report failures, exit 1 if any (with
    *missing_ok*, as docker's `rmi -f`, a name that does not exist is reported but not a failure)."""
    failed = False
    for name in names:
        try:
            shown = action(name)
        except APIError as exc:
            ctx.error(describe(exc))
            failed = failed or not (missing_ok and exc.status == 404)
            continue
        if shown is not None:
            ctx.print(shown)
    return 1 if failed else 0


def finish_inspect(ctx: Ctx, fmt: str | None, templated: bool, found: list[Any], errors: list[str]) -> int:
    """The end of every `inspect`: what docker prints after the objects (berth.cli.tables.inspected_tail),
    then the lookups that failed on stderr; exit 1 when one did."""
    tail = inspected_tail(fmt, found, templated)
    if tail is not None:
        ctx.print(tail)
    for line in errors:
        ctx.error(line)
    return 1 if errors else 0


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return (0,)


def require_api(ctx: Ctx, flag: str, version: str) -> None:
    """docker's refusal (exit 1, said as is) of a flag the daemon's API version is too old for."""
    from berth.cli.parser import UsageError

    have = ctx.client.api_version
    if _version(have) < _version(version):
        raise UsageError(f'"{flag}" requires API version {version}, but the Docker daemon API version is {have}',
                         code=1, complete=True, bare=True)


def platform_json(text: str) -> str:
    """`--platform os/arch[/variant]` as the API's JSON-encoded OCI platform."""
    import json

    from berth.oci import platform as platforms

    return json.dumps(platforms.to_dict(platforms.parse(text)), separators=(",", ":"))

