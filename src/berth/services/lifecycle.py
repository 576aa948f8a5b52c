"""Container life cycle: start, stop, kill, restart, pause, wait, remove, and each exit.

Strategy: every state change is written to the database before it is
announced, so a daemon killed at any moment comes back to a true picture
(services.recovery). Each running container has one watcher task awaiting
its exit; waiters and followers are woken through per-container asyncio
conditions. The restart policy runs here, from the exit it follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal as _signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from berth import timefmt
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, NotModified
from berth.host import binfmt, crashpoint, fs
from berth.oci import platform as platforms
from berth.runtime.base import CreateOptions, Exit, start_exit_code
from berth.services import bundle as bundles
from berth.services import containerconfig, pausing, validate
from berth.services import links as legacy_links
from berth.services.devicerequests import refuse_device_requests
from berth.services.attachments import Attached
from berth.services.containers import Containers
from berth.services.events import Events
from berth.services.health import Health
from berth.services.records import Container
from berth.snapshot.overlay import OverlayMount

log = logging.getLogger(__name__)

KILL_WAIT = 30.0  # seconds `kill` (SIGKILL) waits for the exit to be recorded before answering anyway


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What `docker wait` answers: the exit code, and the runtime's error when the last start failed."""

    status_code: int
    error: str | None


@dataclass(frozen=True, slots=True)
class PruneReport:
    """`docker container prune`: the containers removed and the bytes their own layers held."""

    deleted: list[str]
    reclaimed: int


