"""After a daemon (re)start: running containers found again, exits that happened meanwhile recorded.

Strategy: the database says what each container was doing when the daemon
stopped; each runtime says what is true now (`Runtime.load` reads its own
monitor's files). Where they differ the runtime wins: a container whose
start the daemon did not finish recording is adopted when the runtime runs
it and cleaned away when the runtime only created it; a container that
ended while the daemon was down has its exit recorded before the API
serves. Directories and runtime state with no record are swept.
"""

from __future__ import annotations

import asyncio
import logging
import os

from berth.host import fs, proc
from berth.services import bundle as bundles
from berth.services.lifecycle import Lifecycle
from berth.services.records import Container
from berth.snapshot.overlay import OverlayMount

log = logging.getLogger(__name__)


async def recover(lifecycle: Lifecycle) -> None:
    """Bring the records and the runtimes into agreement, then watch every running container."""
    containers = lifecycle.containers
    known = {c.id for c in containers.all()}
    for entry in os.listdir(containers.root):
        if entry not in known:  # never committed to the database, or removed while it was being deleted
            directory = os.path.join(containers.root, entry)
            bundles.unmount_root(OverlayMount((), "", "", os.path.join(directory, "rootfs")))
            fs.rmtree(directory)
    for runtime in containers.runtimes.values():  # removed while the runtime's own clean-up was under way
        for cid in runtime.held():
            if cid not in known:
                await runtime.delete(cid)
    for c in containers.all():
        if c.removed:
            continue
        if not c.running:
            await _adopt_or_clean(lifecycle, c)
        if not c.running:
            await lifecycle.detach_networks(c)  # it stopped while the daemon was down
        if c.running:
            monitor = containers.task_of(c).monitor_pid
            if monitor <= 0 or not proc.pid_alive(monitor):
                await lifecycle.watch(c)  # it ended while the daemon was down: record it before serving
            else:
                c.watcher = asyncio.get_running_loop().create_task(lifecycle.watch(c))
                lifecycle.health.started(c)  # probing resumes, from "starting" as Docker's restore does
        elif c.record.auto_remove and c.state.status == "exited":
            await lifecycle.remove(c.id, force=True)


async def _adopt_or_clean(lifecycle: Lifecycle, c: Container) -> None:
    containers = lifecycle.containers
    task = containers.task_of(c)
    status = await task.load()  # the driver's own files: conmon's, the VM monitor's
    if status is None:
        return  # never handed to a monitor, or its exit is already known
    if status in ("running", "paused"):
        c.state.mark_running(task.pid)
        c.state.paused = status == "paused"
        c.record.monitor_pid = task.monitor_pid
        containers.save(c)
        log.info("adopted %s, started while the daemon was going down", c.id[:12])
        return
    await task.delete()
    if status == "created":
        bundles.unmount_root(containers.overlay(c))
