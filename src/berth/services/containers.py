"""Containers: the records side: look up, create, rename, update, and the container's files.

Strategy: a container is a JSON record in the metadata database (Docker's
Config/HostConfig/State shapes) plus a directory <root>/containers/<id>
that is its OCI bundle (config.json, rootfs overlay mount, conmon's files).
`create` decides how the container runs once (services.runplan) and shapes
its record with the pure functions of services.containerconfig. Running it,
stopping it and removing it are services.lifecycle's; finding running
containers again after a daemon restart is services.recovery's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from berth.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotImplemented_,
)
from berth.host import binfmt, fs, mount
from berth.oci import platform as platforms
from berth.oci import runtime_spec
from berth.runtime.base import Runtime
from berth.runtime.task import Task
from berth.services import bundle as bundles
from berth.services import containerconfig, healthrules, hostlimits, runplan, validate
from berth.services import links as legacy_links
from berth.services.attachments import Attachments
from berth.services.containerconfig import CreateRequest, ResourceUpdate
from berth.services.containerrows import ContainerRows
from berth.services.endpoints import EndpointSettings
from berth.services.events import Events
from berth.services.images import Images
from berth.services.networks import Networks
from berth.services.records import Container, ContainerTable
from berth.services.volumes import Volumes
from berth.snapshot.overlay import OverlayMount, Snapshots
from berth.wire import mountspec
from berth.wire.containerspec import replace


class Containers:
    def __init__(self, root: str, rows: ContainerRows, images: Images, snaps: Snapshots, events: Events,
                 runtimes: dict[str, Runtime], default_runtime: str, host_facts: bundles.HostFacts, *,
                 table: ContainerTable, volumes: Volumes, networks: Networks,
                 attachments: Attachments) -> None:
        self.root = os.path.join(root, "containers")
        os.makedirs(self.root, exist_ok=True)
        self._rows, self.images, self._snaps, self._events = rows, images, snaps, events
        self.runtimes, self.default_runtime = runtimes, default_runtime
        self.host_facts = host_facts
        self.table = table
        self._all = table.by_id  # the live records, shared with the services that read them
        self.volumes = volumes
        self.networks = networks
        self.attachments = attachments

    # lookup -------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix (see ContainerTable.get)."""
        return self.table.get(ref)

    def all(self) -> list[Container]:
        return self.table.all()

    def using_image(self, image_id: str) -> list[str]:
        return self.table.using_image(image_id)

    def _driver_of(self, c: Container) -> Runtime:
        if c.record.vm:
            return self.runtimes["vm"]
        return self.runtimes[c.record.runtime or self.default_runtime]

    def task_of(self, c: Container) -> Task:
        """*c*'s handle on its driver (made once, from the record: after a restart it knows the monitor)."""
        if c.task is None:
            c.task = Task(self._driver_of(c), c.id, c.dir, monitor_pid=c.record.monitor_pid, pid=c.state.pid)
        return c.task

    def save(self, c: Container) -> None:
        """Write *c*'s record to the database."""
        self._rows.update(c.record)

    def event(self, c: Container, action: str, **extra: str) -> None:
        """Publish a container event: the image, the name and the container's labels as attributes."""
        attrs = {"image": c.config.image, "name": c.name}
        attrs.update(c.config.labels)
        attrs.update(extra)
        self._events.publish("container", action, c.id, attrs)

    def committed(self, c: Container, image_id: str, image_ref: str, comment: str) -> None:
        """Docker's `commit` event: on the container, naming the new image (imageRef: its tag, or "")."""
        self.event(c, "commit", comment=comment, imageID=image_id, imageRef=image_ref)

    def keep(self, ref: str) -> None:
        """A build's RUN-step container the build leaves for the user: recovery no longer removes it."""
        c = self.get(ref)
        if c.record.build_step:
            c.record.build_step = False
            self.save(c)

    def forget(self, c: Container) -> None:
        """Drop *c*'s record (its removal; the directory is the caller's)."""
        self._rows.delete(c.id)
        self._all.pop(c.id, None)

    # create -------------------------------------------------------------
    def create(self, name: str, request: CreateRequest, platform: str = "",
               build_step: bool = False) -> tuple[str, list[str]]:
        """A new container from a parsed create request (checked by validate.check_config first, in api/).
        *build_step*: a build's RUN step that the build removes (recorded, so that recovery removes it too)."""
        host = request.host
        if name:
            name = validate.check_name(name)
            for c in self._all.values():
                if c.name == name:
                    raise AlreadyExists(
                        f'Conflict. The container name "/{name}" is already in use by container "{c.id}". '
                        "You have to remove (or rename) that container to be able to reuse that name.")
        else:
            name = containerconfig.generate_name({c.name for c in self._all.values()})
        image_ref = request.config.image
        image_id = self.images.resolve(image_ref, platform)
        image_cfg = self.images.config(image_id)
        image_platform = platforms.of_config(image_cfg.doc)
        native = binfmt.runs_natively(image_platform, platforms.host())
        offer = runplan.HostOffer(frozenset(self.runtimes), self.default_runtime,
                                  (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) >> 20)
        run = runplan.plan(host, image_ref, str(image_platform), native, offer)  # isolation, driver, modes
        if not native:
            binfmt.ensure_emulator(image_platform)  # milliseconds; also done again at each start
        # RestartPolicy (with AutoRemove) is checked by validate.check_config, in Docker's words
        self.networks.check_mode(run.network)
        warnings = hostlimits.check_create(host, run.isolation, run.runtime, run.network, self.host_facts.cgroup)
        planned = self.networks.plan_endpoints(run.network, request.networks)  # checked, by name
        for key, _ in runplan.NAMESPACE_MODES:
            mode = runplan.namespace_mode(host, key)
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])  # NotFound when it names no container
        if host.links:  # legacy links: checked and kept as Docker shows them (services.links)
            host = replace(host, links=legacy_links.at_create(host, name, self.get))
        image_config = image_cfg.runtime
        cfg = containerconfig.merge_image_config(request.config, image_config)
        healthcheck = healthrules.merge(healthrules.Healthcheck.from_doc(cfg.healthcheck),
                                        healthrules.Healthcheck.from_doc(image_config.healthcheck))
        if healthcheck is not None:
            cfg = replace(cfg, healthcheck=dict(healthcheck.to_doc()))
        if not bundles.process_args(cfg):
            raise InvalidArgument("no command specified")
        cid = containerconfig.new_id(self._all)
        binds = self.volumes.container_mounts(cid, mountspec.mount_request(host, (cfg.volumes or {}).keys()),
                                              lambda ref: list(self.get(ref).record.binds))
        if not cfg.hostname and run.network != "host":
            cfg = replace(cfg, hostname=cid[:12])  # as Docker records it
        record = containerconfig.new_record(cid, name, cfg, containerconfig.settled_host_config(host, run), image_id,
                                            image_cfg.os or "linux", binds, planned)
        record.build_step = build_step
        directory = os.path.join(self.root, cid)
        os.makedirs(directory, mode=0o700)  # root only: its upper dir holds what the container made
        os.makedirs(self._snaps.container_mount([], directory).upper)  # empty until a start: diff and commit work
        try:
            self._rows.insert(record)
        except AlreadyExists as exc:
            fs.rmtree(directory)
            raise AlreadyExists(f'Conflict. The container name "/{name}" is already in use. '
                                "You have to remove (or rename) that container to be able to reuse that name.") from exc
        c = Container(record, directory)
        self._all[cid] = c
        self.event(c, "create")
        return cid, warnings

    # the container's files (export, commit) ---------------------------------
    @contextlib.contextmanager
    def root_view(self, ref: str) -> Iterator[str]:
        """The container's root file system, mounted for the time of the block if it is not running."""
        c = self.get(ref)
        overlay = self.overlay(c)
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
        return self.overlay(self.get(ref)).upper

    def overlay(self, c: Container) -> OverlayMount:
        """The overlay mount of *c*'s root: its image's layers under its own upper directory."""
        return self._snaps.container_mount(self.images.chains(c.record.image), c.dir)

    # networks -----------------------------------------------------------
    async def connect(self, net_ref: str, ref: str, cfg: EndpointSettings) -> None:
        """`docker network connect`: join a network (at once when running, else at the next start)."""
        c = self.get(ref)
        async with c.lock:
            if c.record.vm and c.running:
                raise NotImplemented_("a running VM-isolated container cannot join another network (its VM has "
                                      "one network card, fixed at start): stop it, connect, start it")
            await self.attachments.connect(net_ref, c, cfg)
            self.save(c)

    async def disconnect(self, net_ref: str, ref: str, force: bool = False) -> None:
        c = self.get(ref)
        async with c.lock:
            await self.attachments.disconnect(net_ref, c)
            self.save(c)

    # other --------------------------------------------------------------
    async def update(self, ref: str, update: ResourceUpdate) -> list[str]:
        """Change a container's limits (and restart policy), live when it runs; Docker's Warnings."""
        c = self.get(ref)
        host = containerconfig.updated_host(c.host, update)
        limits = runtime_spec.limits(bundles.resources_of(host, self.host_facts))
        if c.running:
            await self.task_of(c).update(limits)
        c.record.host = host
        self.save(c)
        self.event(c, "update")
        return hostlimits.update_warnings(update.extra, self.host_facts.cgroup)

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        new = validate.check_name(new_name)
        if any(o.name == new and o is not c for o in self._all.values()):
            raise AlreadyExists(f'Error when allocating new name: Conflict. The container name "/{new}" is already '
                                "in use. You have to remove (or rename) that container to be able to reuse that name.")
        old = c.name
        c.record.name = new
        self.save(c)
        self.event(c, "rename", oldName="/" + old)

    async def top(self, ref: str, ps_args: str) -> tuple[list[str], list[list[str]]]:
        """`docker top`: the column titles and one row per process (ps's output, split)."""
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        return await self.task_of(c).top(ps_args.split() if ps_args else [])

    def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c.running:
            if c.state.status == "created":
                c.record.pending_size = [height, width]
                return
            raise Conflict(f"Container {c.id} is not running")
        try:
            self.task_of(c).resize(height, width)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FailedPrecondition(f"resize: {exc}") from exc
