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

from berth import timefmt
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
            monitor = c.record.monitor_pid
            if monitor <= 0 or not proc.pid_alive(monitor):
                await lifecycle.watch(c, monitor)  # it ended while the daemon was down: record it before serving
            else:
                c.watcher = asyncio.get_running_loop().create_task(lifecycle.watch(c, monitor))
                lifecycle.health.started(c)  # probing resumes, from "starting" as Docker's restore does
        elif c.record.auto_remove and c.state.status == "exited":
            await lifecycle.remove(c.id, force=True)


async def _adopt_or_clean(lifecycle: Lifecycle, c: Container) -> None:
    containers = lifecycle.containers
    runtime = containers.runtime_of(c)
    loaded = await runtime.load(c.id, c.dir)
    if loaded is None:
        return  # never handed to a monitor, or its exit is already known
    if loaded.status in ("running", "paused"):
        c.state.status = "running"
        c.state.running = True
        c.state.paused = loaded.status == "paused"
        c.state.pid = loaded.pid
        c.state.started_at = timefmt.now()
        c.state.finished_at = timefmt.ZERO
        c.state.exit_code = 0
        c.state.error = ""
        c.record.monitor_pid = loaded.monitor_pid
        containers.save(c)
        log.info("adopted %s, started while the daemon was going down", c.id[:12])
        return
    await runtime.delete(c.id)
    if loaded.status == "created":
        bundles.unmount_root(containers.overlay(c))
