"""A QMP session with a VM's QEMU, over QEMU's own client library (qemu.qmp).

    qmp = await Qmp.connect(workdir / "qmp.sock")
    try:
        await qmp.execute("stop")
    finally:
        await qmp.close()

Strategy: a session stays open for as long as one job needs it (a restore or a
save sends several commands and waits for events in between). `connect`
retries while QEMU has not made its socket yet; every call has a timeout;
QEMU's refusals become CommandFailed and a QEMU that went away Unavailable, so
callers see berth's error categories, never the library's. Descriptors are
handed over with `getfd`, because QEMU's sandbox lets it neither fork nor exec.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qemu.qmp import (
    ConnectError,
    ExecInterruptedError,
    ExecuteError,
    QMPClient,
    QMPError,
)

from berth.errors import CommandFailed, Unavailable
from berth.vm.prepare import QEMU


class Qmp:
    """One QMP session kept open (restore and save need several commands and the events between),
    over QEMU's own client library (qemu.qmp); this class adds the retry while QEMU makes its socket,
    timeouts on every call, and berth's error categories."""

    def __init__(self, client: QMPClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 10.0) -> Qmp:
        """Connect (retrying while QEMU creates the socket) and negotiate capabilities."""
        deadline = time.monotonic() + timeout
        while True:
            if not path.exists():  # QEMU has not made it yet (a connect now would only log a failure)
                if time.monotonic() > deadline:
                    raise Unavailable(f"QEMU's QMP socket {path} did not appear within {timeout}s")
                await asyncio.sleep(0.005)
                continue
            client = QMPClient(path.name)
            try:
                await asyncio.wait_for(client.connect(str(path)), max(0.1, deadline - time.monotonic()))
                return cls(client)
            except ConnectError as exc:
                await _quietly_disconnect(client)
                if not isinstance(exc.exc, (FileNotFoundError, ConnectionRefusedError)) \
                        or time.monotonic() > deadline:
                    raise Unavailable(f"QEMU's QMP socket {path} did not answer within {timeout}s: "
                                      f"{exc.exc!r}") from None
                await asyncio.sleep(0.005)
            except BaseException:
                await _quietly_disconnect(client)
                raise

    async def execute(self, command: str, arguments: Mapping[str, Any] | None = None, *,
                      timeout: float = 10.0) -> Any:
        """Run *command*; return its "return" value, raise CommandFailed on an "error"."""
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise CommandFailed([QEMU, "qmp", command], 1, str(exc.error.error.desc)) from None
        except ExecInterruptedError:
            raise Unavailable("QEMU closed its QMP socket (did it exit?)") from None

    async def pass_fd(self, name: str, fd: int, *, timeout: float = 10.0) -> None:
        """Hand *fd* to QEMU as *name* (`getfd` with the descriptor attached), for a `fd:NAME` URI.

        Migrations use descriptors rather than `exec:` because the sandbox denies QEMU fork/exec.
        """
        self._client.send_fd_scm(fd)
        await self.execute("getfd", {"fdname": name}, timeout=timeout)

    async def wait_event(self, name: str, *, timeout: float) -> dict[str, Any]:
        """Wait for the event *name* (or return it if it already came: the client queues them)."""
        async def until() -> dict[str, Any]:
            while True:
                event = await self._client.events.get()
                if event.get("event") == name:
                    return dict(event)

        return await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        await _quietly_disconnect(self._client)


async def _quietly_disconnect(client: QMPClient) -> None:
    """Disconnect; a QEMU that already went away is no error here (its exit is reported elsewhere)."""
    try:
        await client.disconnect()
    except (OSError, EOFError, QMPError):
        pass