class Lifecycle:
    """Runs the containers `Containers` records; *health* is told of each start and stop."""

    def __init__(self, containers: Containers, health: Health, events: Events) -> None:
        self.containers = containers
        self._events = events
        self.health = health
        self._background: set[asyncio.Task[None]] = set()

    def _keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task until it ends (the loop keeps only weak references)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background work (directory removals) to end, at shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def start(self, ref: str) -> None:
        c = self.containers.get(ref)
        async with c.lock:
            if c.state.paused:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.running:
                raise NotModified(f"container {c.id} is already running")
            if c.removed or c.removing:
                raise NotFound(f"No such container: {ref}")
            try:
                await self._start_locked(c)
            except BaseException:
                if c.record.auto_remove:
                    await self.remove(c.id, force=True)  # docker run --rm waits for this
                raise

    async def _start_locked(self, c: Container) -> None:
        await self._released(c)
        refuse_device_requests(c.host)  # --gpus: no device driver here, as Docker without one
        task = self.containers.task_of(c)
        attached = None
        image_platform = platforms.of_config(self.containers.images.config(c.record.image).doc)
        if not binfmt.runs_natively(image_platform, platforms.host()):
            await asyncio.to_thread(binfmt.ensure_emulator, image_platform)  # after a reboot, say
        overlay = self.containers.overlay(c)
        cfg = c.config
        try:
            bundles.mount_root(overlay)
            await self.containers.volumes.prepare(c.id, c.record.binds, overlay.target)
            attached = await self._attach_networks(c)
            namespaces = self._namespaces(c)
            if attached is not None and attached.netns not in ("", "host"):
                namespaces["network"] = attached.netns
            linked = legacy_links.at_start(c.record, self.containers.get)  # --link: their hosts lines and variables
            await asyncio.to_thread(self._write_spec, c, overlay.target, namespaces, attached, linked)  # reads the image
            driver, size = validate.log_settings(c.host.log_config.type, c.host.log_config.config)
            await task.create(CreateOptions(
                tty=c.record.tty, stdin=cfg.open_stdin,
                stdin_once=cfg.stdin_once, log=driver != "none", log_size_max=size,
                nic=attached.nic if attached is not None else None))
        except BaseException as exc:
            await self.detach_networks(c)
            await self._cleanup_failed_start(c, overlay, exc)
            raise
        for connect in c.pending_attach:
            connect(True)
        c.pending_attach.clear()
        console: list[int] = c.record.pending_size or c.host.console_size or [0, 0]
        c.record.pending_size = None
        if c.record.tty and len(console) == 2 and console[0] and console[1]:
            task.resize(int(console[0]), int(console[1]))
        try:
            await task.start()
        except BaseException as exc:
            await task.delete()
            await self.detach_networks(c)
            await self._cleanup_failed_start(c, overlay, exc)
            raise
        crashpoint.reached("start:after-runtime-start")  # recovery adopts it (Task.load)
        c.record.manually_stopped = False
        c.state.mark_running(task.pid)
        c.record.monitor_pid = task.monitor_pid
        self.health.started(c)  # State.Health "starting"; nothing at all without a check
        self.containers.save(c)
        self.containers.event(c, "start")
        c.watcher = asyncio.get_running_loop().create_task(self.watch(c))
        await c.notify()

    async def _attach_networks(self, c: Container) -> Attached | None:
        """The container's network namespace, addresses and published ports (bridge modes)."""
        if c.record.runtime == "runsc" and not c.record.vm:
            return None  # runsc: loopback only, see create()
        mode = c.record.network_mode
        bridged = mode not in ("none", "host") and not mode.startswith("container:")
        changes = bridged or bool(c.record.ports)  # none, host, container: nothing to record before the start
        c.record.ports = self.containers.attachments.plan_ports(c) if bridged else []

        def pid_of(ref: str) -> int:
            other = self.containers.get(ref)
            if not other.running:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            return int(other.state.pid)
        attached = await self.containers.attachments.attach(c, pid_of, vm=c.record.vm)
        if changes or c.record.vm:  # endpoints and ports are written before anything uses them
            self.containers.save(c)
        return attached

    async def detach_networks(self, c: Container) -> None:
        if c.record.endpoints or c.record.ports:
            await self.containers.attachments.detach(c)
            c.record.ports = []
            self.containers.save(c)

    def _namespaces(self, c: Container) -> dict[str, str]:
        """HostConfig's PidMode/IpcMode/UTSMode as runtime_spec namespace modes."""
        out = {}
        for kind, mode in (("pid", c.host.pid_mode), ("ipc", c.host.ipc_mode), ("uts", c.host.uts_mode)):
            if mode == "host":
                out[kind] = "host"
            elif mode.startswith("container:"):
                other = self.containers.get(mode.split(":", 1)[1])
                if not other.running:
                    raise Conflict(f"cannot join {kind.upper()} of a non running container: {other.id}")
                out[kind] = f"/proc/{other.state.pid}/ns/{kind}"
        return out

    async def _cleanup_failed_start(self, c: Container, overlay: OverlayMount, exc: BaseException) -> None:
        try:
            bundles.unmount_root(overlay)
        except BerthError:
            log.exception("unmount after a failed start of %s", c.id)
        self.containers.volumes.release(c.id, c.record.binds)
        message = str(exc)
        c.state.error = message
        c.state.exit_code = start_exit_code(exc)
        self.containers.save(c)
        if c.record.vm:  # the reason in the logs too, as the VM's own words
            line = f"{timefmt.now()} stderr F berth: the container's VM failed to start: {' '.join(message.split())}\n"
            with open(os.path.join(c.dir, "container.log"), "a") as f:
                f.write(line)
        for connect in c.pending_attach:
            connect(False)
        c.pending_attach.clear()
        await c.notify()

    # exit ---------------------------------------------------------------
    async def watch(self, c: Container) -> None:
        """Await *c*'s exit through its task (its monitor: also one an earlier daemon started), then record it."""
        try:
            result = await self.containers.task_of(c).wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the daemon alive; record what happened
            log.exception("waiting for %s", c.id)
            result = Exit(255, False, str(exc))
        await self._exited(c, result)

    async def _exited(self, c: Container, result: Exit) -> None:
        # The runtime lets go of the dead container (runc delete: its state and cgroups) beside the rest,
        # not before it: the exit is recorded and answered without waiting for one more program to run.
        # A later start of the same container waits for it; a daemon killed meanwhile sweeps it at recovery.
        c.release = asyncio.get_running_loop().create_task(self._release(c))
        self._keep(c.release)  # a clean stop waits for it too (settle)
        self.health.stopped(c)
        removed_next = c.record.auto_remove and not c.restarting
        if not removed_next:  # an --rm container's root is unmounted with its directory's removal, beside the answer
            try:
                bundles.unmount_root(self.containers.overlay(c))
            except (BerthError, NotFound):
                log.exception("unmount rootfs of %s", c.id)
        self.containers.volumes.release(c.id, c.record.binds)
        c.state.mark_exited(result.code, result.oom_killed, result.error)
        c.record.monitor_pid = 0
        c.watcher = None
        self.containers.save(c)
        try:
            await self.detach_networks(c)  # after the exit is recorded: `ps` never waits on nftables
        except Exception:  # noqa: BLE001 - the exit must still be counted and announced
            log.exception("network clean-up after the exit of %s", c.id[:12])
        # Counted only now: whoever waits for this exit (rm -f, kill, wait) goes on once the container's
        # network is gone too, never while its namespace is still being torn down.
        c.exits += 1
        if result.oom_killed:
            self.containers.event(c, "oom")
        self.containers.event(c, "die", exitCode=str(result.code))
        await c.notify()
        if removed_next:
            await self.remove(c.id, force=True)
        elif not c.restarting and containerconfig.should_restart(c.record, result.code):
            asyncio.get_running_loop().create_task(self._restart_by_policy(c))

    def _write_spec(self, c: Container, rootfs: str, namespaces: dict[str, str], attached: Attached | None,
                    linked: list[legacy_links.Link] | None = None) -> None:
        bundles.write_config(bundles.build_spec(c.record, c.dir, rootfs, self.containers.host_facts, namespaces,
                                                network=attached, links=linked or ()), c.dir)

    async def _release(self, c: Container) -> None:
        try:
            await self.containers.task_of(c).delete()
        except (BerthError, OSError) as exc:
            log.warning("runtime clean-up of %s: %s", c.id[:12], exc)

    async def _released(self, c: Container) -> None:
        """Wait for the runtime to let go of *c*'s last run (its id is free for the next)."""
        if c.release is not None:
            await c.release
            c.release = None

    async def _restart_by_policy(self, c: Container) -> None:
        """Start again after an exit, as the restart policy asks: 100 ms, doubling, at most a minute."""
        delay = containerconfig.restart_delay(c.record.restart_count)
        c.state.restarting = True
        c.state.status = "restarting"
        await asyncio.sleep(delay)
        async with c.lock:
            c.state.restarting = False
            if c.removed or c.removing or c.running or c.record.manually_stopped:
                if not c.running and not c.removed:
                    c.state.status = "exited"
                return
            c.record.restart_count = c.record.restart_count + 1
            try:
                await self._start_locked(c)
            except BerthError as exc:
                log.warning("restart policy: %s did not start: %s", c.id[:12], exc)
                c.state.status = "exited"
                self.containers.save(c)

    # signals ------------------------------------------------------------
    async def kill(self, ref: str, signal: str | None) -> None:
        c = self.containers.get(ref)
        sig = validate.parse_signal(signal, _signal.SIGKILL)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        c.record.manually_stopped = True
        exits = c.exits
        await self.containers.task_of(c).kill(sig)
        self.containers.event(c, "kill", signal=str(sig))
        if c.state.paused and sig == _signal.SIGKILL:
            await self._resume_quietly(c)
        if sig == _signal.SIGKILL:  # as Docker: answered once the exit is recorded (inspect shows 137, rm works)
            await self._wait_exit(c, exits, KILL_WAIT)

    async def stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        c = self.containers.get(ref)
        async with c.lock:
            if not c.running:
                if c.state.restarting:  # waiting to be restarted by its policy: cancel that
                    c.record.manually_stopped = True
                    self.containers.save(c)
                    return
                raise NotModified(f"container {c.id} is already stopped")
            await self._stop_locked(c, timeout, signal)

    async def _stop_locked(self, c: Container, timeout: int | None, signal: str | None) -> None:
        c.record.manually_stopped = not c.restarting
        cfg = c.config
        sig = validate.parse_signal(signal or cfg.stop_signal, _signal.SIGTERM)
        if timeout is None:
            timeout = cfg.stop_timeout
        if timeout is None:
            timeout = 10
        task = self.containers.task_of(c)
        exits = c.exits
        try:
            await task.kill(sig)
            if c.state.paused:
                await self._resume_quietly(c)
            self.containers.event(c, "kill", signal=str(sig))
        except Conflict:
            pass
        if timeout < 0 or not await self._wait_exit(c, exits, timeout):
            try:
                await task.kill(_signal.SIGKILL)
                self.containers.event(c, "kill", signal=str(int(_signal.SIGKILL)))
            except Conflict:
                pass
            await self._wait_exit(c, exits, None)
        self.containers.event(c, "stop")

    async def _resume_quietly(self, c: Container) -> None:
        try:
            await self.containers.task_of(c).resume()
        except BerthError:
            pass
        c.state.paused = False
        c.state.status = "running" if c.running else c.state.status

    async def _wait_exit(self, c: Container, exits_before: int, timeout: float | None) -> bool:
        async def until() -> None:
            async with c.changed:
                await c.changed.wait_for(lambda: c.exits > exits_before or c.removed)
        try:
            await asyncio.wait_for(until(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def restart(self, ref: str, timeout: int | None, signal: str | None) -> None:
        c = self.containers.get(ref)
        async with c.lock:
            c.restarting = True
            try:
                if c.running:
                    await self._stop_locked(c, timeout, signal)
                await self._start_locked(c)
            finally:
                c.restarting = False
        self.containers.event(c, "restart")

    async def pause(self, ref: str) -> None:
        c = self.containers.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.paused:
            raise Conflict(f"Container {c.id} is already paused")
        await pausing.freeze(self.containers, c, "pause")
        self.containers.event(c, "pause")

    @contextlib.asynccontextmanager
    async def held_still(self, ref: str, pause: bool = True) -> AsyncIterator[Container]:
        """The container paused for the time of the block (commit) when it runs and *pause* is asked.

        One that is not running, or that exits at that moment (the runtime's pause then fails), needs
        no pause: the block runs anyway, as Docker commits a stopped container.
        """
        c = self.containers.get(ref)
        paused = False
        if pause and c.running and not c.state.paused:
            try:
                await pausing.freeze(self.containers, c, "commit")
                self.containers.event(c, "pause")
                paused = True
            except BerthError:
                if c.running and await self.containers.task_of(c).status() in ("running", "paused"):
                    raise  # it still runs: the pause failed for another reason
        try:
            yield c
        finally:
            if paused and c.running and c.state.paused:
                try:
                    await pausing.thaw(self.containers, c)
                    self.containers.event(c, "unpause")
                except BerthError:
                    if c.running:
                        raise

    async def unpause(self, ref: str) -> None:
        c = self.containers.get(ref)
        if not c.state.paused:
            raise Conflict(f"Container {c.id} is not paused")
        await pausing.thaw(self.containers, c)
        self.containers.event(c, "unpause")

    # wait / remove ------------------------------------------------------
    async def wait(self, ref: str, condition: str) -> WaitResult:
        c = self.containers.get(ref)
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition {condition!r}: use not-running, next-exit or removed")
        exits = c.exits
        async with c.changed:
            if condition == "not-running":
                await c.changed.wait_for(lambda: not c.running or c.removed)
            elif condition == "next-exit":
                await c.changed.wait_for(lambda: c.exits > exits or c.removed)
            else:
                await c.changed.wait_for(lambda: c.removed)
        error = (c.state.error or None) if c.state.status == "exited" else None
        return WaitResult(c.state.exit_code, error)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.containers.get(ref)
        # between two runs of its restart policy (waiting, or being started again): as Docker, refused
        if not force and not c.running and (c.state.restarting or c.state.status == "restarting"):
            raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the container before "
                           "attempting removal or force remove")
        if c.running:
            if not force:
                state = "paused" if c.state.paused else "running"
                procedure = "Unpause and then stop" if state == "paused" else "Stop"
                raise Conflict(f"You cannot remove a {state} container {c.id}. {procedure} the container before "
                               "attempting removal or force remove")
            exits = c.exits
            try:
                await self.containers.task_of(c).kill(_signal.SIGKILL)
            except Conflict:
                pass
            if c.state.paused:
                await self._resume_quietly(c)
            await self._wait_exit(c, exits, 30)
        if c.removing and not c.removed:  # AutoRemove got there first: answer when it is done
            async with c.changed:
                await c.changed.wait_for(lambda: c.removed)
        if c.removed or c.removing:
            return
        c.removing = True  # "removed" waiters are woken only once it is really gone
        if c.watcher is not None:
            c.watcher.cancel()
        self.health.stopped(c)
        if c.running:  # the kill did not take within its wait: make the runtime let go
            await self.containers.task_of(c).delete()
        # Otherwise no runtime delete here: _exited (or a failed start) already did it.
        self.containers.forget(c)
        # The root's unmount and the directory go beside the answer, not before it (an upper dir may hold
        # much, nested however deep): nothing refers to them any more, and a daemon killed first unmounts
        # and sweeps them at recovery (a directory no record claims).
        self._keep(asyncio.get_running_loop().create_task(bundles.remove_bundle(c.dir)))
        if volumes or c.record.auto_remove:  # docker rm -v, and --rm containers
            self.containers.volumes.remove_anonymous(c.record.binds)
        c.removed = True
        self.containers.event(c, "destroy")
        await c.notify()

    async def prune(self, filters: dict[str, list[str]]) -> PruneReport:
        """Remove every stopped container matching *filters* (label, label!, until)."""
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = min((timefmt.parse_since(v) for v in filters.get("until", [])), default=0)
        deleted, reclaimed = [], 0
        for c in list(self.containers.all()):
            if c.running or c.state.paused:
                continue
            labels = c.config.labels
            if not all(containerconfig.label_matches(labels, v) for v in filters.get("label", [])):
                continue
            if any(containerconfig.label_matches(labels, v) for v in filters.get("label!", [])):
                continue
            if until and timefmt.parse_ns(c.record.created) > until:
                continue
            reclaimed += fs.disk_usage(os.path.join(c.dir, "upper"))
            await self.remove(c.id)
            deleted.append(c.id)
        self._events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return PruneReport(deleted, reclaimed)
