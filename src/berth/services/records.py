"""The container records the engine keeps in memory, and the table that holds them.

Strategy: a container's record is typed (`ContainerRecord`, with its `ContainerState`, and its
Config and HostConfig as berth.wire.containerspec types them); Docker's JSON shape exists only where
it leaves the engine: services.containerrows for the database row (the same JSON older daemons
wrote) and api.views.containers for the API. What the run plan
decided at create (isolation, runtime, network mode) is read from the record's properties, never
worked out again. One `Container` per container (the record plus the in-memory coordination:
locks, conditions, the watcher), made at start and kept for the daemon's life; the `ContainerTable` is built first by the composition root and handed to every
service that reads containers (images ask who uses an image, networks which containers are
attached, volumes which are mounted), while `Containers` alone changes it. No service needs
another service to find a container.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from berth import timefmt
from berth.errors import InvalidArgument, NotFound
from berth.network.endpoint import Endpoint, EndpointSettings
from berth.network.portplan import PortBinding
from berth.runtime.task import Task
from berth.services.healthrules import HealthState
from berth.wire.containerspec import ContainerConfig, HostConfig
from berth.wire.mountspec import Mount


@dataclass(slots=True)
class ContainerState:
    """Where a container is in its life: Docker's State, typed. `health` is State.Health (services.health)."""

    status: str = "created"  # created, running, paused, restarting, exited (the stored word; see `word`)
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = timefmt.ZERO
    finished_at: str = timefmt.ZERO
    health: HealthState | None = None


    @property
    def word(self) -> str:
        """The status as the API shows it: a running container is "running" or "paused"."""
        if self.running:
            return "paused" if self.paused else "running"
        return self.status

    def mark_running(self, pid: int) -> None:
        """Started (or found running after a daemon restart): the last run's exit is no longer shown."""
        self.status, self.running, self.paused, self.restarting = "running", True, False, False
        self.oom_killed = self.dead = False
        self.pid, self.exit_code, self.error = pid, 0, ""
        self.started_at, self.finished_at = timefmt.now(), timefmt.ZERO

    def mark_exited(self, code: int, oom_killed: bool, error: str) -> None:
        self.status, self.running, self.paused, self.pid = "exited", False, False, 0
        self.exit_code, self.oom_killed, self.error = code, oom_killed, error
        self.finished_at = timefmt.now()


@dataclass(slots=True)
class ContainerRecord:
    """One container as the engine keeps it: what was asked (config, host), what it is on, and its state.

    `config` and `host` are Docker's Config and HostConfig as settled at create (the
    image's defaults merged in, the run plan's runtime and isolation recorded);
    `binds` the mounts decided then (services.volumes); `endpoints_config` the
    networks it asked for (by name), `endpoints` the ones it is attached to now (by
    network id) and `ports` its published bindings. services.containerrows keeps
    it in the database.
    """

    id: str
    name: str  # without Docker's leading slash
    created: str
    path: str
    args: list[str]
    image: str  # the image id
    config: ContainerConfig
    host: HostConfig
    state: ContainerState = field(default_factory=ContainerState)
    platform: str = "linux"
    binds: list[Mount] = field(default_factory=list)
    endpoints_config: dict[str, EndpointSettings] = field(default_factory=dict)
    endpoints_listed: bool = True  # False: a record from before networks were listed at create
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    ports: list[PortBinding] = field(default_factory=list)
    monitor_pid: int = 0
    restart_count: int = 0
    manually_stopped: bool = False  # stopped by a user: no restart policy brings it back
    pending_size: list[int] | None = None  # a TTY size asked for before the start
    # A pause or unpause under way, written before the runtime is asked: "pause", "unpause", or "commit"
    # (a commit holds the container paused); recovery compares it with the runtime (services.reconcile).
    pause_intent: str = ""
    build_step: bool = False  # a build's RUN-step container that its build removes: recovery removes it
    extra: dict[str, Any] = field(default_factory=dict)  # stored fields this version does not know, kept


    # What the run plan decided at create, as recorded (never derived again from the request).
    @property
    def vm(self) -> bool:
        """VM isolation (`--isolation vm|hyperv`): the container runs in its own utility VM."""
        return self.host.vm

    @property
    def runtime(self) -> str:
        """The OCI runtime named at create ("" for records that named none: the daemon's default)."""
        return self.host.runtime

    @property
    def network_mode(self) -> str:
        return self.host.network_mode or "default"

    @property
    def auto_remove(self) -> bool:
        return self.host.auto_remove

    @property
    def tty(self) -> bool:
        return self.config.tty

    @property
    def hostname(self) -> str:
        """The container's host name: its Config's, else its short id (as Docker names it)."""
        return self.config.hostname or self.id[:12]


class Container:
    """The live view of one container: its record plus in-memory coordination."""

    def __init__(self, record: ContainerRecord, directory: str) -> None:
        self.record = record
        self.dir = directory
        self.changed = asyncio.Condition()
        self.exits = 0            # incremented at every exit, for next-exit waiters
        self.removed = False
        self.removing = False
        self.watcher: asyncio.Task[None] | None = None
        self.release: asyncio.Task[None] | None = None  # the runtime letting go after an exit, still under way
        self.pending_attach: list[Callable[[bool], None]] = []  # attachers waiting for start
        self.lock = asyncio.Lock()   # serialises start/stop/remove
        self.restarting = False
        self.task: Task | None = None  # its driver's handle (Containers.task_of makes it)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> ContainerState:
        return self.record.state

    @property
    def config(self) -> ContainerConfig:
        return self.record.config

    @property
    def host(self) -> HostConfig:
        return self.record.host

    @property
    def running(self) -> bool:
        return self.state.running

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


class ContainerTable:
    """Every container the daemon knows, by id; the lookups the API's references need."""

    def __init__(self, by_id: dict[str, Container]) -> None:
        self.by_id = by_id

    @classmethod
    def load(cls, records: Iterable[ContainerRecord], containers_dir: str) -> ContainerTable:
        return cls({r.id: Container(r, os.path.join(containers_dir, r.id)) for r in records})

    def get(self, ref: str) -> Container:
        """By full id, name, or unique id prefix.

        Raises:
            NotFound: "No such container: <ref>".
            InvalidArgument: the prefix names more than one.
        """
        if ref in self.by_id:
            return self.by_id[ref]
        name = ref.lstrip("/")
        for c in self.by_id.values():
            if c.name == name:
                return c
        matches = [c for cid, c in self.by_id.items() if ref and cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def all(self) -> list[Container]:
        return list(self.by_id.values())

    def using_image(self, image_id: str) -> list[str]:
        return [c.id for c in self.by_id.values() if c.record.image == image_id]

    def mounts(self) -> list[tuple[str, list[Mount], bool]]:
        """(id, mounts, running) of each container, for the volume service's in-use checks."""
        return [(c.id, c.record.binds, c.running) for c in self.by_id.values()]
