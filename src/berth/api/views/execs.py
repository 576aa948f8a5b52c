"""Exec instances as the Engine API shows them (GET /exec/{id}/json).

Strategy: a pure function of services.execsessions' `Exec` (its state now and
the typed `ExecConfig` it was created with), in Docker's ExecInspect shape.
"""

from __future__ import annotations

from typing import Any

from berth.services.execsessions import Exec


def inspect(e: Exec) -> dict[str, Any]:
    """Docker's ExecInspect for *e*."""
    cfg = e.config
    return {
        "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "ContainerID": e.container.id,
        "OpenStdin": cfg.attach_stdin, "OpenStdout": bool(cfg.attach_stdout),
        "OpenStderr": bool(cfg.attach_stderr), "CanRemove": False,
        "DetachKeys": cfg.detach_keys or "",
        "Pid": e.pid,
        "ProcessConfig": {"tty": cfg.tty, "entrypoint": cfg.cmd[0], "arguments": list(cfg.cmd[1:]),
                          "privileged": cfg.privileged, "user": cfg.user},
    }
