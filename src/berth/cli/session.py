"""An attached session: hijacked stream, terminal setup, wait for the exit code.

Strategy: the order is docker's, and it matters. The wait request goes out and
its response headers come back *before* the container is started (the daemon
answers headers once the wait is registered), so a fast exit is never missed;
the attach is hijacked before start too, so no output is lost. Then start, pump
bytes until the daemon closes the stream, and collect the exit status from the
wait, which runs in a thread because its body only arrives at exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from berth.cli import tty
from berth.cli.streams import pump
from berth.client.engine import Client
from berth.client.errors import APIError
from berth.client.responses import Hijacked
from berth.errors import InvalidArgument
from berth.wire import detachkeys

_HEADERS_GRACE = 2.0  # seconds to wait for the wait request to be registered (headers)


class Waiter:
    """POST /containers/{id}/wait in a thread; `ready` is set once it is registered."""

    def __init__(self, client: Client, cid: str, condition: str) -> None:
        self.client = client
        self.cid = cid
        self.condition = condition
        self.ready = threading.Event()
        self.done = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Waiter:
        self._thread.start()
        self.ready.wait(_HEADERS_GRACE)
        return self

    def _run(self) -> None:
        try:
            sr = self.client.stream("POST", f"/containers/{self.cid}/wait",
                                    {"condition": self.condition})
            self.ready.set()
            with sr:
                docs = list(sr.json_lines())
            self.result = docs[-1] if docs else {}
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        finally:
            self.ready.set()
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def status(self) -> int:
        """The exit code; raises the wait's error, or APIError for an in-band error."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        result = self.result or {}
        err = result.get("Error") or {}
        if isinstance(err, dict) and err.get("Message"):
            raise APIError(500, str(err["Message"]))
        return int(result.get("StatusCode", 0))


def start_error_code(message: str) -> int:
    """docker's exit code for a failed start: 127 not found, 126 cannot invoke, else 125."""
    text = message.removeprefix("Error response from daemon: ")
    if ("executable file not found" in text or "no such file or directory" in text
            or "system cannot find the file specified" in text):
        return 127
    if "permission denied" in text or "is a directory" in text:
        return 126
    return 125


def attach_query(stdin: bool, stdout: bool, stderr: bool,
                 detach_keys: str | None = None) -> dict[str, Any]:
    return {"stream": True, "stdin": stdin, "stdout": stdout, "stderr": stderr,
            "detachKeys": detach_keys}


def run_stream(client: Client, h: Hijacked, *, tty_mode: bool, stdin: bool,
               resize_path: str | None, sig_proxy_id: str | None, detach_keys: str | None = None) -> bool:
    """Pump an attached stream with the local terminal set up for it. With a terminal in the container
    and stdin attached, the detach keys typed end it here (as docker's CLI): then True."""
    stdin_is_tty = tty.is_tty(0)

    def resize(rows: int, cols: int) -> None:
        if resize_path is not None:
            client.request("POST", resize_path, {"h": rows, "w": cols})

    def forward(signame: str) -> None:
        if sig_proxy_id is not None:
            client.request("POST", f"/containers/{sig_proxy_id}/kill", {"signal": signame})

    # Older daemons label every attach stream raw-stream; only an explicit
    # multiplexed-stream label overrides what the TTY setting implies.
    multiplexed = not tty_mode or h.multiplexed is True
    with tty.raw_mode(0, enabled=tty_mode and stdin and stdin_is_tty), \
            tty.on_resize(resize, fd=1 if tty.is_tty(1) else 0,
                          enabled=tty_mode and resize_path is not None), \
            tty.proxy_signals(forward, enabled=sig_proxy_id is not None and not tty_mode):
        try:
            escape = detachkeys.parse(detach_keys) if tty_mode and stdin else None
        except InvalidArgument:
            escape = detachkeys.DEFAULT  # docker's CLI warns and uses the default
        return pump(h, multiplexed, 0 if stdin else None, escape=escape)


def settle_exit(waiter: Waiter, is_running: Callable[[], bool]) -> int | None:
    """After the stream ended: the exit code, or None if the user detached.

    The stream also ends on detach (ctrl-p ctrl-q, handled by the daemon); then the
    container keeps running and the wait never answers. Tell the two apart by asking
    twice, a moment apart, whether the container still runs.
    """
    for _ in range(2):
        if waiter.wait(1.0):
            return waiter.status()
        try:
            if not is_running():
                continue
        except APIError:
            continue
        if waiter.wait(1.0):
            return waiter.status()
        try:
            if is_running():
                return None
        except APIError:
            pass
    return waiter.status()

