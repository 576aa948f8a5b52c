"""A cgroup per VM-isolated container, for accounting: QEMU joins it, stats read it.

Strategy: runc makes and removes the cgroups of process containers; a utility
VM has no runc, so its monitor puts QEMU in the same places
(`<controller>/berth/<id>` on cgroup v1, `berth/<id>` on v2) with no limits
(the VM's size is its limit), and removes them when the VM is gone.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpuacct", "pids", "blkio")


def paths(cid: str, root: Path = ROOT) -> list[Path]:
    """The container's cgroup directories on this host's hierarchy."""
    if (root / "cgroup.controllers").exists():
        return [root / "berth" / cid]
    return [root / c / "berth" / cid for c in V1_CONTROLLERS if (root / c).is_dir()]


def join(cid: str, pid: int, root: Path = ROOT) -> list[Path]:
    """Create the container's cgroups and move *pid* (with its threads) into them; best effort."""
    joined = []
    for d in paths(cid, root):
        try:
            d.mkdir(parents=True, exist_ok=True)
            (d / "cgroup.procs").write_text(f"{pid}\n")
            joined.append(d)
        except OSError:
            continue
    return joined


def remove(cid: str, root: Path = ROOT, *, wait: float = 2.0) -> None:
    """Remove the container's cgroups once their processes are gone (waits up to *wait* seconds)."""
    deadline = time.monotonic() + wait
    for d in paths(cid, root):
        while d.exists():
            try:
                d.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
                continue
    with contextlib.suppress(OSError):
        os.rmdir(root / "berth")  # only when empty: v2's parent, ours alone
