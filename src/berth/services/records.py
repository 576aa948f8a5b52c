"""The container records the engine keeps in memory, and the table that holds them.

Strategy: a container's record is typed (`ContainerRecord`, with its `ContainerState`); Docker's
JSON shape exists only where it leaves the engine: `to_doc` for the database row (the same JSON
older daemons wrote, read back by `from_doc`) and api.views.containers for the API. What the run plan
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from berth import timefmt
from berth.errors import InvalidArgument, NotFound
from berth.metadata.db import Database
from berth.network.endpoint import Endpoint, EndpointSettings
from berth.network.portplan import PortBinding
from berth.runtime.task import Task
from berth.services.healthrules import HealthState
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

    _FIELDS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("status", "Status"), ("running", "Running"), ("paused", "Paused"), ("restarting", "Restarting"),
        ("oom_killed", "OOMKilled"), ("dead", "Dead"), ("pid", "Pid"), ("exit_code", "ExitCode"),
        ("error", "Error"), ("started_at", "StartedAt"), ("finished_at", "FinishedAt"))

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

    def to_doc(self) -> dict[str, Any]:
        """Docker's State object (the record's stored form, and inspect's)."""
        out: dict[str, Any] = {key: getattr(self, attr) for attr, key in self._FIELDS}
        if self.health is not None:
            out["Health"] = self.health.to_doc()
        return out

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ContainerState:
        state = cls(health=HealthState.from_doc(doc.get("Health")))
        for attr, key in cls._FIELDS:
            if key in doc and doc[key] is not None:
                setattr(state, attr, type(getattr(state, attr))(doc[key]))
        return state


@dataclass(slots=True)
class ContainerRecord:
    """One container as the engine keeps it: what was asked (config, host), what it is on, and its state.

    `config` and `host` are Docker's Config and HostConfig as settled at create (the
    image's defaults merged in, the run plan's runtime and isolation recorded);
    `binds` the mounts decided then (services.volumes); `endpoints_config` the
    networks it asked for (by name), `endpoints` the ones it is attached to now (by
    network id) and `ports` its published bindings. `to_doc`/`from_doc` are the
    stored JSON form, which is also what older daemons wrote.
    """

    id: str
    name: str  # without Docker's leading slash
    created: str
    path: str
    args: list[str]
    image: str  # the image id
    config: dict[str, Any]
    host: dict[str, Any]
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
    extra: dict[str, Any] = field(default_factory=dict)  # stored fields this version does not know, kept

    _KNOWN: ClassVar[frozenset[str]] = frozenset({
        "Id", "Name", "Created", "Path", "Args", "Image", "Config", "HostConfig", "State", "Platform", "Binds",
        "EndpointsConfig", "EndpointsListed", "Endpoints", "Ports", "MonitorPid", "RestartCount",
        "ManuallyStopped", "PendingSize", "ExecIDs"})

    # What the run plan decided at create, as recorded (never derived again from the request).
    @property
    def vm(self) -> bool:
        """VM isolation (`--isolation vm|hyperv`): the container runs in its own utility VM."""
        return self.host.get("Isolation") == "hyperv"

    @property
    def runtime(self) -> str:
        """The OCI runtime named at create ("" for records that named none: the daemon's default)."""
        return str(self.host.get("Runtime") or "")

    @property
    def network_mode(self) -> str:
        return str(self.host.get("NetworkMode") or "default")

    @property
    def auto_remove(self) -> bool:
        return bool(self.host.get("AutoRemove"))

    @property
    def tty(self) -> bool:
        return bool(self.config.get("Tty"))

    @property
    def hostname(self) -> str:
        """The container's host name: its Config's, else its short id (as Docker names it)."""
        return str(self.config.get("Hostname") or self.id[:12])

    def to_doc(self) -> dict[str, Any]:
        """The stored JSON form (Docker's field names)."""
        out: dict[str, Any] = {
            **self.extra, "Id": self.id, "Name": "/" + self.name, "Created": self.created, "Path": self.path,
            "Args": self.args, "Config": self.config, "HostConfig": self.host, "Image": self.image,
            "Binds": [m.to_doc() for m in self.binds], "EndpointsConfig": {k: v.to_doc() for k, v in self.endpoints_config.items()},
            "EndpointsListed": self.endpoints_listed,
            "State": self.state.to_doc(), "MonitorPid": self.monitor_pid, "RestartCount": self.restart_count,
            "Platform": self.platform, "ManuallyStopped": self.manually_stopped,
            "Endpoints": {k: v.to_doc() for k, v in self.endpoints.items()}, "Ports": [b.to_doc() for b in self.ports],
        }
        if self.pending_size is not None:
            out["PendingSize"] = self.pending_size
        return out

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ContainerRecord:
        return cls(
            id=str(doc["Id"]), name=str(doc.get("Name") or "").lstrip("/"), created=str(doc.get("Created") or ""),
            path=str(doc.get("Path") or ""), args=list(doc.get("Args") or []), image=str(doc.get("Image") or ""),
            config=dict(doc.get("Config") or {}), host=dict(doc.get("HostConfig") or {}),
            state=ContainerState.from_doc(doc.get("State") or {}), platform=str(doc.get("Platform") or "linux"),
            binds=[Mount.from_doc(m) for m in doc.get("Binds") or []], endpoints_config={
                k: EndpointSettings.from_doc(v) for k, v in (doc.get("EndpointsConfig") or {}).items()},
            endpoints_listed=bool(doc.get("EndpointsListed")), endpoints={
                k: Endpoint.from_doc(v) for k, v in (doc.get("Endpoints") or {}).items()},
            ports=[PortBinding.from_doc(b) for b in doc.get("Ports") or []], monitor_pid=int(doc.get("MonitorPid") or 0),
            restart_count=int(doc.get("RestartCount") or 0), manually_stopped=bool(doc.get("ManuallyStopped")),
            pending_size=doc.get("PendingSize"),
            extra={k: v for k, v in doc.items() if k not in cls._KNOWN})


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
    def config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def host(self) -> dict[str, Any]:
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
    def load(cls, db: Database, containers_dir: str) -> ContainerTable:
        return cls({cid: Container(ContainerRecord.from_doc(doc), os.path.join(containers_dir, cid))
                    for cid, doc in db.containers()})

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
