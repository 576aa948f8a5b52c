"""Crash points: with BERTHD_CRASH_AT=<name> in its environment, berthd SIGKILLs itself the moment it
reaches the point <name>, exactly as a kill from outside would land there.

For tests that prove recovery from a kill at one chosen moment (a kill from outside lands at a
random one). Unset, a point costs one string comparison. The points:

    start:after-runtime-start   the runtime runs the container; the record still says "created"
    pause:after-runtime-pause   the runtime paused the container; the record does not say so yet
    volume:after-record         a removed volume's record is gone; its directory is still there
    build:step-started          a build's RUN-step container runs; the build is waiting for it
"""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("BERTHD_CRASH_AT", "")


def reached(name: str) -> None:
    if _AT and _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
