"""After a daemon (re)start: running containers found again, exits that happened meanwhile recorded.

Strategy: the database says what each container was doing when the daemon
stopped; each runtime says what is true now (`Runtime.load` reads its own
monitor's files). Where they differ the runtime wins: a container whose
start the daemon did not finish recording is adopted when the runtime runs
it and cleaned away when the runtime only created it; a container that
ended while the daemon was down has its exit recorded before the API
serves; a pause or a commit's hold under way is settled (services.pausing).
Work that belonged to a client the crash cut off is undone: an auto-remove
container that never ran to its end, and a build's RUN-step container, are
removed. Directories, runtime state and links with no record are swept.
Every finding is one line of the `Report`, logged as it is made.
"""

from __future__ import annotations

import asyncio
import logging
import os

from berth.host import fs, proc
from berth.services import bundle as bundles
from berth.services import pausing
from berth.services.lifecycle import Lifecycle
from berth.services.records import Container
from berth.snapshot.overlay import OverlayMount

log = logging.getLogger(__name__)


class Report:
    """What recovery found inconsistent and what it did: one log line each, as it happens."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, subject: str, what: str) -> None:
        line = f"{subject}: {what}"
        self.lines.append(line)
        log.warning("recovery: %s", line)

    def close(self) -> None:
        if self.lines:
            log.warning("recovery: %d finding(s), each fixed as logged above", len(self.lines))
        else:
            log.info("recovery: records, runtimes and files agree")


def _name(c: Container) -> str:
    return f"container {c.id[:12]} ({c.name})"


async def recover(lifecycle: Lifecycle, report: Report) -> None:
    """Bring the records and the runtimes into agreement, then watch every running container."""
    containers = lifecycle.containers
    known = {c.id for c in containers.all()}
    for entry in await asyncio.to_thread(os.listdir, containers.root):
        if entry not in known:  # never committed to the database, or removed while it was being deleted
            directory = os.path.join(containers.root, entry)
            bundles.unmount_root(OverlayMount((), "", "", os.path.join(directory, "rootfs")))
            await asyncio.to_thread(fs.rmtree, directory)
            report.add(f"directory containers/{entry[:12]}", "no container record: removed")
    for c in containers.all():
        if c.removed:
            continue
        if not c.running:
            await _adopt_or_clean(lifecycle, c, report)
        if not c.running:
            await lifecycle.detach_networks(c)  # it stopped while the daemon was down
            for found in _undo_cut_start(lifecycle, c):
                report.add(_name(c), found)
        if c.running:
            found = await pausing.reconcile(containers, c)
            if found:
                report.add(_name(c), found)
            monitor = containers.task_of(c).monitor_pid
            if monitor <= 0 or not proc.pid_alive(monitor):
                await lifecycle.watch(c)  # it ended while the daemon was down: record it before serving
                report.add(_name(c), f"exited while the daemon was down (code {c.state.exit_code}): recorded")
            else:
                c.watcher = asyncio.get_running_loop().create_task(lifecycle.watch(c))
                lifecycle.health.started(c)  # probing resumes, from "starting" as Docker's restore does
        await _undo_orphaned(lifecycle, c, report)
    await lifecycle.settle()  # the removals just made finish before what they leave is judged
    await _sweep_runtimes(lifecycle, report)


async def _sweep_runtimes(lifecycle: Lifecycle, report: Report) -> None:
    """Runtime state no running container needs: of removed containers (a removal the daemon did not
    live to finish) and of stopped ones whose clean-up after the exit was cut short; then the links
    that point to removed containers."""
    containers = lifecycle.containers
    live = {c.id: c for c in containers.all() if not c.removed}
    for runtime in containers.runtimes.values():
        for cid in runtime.held():
            c = live.get(cid)
            if c is not None and (c.running or c.state.restarting or (c.release is not None and not c.release.done())):
                continue  # it runs (or its restart policy is starting it), or its clean-up is under way
            await runtime.delete(cid)
            report.add(f"{runtime.name} state {cid[:12]}",
                       "no container record: deleted" if c is None else "left after the container stopped: deleted")
        for link in await asyncio.to_thread(runtime.tidy):
            report.add(f"link {link}", "points to a removed container: removed")


def _undo_cut_start(lifecycle: Lifecycle, c: Container) -> list[str]:
    """A stopped container's root mount and network namespace, left by a start the daemon did not live
    to finish (a finished stop leaves neither)."""
    found = []
    overlay = lifecycle.containers.overlay(c)
    if os.path.ismount(overlay.target):
        bundles.unmount_root(overlay)
        found.append("its root was still mounted (a start cut short): unmounted")
    if lifecycle.containers.networks.drop_netns(c.id):
        found.append("its network namespace was left (a start cut short): deleted")
    return found


async def _undo_orphaned(lifecycle: Lifecycle, c: Container, report: Report) -> None:
    """Remove what only a client the crash cut off would have removed (as Docker's restore does)."""
    if c.removed:
        return
    if c.record.build_step:
        await lifecycle.remove(c.id, force=True, volumes=True)
        report.add(_name(c), "a build's RUN-step container, its build gone with the daemon: removed")
    elif c.record.auto_remove and not c.running and c.state.status in ("exited", "created"):
        await lifecycle.remove(c.id, force=True)
        report.add(_name(c), f"auto-remove container left {c.state.status}: removed")


async def _adopt_or_clean(lifecycle: Lifecycle, c: Container, report: Report) -> None:
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
        report.add(_name(c), f"recorded created but the runtime has it {status}: adopted")
        return
    await task.delete()
    if status == "created":
        bundles.unmount_root(containers.overlay(c))
    report.add(_name(c), f"the runtime held it {status}, never started: runtime state deleted")
