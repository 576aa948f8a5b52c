"""Containers: create, start, stop, wait, remove, and how the API sees them.

Strategy: a container is a JSON record in the metadata database (Docker's
Config/HostConfig/State shapes) plus a directory <root>/containers/<id>
that is its OCI bundle (config.json, rootfs overlay mount, conmon's files).
Every state change is written to the database before it is announced, so
a daemon killed at any moment comes back to a true picture: on start-up,
`recover` finds each running container's monitor again, or its exit file.
Each running container has one watcher task awaiting its exit; waiters and
followers are woken through per-container asyncio conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal as _signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

from berth import timefmt
from berth.errors import (
    AlreadyExists,
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotImplemented_,
    NotModified,
)
from berth.host import binfmt, crashpoint, fs, mount, proc
from berth.metadata.db import Database
from berth.oci import platform as platforms
from berth.oci import runtime_spec
from berth.runtime.base import CreateOptions, Exit, Runtime, start_exit_code
from berth.services import bundle as bundles
from berth.services import health as healthchecks
from berth.services import links as legacy_links
from berth.services import runplan, validate
from berth.services.events import Events
from berth.services.images import Images
from berth.services.networks import Attached, Networks
from berth.services.records import Container, ContainerTable
from berth.services.volumes import Volumes
from berth.snapshot.overlay import OverlayMount, Snapshots

log = logging.getLogger(__name__)

KILL_WAIT = 30.0  # seconds `kill` (SIGKILL) waits for the exit to be recorded before answering anyway

_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zealous")
_NOUNS = ("anchor", "beacon", "buoy", "cove", "dock", "harbor", "jetty", "keel", "lagoon", "marina",
          "pier", "quay", "reef", "skiff", "tide", "wharf", "yawl", "schooner")


class Containers:
    def __init__(self, root: str, db: Database, images: Images, snaps: Snapshots, events: Events,
                 runtimes: dict[str, Runtime], default_runtime: str, host_facts: bundles.HostFacts, *,
                 table: ContainerTable, volumes: Volumes, networks: Networks) -> None:
        self.root = os.path.join(root, "containers")
        os.makedirs(self.root, exist_ok=True)
        self._db, self._images, self._snaps, self._events = db, images, snaps, events
        self.runtimes, self.default_runtime = runtimes, default_runtime
        self._host_facts = host_facts
        self._table = table
        self._all = table.by_id  # the live records, shared with the services that read them
        self.volumes = volumes
        self.networks = networks
        self.health: healthchecks.Health | None = None  # set by the composition root: it needs execs, built after
        self._background: set[asyncio.Task[None]] = set()

    # lookup -------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix (see ContainerTable.get)."""
        return self._table.get(ref)

    def all(self) -> list[Container]:
        return self._table.all()

    def using_image(self, image_id: str) -> list[str]:
        return self._table.using_image(image_id)

    def runtime_of(self, c: Container) -> Runtime:
        if c.doc["HostConfig"].get("Isolation") == "hyperv":
            return self.runtimes["vm"]
        return self.runtimes[c.doc["HostConfig"].get("Runtime") or self.default_runtime]

    def _keep(self, task: asyncio.Task[None]) -> None:
        """Hold a background task until it ends (the loop keeps only weak references)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the background work (directory removals) to end, at shutdown."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _save(self, c: Container) -> None:
        self._db.update_container(c.id, c.name, c.doc)

    def _event(self, c: Container, action: str, **extra: str) -> None:
        attrs = {"image": c.doc["Config"].get("Image", ""), "name": c.name}
        attrs.update({k: v for k, v in (c.doc["Config"].get("Labels") or {}).items()})
        attrs.update(extra)
        self._events.publish("container", action, c.id, attrs)

    def committed(self, c: Container, image_id: str, image_ref: str, comment: str) -> None:
        """Docker's `commit` event: on the container, naming the new image (imageRef: its tag, or "")."""
        self._event(c, "commit", comment=comment, imageID=image_id, imageRef=image_ref)

    # create -------------------------------------------------------------
    def create(self, name: str, body: Any, platform: str = "") -> tuple[str, list[str]]:
        validate.check_config(body)
        host = dict(body.get("HostConfig") or {})
        if name:
            name = validate.check_name(name)
            for c in self._all.values():
                if c.name == name:
                    raise AlreadyExists(
                        f'Conflict. The container name "/{name}" is already in use by container "{c.id}". '
                        "You have to remove (or rename) that container to be able to reuse that name.")
        else:
            name = self._generate_name()
        image_ref = body.get("Image") or ""
        image_id = self._images.resolve(image_ref, platform)
        image_cfg = self._images.config(image_id)
        image_platform = platforms.of_config(image_cfg)
        native = binfmt.runs_natively(image_platform, platforms.host())
        offer = runplan.HostOffer(frozenset(self.runtimes), self.default_runtime,
                                  (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) >> 20)
        run = runplan.plan(host, image_ref, str(image_platform), native, offer)  # isolation, driver, modes
        if not native:
            binfmt.ensure_emulator(image_platform)  # milliseconds; also done again at each start
        # RestartPolicy (with AutoRemove) is checked by validate.check_config, in Docker's words
        network = run.network
        self.networks.check_mode(network)
        planned = self.networks.plan_endpoints(network, body.get("NetworkingConfig"))  # checked, by network name
        for key, _ in runplan.NAMESPACE_MODES:
            mode = host.get(key) or ""
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])  # NotFound when it names no container
        if host.get("Links"):  # legacy links: checked and kept as Docker shows them (services.links)
            host["Links"] = legacy_links.at_create(host, name, self.get)
        cfg = _merge_image_config(body, image_cfg.get("config") or {})
        healthcheck = healthchecks.merge(cfg.get("Healthcheck"), (image_cfg.get("config") or {}).get("Healthcheck"))
        if healthcheck is not None:
            cfg["Healthcheck"] = healthcheck
        if not bundles.process_args({"Config": cfg}):
            raise InvalidArgument("no command specified")
        cid = secrets.token_hex(32)
        while cid in self._all or cid[:12].isdigit():
            cid = secrets.token_hex(32)
        image_volumes = (image_cfg.get("config") or {}).get("Volumes") or {}
        if image_volumes:  # as Docker merges them: the image's VOLUMEs join the request's
            cfg["Volumes"] = {**image_volumes, **(cfg.get("Volumes") or {})}
        binds = self.volumes.container_mounts(cid, host, (cfg.get("Volumes") or {}).keys(),
                                              lambda ref: list(self.get(ref).doc.get("Binds") or []))
        if not cfg.get("Hostname") and network != "host":
            cfg["Hostname"] = cid[:12]  # as Docker records it
        host.setdefault("NetworkMode", network)
        host["Runtime"] = run.runtime
        host["Isolation"] = run.isolation_field
        if host.get("MemorySwappiness") == -1:  # the CLI's "unset", stored as Docker stores it
            host["MemorySwappiness"] = None
        log_config = host.get("LogConfig") or {}
        host["LogConfig"] = {"Type": log_config.get("Type") or "json-file", "Config": log_config.get("Config") or {}}
        if not (host.get("RestartPolicy") or {}).get("Name"):
            host["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
        args = bundles.process_args({"Config": cfg})
        doc = {
            "Id": cid, "Name": "/" + name, "Created": timefmt.now(), "Path": args[0], "Args": args[1:],
            "Config": cfg, "HostConfig": host, "Image": image_id, "Binds": binds,
            "EndpointsConfig": planned, "EndpointsListed": True,
            "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": timefmt.ZERO, "FinishedAt": timefmt.ZERO},
            "MonitorPid": 0, "RestartCount": 0, "Platform": image_cfg.get("os", "linux"),
        }
        directory = os.path.join(self.root, cid)
        os.makedirs(directory, mode=0o700)  # root only: its upper dir holds what the container made
        try:
            self._db.insert_container(cid, name, doc)
        except AlreadyExists as exc:
            fs.rmtree(directory)
            raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use. '
                                "You have to remove (or rename) that container to be able to reuse that name.") from exc
        c = Container(doc, directory)
        self._all[cid] = c
        self._event(c, "create")
        return cid, []

    def _generate_name(self) -> str:
        taken = {c.name for c in self._all.values()}
        while True:
            name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
            if name in taken:
                name += str(secrets.randbelow(100))
            if name not in taken:
                return name

    # the container's files (export, commit) ---------------------------------
    @contextlib.contextmanager
    def root_view(self, ref: str) -> Iterator[str]:
        """The container's root file system, mounted for the time of the block if it is not running."""
        c = self.get(ref)
        overlay = self._overlay(c)
        here = not mount.is_mountpoint(overlay.target)
        if here:
            bundles.mount_root(overlay)
        try:
            yield overlay.target
        finally:
            if here and not c.running:
                bundles.unmount_root(overlay)

    def upper_dir(self, ref: str) -> str:
        """Where the container's changes to its image are (the overlay's upper directory)."""
        return self._overlay(self.get(ref)).upper

    # start --------------------------------------------------------------
    def _overlay(self, c: Container) -> OverlayMount:
        return self._snaps.container_mount(self._images.chains(c.doc["Image"]), c.dir)

    async def start(self, ref: str) -> None:
        c = self.get(ref)
        async with c.lock:
            if c.state["Paused"]:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.running:
                raise NotModified(f"container {c.id} is already running")
            if c.removed or c.removing:
                raise NotFound(f"No such container: {ref}")
            try:
                await self._start_locked(c)
            except BaseException:
                if c.doc["HostConfig"].get("AutoRemove"):
                    await self.remove(c.id, force=True)  # docker run --rm waits for this
                raise

    async def _start_locked(self, c: Container) -> None:
        await self._released(c)
        runtime = self.runtime_of(c)
        attached = None
        image_platform = platforms.of_config(self._images.config(c.doc["Image"]))
        if not binfmt.runs_natively(image_platform, platforms.host()):
            await asyncio.to_thread(binfmt.ensure_emulator, image_platform)  # after a reboot, say
        overlay = self._overlay(c)
        cfg = c.doc["Config"]
        try:
            bundles.mount_root(overlay)
            await self.volumes.prepare(c.id, c.doc, overlay.target)
            attached = await self._attach_networks(c)
            namespaces = self._namespaces(c)
            if attached is not None and attached.netns not in ("", "host"):
                namespaces["network"] = attached.netns
            linked = legacy_links.at_start(c.doc, self.get)  # --link: their hosts lines and variables
            await asyncio.to_thread(self._write_spec, c, overlay.target, namespaces, attached, linked)  # reads the image
            driver, size = validate.log_config(c.doc["HostConfig"].get("LogConfig"))
            started = await runtime.create(c.id, c.dir, CreateOptions(
                tty=bool(cfg.get("Tty")), stdin=bool(cfg.get("OpenStdin")),
                stdin_once=bool(cfg.get("StdinOnce")), log=driver != "none", log_size_max=size,
                nic=attached.nic if attached is not None else None))
        except BaseException as exc:
            await self._detach_networks(c)
            await self._cleanup_failed_start(c, overlay, exc)
            raise
        for connect in c.pending_attach:
            connect(True)
        c.pending_attach.clear()
        console: list[int] = c.doc.pop("PendingSize", None) or c.doc["HostConfig"].get("ConsoleSize") or [0, 0]
        if cfg.get("Tty") and len(console) == 2 and console[0] and console[1]:
            runtime.resize(c.dir, int(console[0]), int(console[1]))
        try:
            await runtime.start(c.id)
        except BaseException as exc:
            await runtime.delete(c.id)
            await self._detach_networks(c)
            await self._cleanup_failed_start(c, overlay, exc)
            raise
        crashpoint.reached("start:after-runtime-start")  # recovery adopts it (Runtime.load)
        c.doc["ManuallyStopped"] = False
        st = c.state
        st.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False, Dead=False,
                  Pid=started.pid, ExitCode=0, Error="", StartedAt=timefmt.now(), FinishedAt=timefmt.ZERO)
        c.doc["MonitorPid"] = started.monitor_pid
        if self.health is not None:
            self.health.started(c)  # State.Health "starting"; nothing at all without a check
        self._save(c)
        self._event(c, "start")
        c.watcher = asyncio.get_running_loop().create_task(self._watch(c, started.monitor_pid))
        await c.notify()

    async def _attach_networks(self, c: Container) -> Attached | None:
        """The container's network namespace, addresses and published ports (bridge modes)."""
        if c.doc["HostConfig"].get("Runtime") == "runsc" and c.doc["HostConfig"].get("Isolation") != "hyperv":
            return None  # runsc: loopback only, see create()
        host = c.doc["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        bridged = mode not in ("none", "host") and not mode.startswith("container:")
        c.doc["Ports"] = self.networks.plan_ports(host, c.doc["Config"].get("ExposedPorts") or {}) if bridged else []

        def pid_of(ref: str) -> int:
            other = self.get(ref)
            if not other.running:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            return int(other.state["Pid"])
        attached = await self.networks.attach(c, pid_of, vm=c.doc["HostConfig"].get("Isolation") == "hyperv")
        self._save(c)
        return attached

    async def _detach_networks(self, c: Container) -> None:
        if c.doc.get("Endpoints") or c.doc.get("Ports"):
            await self.networks.detach(c)
            c.doc["Ports"] = []
            self._save(c)

    async def connect(self, net_ref: str, ref: str, cfg: dict[str, Any]) -> None:
        """`docker network connect`: join a network (at once when running, else at the next start)."""
        c = self.get(ref)
        async with c.lock:
            if c.doc["HostConfig"].get("Isolation") == "hyperv" and c.running:
                raise NotImplemented_("a running VM-isolated container cannot join another network (its VM has "
                                      "one network card, fixed at start): stop it, connect, start it")
            await self.networks.connect(net_ref, c, cfg)
            self._save(c)

    async def disconnect(self, net_ref: str, ref: str, force: bool = False) -> None:
        c = self.get(ref)
        async with c.lock:
            await self.networks.disconnect(net_ref, c)
            self._save(c)

    def _namespaces(self, c: Container) -> dict[str, str]:
        """HostConfig's PidMode/IpcMode/UTSMode as runtime_spec namespace modes."""
        out = {}
        host = c.doc["HostConfig"]
        for kind, key in (("pid", "PidMode"), ("ipc", "IpcMode"), ("uts", "UTSMode")):
            mode = host.get(key) or ""
            if mode == "host":
                out[kind] = "host"
            elif mode.startswith("container:"):
                other = self.get(mode.split(":", 1)[1])
                if not other.running:
                    raise Conflict(f"cannot join {kind.upper()} of a non running container: {other.id}")
                out[kind] = f"/proc/{other.state['Pid']}/ns/{kind}"
        return out

    async def _cleanup_failed_start(self, c: Container, overlay: OverlayMount, exc: BaseException) -> None:
        try:
            bundles.unmount_root(overlay)
        except BerthError:
            log.exception("unmount after a failed start of %s", c.id)
        self.volumes.release(c.id, c.doc)
        message = str(exc)
        c.state.update(Error=message, ExitCode=start_exit_code(exc))
        self._save(c)
        if c.doc["HostConfig"].get("Isolation") == "hyperv":  # the reason in the logs too, as the VM's own words
            line = f"{timefmt.now()} stderr F berth: the container's VM failed to start: {' '.join(message.split())}\n"
            with open(os.path.join(c.dir, "container.log"), "a") as f:
                f.write(line)
        for connect in c.pending_attach:
            connect(False)
        c.pending_attach.clear()
        await c.notify()

    # exit ---------------------------------------------------------------
    async def _watch(self, c: Container, monitor_pid: int) -> None:
        runtime = self.runtime_of(c)
        try:
            result = await runtime.wait(c.id, c.dir, monitor_pid)
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
        if self.health is not None:
            self.health.stopped(c)
        try:
            bundles.unmount_root(self._overlay(c))
        except (BerthError, NotFound):
            log.exception("unmount rootfs of %s", c.id)
        self.volumes.release(c.id, c.doc)
        st = c.state
        st.update(Status="exited", Running=False, Paused=False, Pid=0, ExitCode=result.code,
                  OOMKilled=result.oom_killed, Error=result.error, FinishedAt=timefmt.now())
        c.doc["MonitorPid"] = 0
        c.watcher = None
        self._save(c)
        try:
            await self._detach_networks(c)  # after the exit is recorded: `ps` never waits on nftables
        except Exception:  # noqa: BLE001 - the exit must still be counted and announced
            log.exception("network clean-up after the exit of %s", c.id[:12])
        # Counted only now: whoever waits for this exit (rm -f, kill, wait) goes on once the container's
        # network is gone too, never while its namespace is still being torn down.
        c.exits += 1
        if result.oom_killed:
            self._event(c, "oom")
        self._event(c, "die", exitCode=str(result.code))
        await c.notify()
        if c.doc["HostConfig"].get("AutoRemove") and not c.restarting:
            await self.remove(c.id, force=True)
        elif not c.restarting and _should_restart(c.doc, result.code):
            asyncio.get_running_loop().create_task(self._restart_by_policy(c))

    def _write_spec(self, c: Container, rootfs: str, namespaces: dict[str, str], attached: Attached | None,
                    linked: list[legacy_links.Link] | None = None) -> None:
        bundles.write_config(bundles.build_spec(c.doc, c.dir, rootfs, self._host_facts, namespaces,
                                                network=attached, links=linked or ()), c.dir)

    async def _release(self, c: Container) -> None:
        try:
            await self.runtime_of(c).delete(c.id)
        except (BerthError, OSError) as exc:
            log.warning("runtime clean-up of %s: %s", c.id[:12], exc)

    async def _released(self, c: Container) -> None:
        """Wait for the runtime to let go of *c*'s last run (its id is free for the next)."""
        if c.release is not None:
            await c.release
            c.release = None

    async def _restart_by_policy(self, c: Container) -> None:
        """Start again after an exit, as the restart policy asks: 100 ms, doubling, at most a minute."""
        delay = min(60.0, 0.1 * 2 ** min(int(c.doc.get("RestartCount", 0)), 10))
        c.state.update(Restarting=True, Status="restarting")
        await asyncio.sleep(delay)
        async with c.lock:
            c.state["Restarting"] = False
            if c.removed or c.removing or c.running or c.doc.get("ManuallyStopped"):
                if not c.running and not c.removed:
                    c.state["Status"] = "exited"
                return
            c.doc["RestartCount"] = int(c.doc.get("RestartCount", 0)) + 1
            try:
                await self._start_locked(c)
            except BerthError as exc:
                log.warning("restart policy: %s did not start: %s", c.id[:12], exc)
                c.state["Status"] = "exited"
                self._save(c)

    async def recover(self) -> None:
        """After a daemon (re)start: re-attach to running containers, record exits that happened meanwhile.

        A container whose start the daemon did not finish recording (killed between
        creating it and saving "running") is adopted when the runtime runs it, and
        cleaned away when the runtime only created it.
        """
        for entry in os.listdir(self.root):
            if entry not in self._all:  # never committed to the database, or removed while it was being deleted
                directory = os.path.join(self.root, entry)
                bundles.unmount_root(OverlayMount((), "", "", os.path.join(directory, "rootfs")))
                fs.rmtree(directory)
        for runtime in self.runtimes.values():  # removed while the runtime's own clean-up was under way
            for cid in runtime.held():
                if cid not in self._all:
                    await runtime.delete(cid)
        for c in list(self._all.values()):
            if c.removed:
                continue
            if not c.running:
                await self._adopt_or_clean(c)
            if not c.running:
                await self._detach_networks(c)  # it stopped while the daemon was down
            if c.running:
                monitor = int(c.doc.get("MonitorPid") or 0)
                if monitor <= 0 or not proc.pid_alive(monitor):
                    await self._watch(c, monitor)  # it ended while the daemon was down: record it before serving
                else:
                    c.watcher = asyncio.get_running_loop().create_task(self._watch(c, monitor))
                    if self.health is not None:
                        self.health.started(c)  # probing resumes, from "starting" as Docker's restore does
            elif c.doc["HostConfig"].get("AutoRemove") and c.state["Status"] == "exited":
                await self.remove(c.id, force=True)

    async def _adopt_or_clean(self, c: Container) -> None:
        runtime = self.runtime_of(c)
        loaded = await runtime.load(c.id, c.dir)
        if loaded is None:
            return  # never handed to a monitor, or its exit is already known
        if loaded.status in ("running", "paused"):
            c.state.update(Status="running", Running=True, Paused=loaded.status == "paused", Pid=loaded.pid,
                           StartedAt=timefmt.now(), FinishedAt=timefmt.ZERO, ExitCode=0, Error="")
            c.doc["MonitorPid"] = loaded.monitor_pid
            self._save(c)
            log.info("adopted %s, started while the daemon was going down", c.id[:12])
            return
        await runtime.delete(c.id)
        if loaded.status == "created":
            bundles.unmount_root(self._overlay(c))

    # signals ------------------------------------------------------------
    async def kill(self, ref: str, signal: str | None) -> None:
        c = self.get(ref)
        sig = validate.parse_signal(signal, _signal.SIGKILL)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        c.doc["ManuallyStopped"] = True
        exits = c.exits
        await self.runtime_of(c).kill(c.id, sig)
        self._event(c, "kill", signal=str(sig))
        if c.state["Paused"] and sig == _signal.SIGKILL:
            await self._resume_quietly(c)
        if sig == _signal.SIGKILL:  # as Docker: answered once the exit is recorded (inspect shows 137, rm works)
            await self._wait_exit(c, exits, KILL_WAIT)

    async def stop(self, ref: str, timeout: int | None, signal: str | None) -> None:
        c = self.get(ref)
        async with c.lock:
            if not c.running:
                if c.state.get("Restarting"):  # waiting to be restarted by its policy: cancel that
                    c.doc["ManuallyStopped"] = True
                    self._save(c)
                    return
                raise NotModified(f"container {c.id} is already stopped")
            await self._stop_locked(c, timeout, signal)

    async def _stop_locked(self, c: Container, timeout: int | None, signal: str | None) -> None:
        c.doc["ManuallyStopped"] = not c.restarting
        cfg = c.doc["Config"]
        sig = validate.parse_signal(signal or cfg.get("StopSignal"), _signal.SIGTERM)
        if timeout is None:
            timeout = cfg.get("StopTimeout")
        if timeout is None:
            timeout = 10
        runtime = self.runtime_of(c)
        exits = c.exits
        try:
            await runtime.kill(c.id, sig)
            if c.state["Paused"]:
                await self._resume_quietly(c)
            self._event(c, "kill", signal=str(sig))
        except Conflict:
            pass
        if timeout < 0 or not await self._wait_exit(c, exits, timeout):
            try:
                await runtime.kill(c.id, _signal.SIGKILL)
                self._event(c, "kill", signal=str(int(_signal.SIGKILL)))
            except Conflict:
                pass
            await self._wait_exit(c, exits, None)
        self._event(c, "stop")

    async def _resume_quietly(self, c: Container) -> None:
        try:
            await self.runtime_of(c).resume(c.id)
        except BerthError:
            pass
        c.state.update(Paused=False, Status="running" if c.running else c.state["Status"])

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
        c = self.get(ref)
        async with c.lock:
            c.restarting = True
            try:
                if c.running:
                    await self._stop_locked(c, timeout, signal)
                await self._start_locked(c)
            finally:
                c.restarting = False
        self._event(c, "restart")

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state["Paused"]:
            raise Conflict(f"Container {c.id} is already paused")
        await self.runtime_of(c).pause(c.id)
        c.state.update(Paused=True, Status="paused")
        self._save(c)
        self._event(c, "pause")

    @contextlib.asynccontextmanager
    async def held_still(self, ref: str, pause: bool = True) -> AsyncIterator[Container]:
        """The container paused for the time of the block (commit) when it runs and *pause* is asked.

        One that is not running, or that exits at that moment (the runtime's pause then fails), needs
        no pause: the block runs anyway, as Docker commits a stopped container.
        """
        c = self.get(ref)
        paused = False
        if pause and c.running and not c.state["Paused"]:
            try:
                await self.pause(c.id)
                paused = True
            except BerthError:
                if c.running and await self.runtime_of(c).status(c.id) in ("running", "paused"):
                    raise  # it still runs: the pause failed for another reason
        try:
            yield c
        finally:
            if paused and c.running and c.state["Paused"]:
                try:
                    await self.unpause(c.id)
                except BerthError:
                    if c.running:
                        raise

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if not c.state["Paused"]:
            raise Conflict(f"Container {c.id} is not paused")
        await self.runtime_of(c).resume(c.id)
        c.state.update(Paused=False, Status="running")
        self._save(c)
        self._event(c, "unpause")

    # wait / remove ------------------------------------------------------
    async def wait(self, ref: str, condition: str) -> dict[str, Any]:
        c = self.get(ref)
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
        error = (c.state.get("Error") or None) if c.state["Status"] == "exited" else None
        return {"StatusCode": c.state["ExitCode"], "Error": {"Message": error} if error else None}

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        # between two runs of its restart policy (waiting, or being started again): as Docker, refused
        if not force and not c.running and (c.state.get("Restarting") or c.state.get("Status") == "restarting"):
            raise Conflict(f"You cannot remove a restarting container {c.id}. Stop the container before "
                           "attempting removal or force remove")
        if c.running:
            if not force:
                state = "paused" if c.state["Paused"] else "running"
                procedure = "Unpause and then stop" if state == "paused" else "Stop"
                raise Conflict(f"You cannot remove a {state} container {c.id}. {procedure} the container before "
                               "attempting removal or force remove")
            exits = c.exits
            try:
                await self.runtime_of(c).kill(c.id, _signal.SIGKILL)
            except Conflict:
                pass
            if c.state["Paused"]:
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
        if self.health is not None:
            self.health.stopped(c)
        if c.running:  # the kill did not take within its wait: make the runtime let go
            await self.runtime_of(c).delete(c.id)
        # Otherwise no runtime delete here: _exited (or a failed start) already did it.
        try:
            bundles.unmount_root(self._overlay(c))
        except (BerthError, NotFound):
            pass
        self._db.delete_container(c.id)
        self._all.pop(c.id, None)
        # The directory goes beside the answer, not before it (an upper dir may hold much, nested however
        # deep): nothing refers to it any more, and a daemon killed first sweeps it at recovery.
        self._keep(asyncio.get_running_loop().create_task(fs.remove_tree(c.dir)))
        if volumes or c.doc["HostConfig"].get("AutoRemove"):  # docker rm -v, and --rm containers
            self.volumes.remove_anonymous(c.doc)
        c.removed = True
        self._event(c, "destroy")
        await c.notify()

    async def update(self, ref: str, body: Any) -> dict[str, Any]:
        """Change a container's limits (and restart policy), live when it runs."""
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object (UpdateConfig)")
        allowed = {"Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit",
                   "RestartPolicy", "OomKillDisable"}
        changes = {k: v for k, v in body.items() if k in allowed and v not in (None, 0) or k == "RestartPolicy"}
        validate.check_config({"HostConfig": changes})
        host = dict(c.doc["HostConfig"]) | changes
        if changes.get("NanoCpus"):
            host["CpuQuota"] = host["CpuPeriod"] = 0
        elif changes.get("CpuQuota") or changes.get("CpuPeriod"):
            host["NanoCpus"] = 0
        limits = runtime_spec.limits(bundles.resources_of(host, self._host_facts))
        if c.running:
            await self.runtime_of(c).update(c.id, limits)
        c.doc["HostConfig"] = host
        self._save(c)
        self._event(c, "update")
        return {"Warnings": []}

    def event(self, c: Container, action: str, **attributes: str) -> None:
        """Publish a container event (for services built on containers: exec)."""
        self._event(c, action, **attributes)

    def save(self, c: Container) -> None:
        """Write *c*'s record (for services built on containers: health)."""
        self._save(c)

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        """Remove every stopped container matching *filters* (label, label!, until)."""
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = min((timefmt.parse_since(v) for v in filters.get("until", [])), default=0)
        deleted, reclaimed = [], 0
        for c in list(self._all.values()):
            if c.running or c.state["Paused"]:
                continue
            labels = c.doc["Config"].get("Labels") or {}
            if not all(label_matches(labels, v) for v in filters.get("label", [])):
                continue
            if any(label_matches(labels, v) for v in filters.get("label!", [])):
                continue
            if until and timefmt.parse_ns(c.doc["Created"]) > until:
                continue
            reclaimed += fs.disk_usage(os.path.join(c.dir, "upper"))
            await self.remove(c.id)
            deleted.append(c.id)
        self._events.publish("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # other --------------------------------------------------------------
    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new = validate.check_name(new_name)
        if any(o.name == new and o is not c for o in self._all.values()):
            raise AlreadyExists(f'Error when allocating new name: Conflict. The container name "/{new}" is already '
                                "in use. You have to remove (or rename) that container to be able to reuse that name.")
        old = c.name
        c.doc["Name"] = "/" + new
        self._save(c)
        self._event(c, "rename", oldName="/" + old)

    async def top(self, ref: str, ps_args: str) -> dict[str, Any]:
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        titles, rows = await self.runtime_of(c).top(c.id, ps_args.split() if ps_args else [])
        return {"Titles": titles, "Processes": rows}

    def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.running:
            if c.state["Status"] == "created":
                c.doc["PendingSize"] = [height, width]
                return
            raise Conflict(f"Container {c.id} is not running")
        try:
            self.runtime_of(c).resize(c.dir, height, width)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FailedPrecondition(f"resize: {exc}") from exc


def _merge_image_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's defaults (as Docker merges them)."""
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    for key in ("Cmd", "Entrypoint"):
        if isinstance(cfg.get(key), str):
            cfg[key] = [cfg[key]] if key == "Entrypoint" else ["/bin/sh", "-c", cfg[key]]
    if cfg.get("Entrypoint") is None:  # null or absent: the image's (only [""] clears it, as in Docker)
        cfg["Entrypoint"] = image.get("Entrypoint")
    if cfg.get("Entrypoint") == [""]:
        cfg["Entrypoint"] = None
    if not cfg.get("Cmd") and not body.get("Entrypoint"):
        cfg["Cmd"] = image.get("Cmd")
    env = list(image.get("Env") or [])
    for e in cfg.get("Env") or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    cfg["Env"] = env
    for key in ("WorkingDir", "User", "StopSignal", "Shell"):
        if not cfg.get(key) and image.get(key):
            cfg[key] = image[key]
    labels = dict(image.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    cfg.setdefault("Hostname", "")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        cfg[key] = bool(cfg.get(key))
    for key in ("Domainname", "User", "WorkingDir"):
        cfg.setdefault(key, "")
    cfg.setdefault("Volumes", None)
    cfg.setdefault("OnBuild", None)
    return cfg


def _should_restart(doc: dict[str, Any], code: int) -> bool:
    policy = doc["HostConfig"].get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if doc.get("ManuallyStopped") or name == "no":
        return False
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return code != 0 and (limit == 0 or int(doc.get("RestartCount", 0)) < limit)
    return name in ("always", "unless-stopped")



def label_matches(labels: dict[str, str], spec: str) -> bool:
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)


