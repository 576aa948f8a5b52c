"""Volumes: named and anonymous volumes of the local driver, and the mounts containers ask for.

Strategy: a volume is a directory <root>/volumes/<name>/_data (Docker's
layout) plus a record in the metadata database (`VolumeRecord`: name, labels,
driver options, creation time; stored as the JSON document older daemons
wrote). The local driver's options (type, device, o) name a file
system that is mounted on _data, with mount(8), while a running container
uses the volume, and unmounted when the last one stops.

A container's mounts are decided once, at create, from four sources in
Docker's order -- VolumesFrom, then Binds (-v), then Mounts (--mount), then
Config.Volumes (the image's VOLUMEs and `-v /path`) for destinations still
free -- and recorded in its record as `Mount`s (wire.mountspec: the API's
MountPoint plus what berth needs to mount it). Named volumes are created on
first use, anonymous ones get a random 64-hex name and the
com.docker.volume.anonymous label. At start, each volume is mounted if its
options say so and, the first time, filled from the image's content at the
destination when it is empty (as Docker copies it: owners, modes, xattrs,
links kept). Whether a volume is in use is read from the container records,
never kept apart, so it cannot drift.

The parsing of -v, --mount and --volumes-from specs is pure and lives in
berth.wire.mountspec, with Docker's wording for every refusal. This service
returns typed values; api.views.volumes renders Docker's JSON from them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from berth import timefmt
from berth.errors import (
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from berth.host import crashpoint, fs, proc
from berth.host import mount as host_mount
from berth.metadata.db import Database
from berth.services import containerview
from berth.services.events import Events
from berth.wire.mountspec import (
    ANONYMOUS_LABEL,
    DEFAULT_PROPAGATION,
    DRIVER,
    Mount,
    MountRequest,
    MountSpec,
    check_driver_options,
    check_volume_name,
    inherit,
    matches,
    mount_argv,
    mount_error,
    plan,
    propagation_refusal,
    prunable,
)

log = logging.getLogger(__name__)

ContainerList = Callable[[], Iterable[tuple[str, Sequence[Mount], bool]]]  # (id, mounts, running)


@dataclass(frozen=True, slots=True)
class VolumeRecord:
    """A volume as the database keeps it: Docker's Volume, less its usage (api.views.volumes shows it)."""

    name: str
    mountpoint: str                  # its _data directory
    created_at: str                  # RFC 3339, seconds
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # the local driver's type, device, o
    driver: str = DRIVER
    scope: str = "local"

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


@dataclass(frozen=True, slots=True)
class VolumeCreateRequest:
    """`docker volume create` (VolumeCreateOptions): no name makes an anonymous volume."""

    name: str = ""
    driver: str = ""
    options: dict[str, str] = field(default_factory=dict)  # DriverOpts
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VolumeUsage:
    """A volume with what `docker system df -v` adds: its size in bytes and how many containers use it."""

    volume: VolumeRecord
    size: int
    ref_count: int


@dataclass(frozen=True, slots=True)
class VolumePruneReport:
    deleted: tuple[str, ...]
    reclaimed: int  # bytes


TRASH_PREFIX = ".gone-"  # a removed volume's directory while it is being deleted (never a volume name: no dot first)


def _stored(v: VolumeRecord) -> dict[str, Any]:
    """The database's JSON document of a volume (the form older daemons wrote and read)."""
    return {"CreatedAt": v.created_at, "Driver": v.driver, "Labels": v.labels, "Mountpoint": v.mountpoint,
            "Name": v.name, "Options": v.options, "Scope": v.scope}


def _loaded(name: str, doc: dict[str, Any]) -> VolumeRecord:
    return VolumeRecord(
        name=str(doc.get("Name") or name), mountpoint=str(doc.get("Mountpoint") or ""),
        created_at=str(doc.get("CreatedAt") or ""), labels=_strings(doc.get("Labels")),
        options=_strings(doc.get("Options")), driver=str(doc.get("Driver") or DRIVER),
        scope=str(doc.get("Scope") or "local"))


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class Volumes:
    def __init__(self, root: str, db: Database, events: Events, containers: ContainerList) -> None:
        self.root = os.path.join(root, "volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._db, self._events, self._containers = db, events, containers
        # Containers between prepare() and release(), by volume: with the running ones from the
        # records (which survive a daemon restart), they are who keeps a volume's file system mounted.
        self._holders: dict[str, set[str]] = {}
        self._mounting = asyncio.Lock()

    # records ------------------------------------------------------------
    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _find(self, name: str) -> VolumeRecord | None:
        doc = self._db.get_volume(name) if name else None
        return None if doc is None else _loaded(name, doc)

    def _records(self) -> list[VolumeRecord]:
        return [_loaded(name, doc) for name, doc in self._db.volumes()]

    def get(self, name: str) -> VolumeRecord:
        """The volume's record.

        Raises:
            NotFound: "get <name>: no such volume".
        """
        volume = self._find(name)
        if volume is None:
            raise NotFound(f"get {name}: no such volume")
        return volume

    def create(self, request: VolumeCreateRequest) -> VolumeRecord:
        """Create a volume (or return the one of that name, as Docker does)."""
        if (request.driver or DRIVER) != DRIVER:
            raise NotFound(f'error looking up volume plugin {request.driver}: plugin "{request.driver}" not found '
                           "(berth has the local driver only)")
        name, options, labels = request.name, dict(request.options), dict(request.labels)
        check_driver_options(options)
        if name:
            check_volume_name(name)
            existing = self._find(name)
            if existing is not None:
                return existing
        else:  # no name: anonymous, as Docker labels it (so `volume prune` removes it once unused)
            name = secrets.token_hex(32)
            labels.setdefault(ANONYMOUS_LABEL, "")
        if os.path.lexists(self._dir(name)):  # left by a removal a crash cut short: never handed out again
            self._discard(name)
        os.makedirs(self._dir(name), mode=0o701, exist_ok=True)
        os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
        volume = VolumeRecord(name, self.mountpoint(name), timefmt.now().split(".")[0] + "Z", labels, options)
        self._db.put_volume(name, _stored(volume))
        self._events.publish("volume", "create", name, {"driver": DRIVER})
        return volume

    def users(self, name: str) -> list[str]:
        """The ids of the containers (in any state) that mount volume *name*."""
        return [cid for cid, binds, _ in self._containers() if _mounts_volume(binds, name)]

    def _running_users(self, name: str, but: str = "") -> list[str]:
        return [cid for cid, binds, running in self._containers()
                if running and cid != but and _mounts_volume(binds, name)]

    def listing(self, filters: dict[str, list[str]]) -> list[VolumeRecord]:
        """The volumes that pass `docker volume ls` *filters*, by name."""
        used = self._used_names()
        out = [v for v in self._records() if matches(v.name, v.driver, v.labels, v.name in used, filters)]
        return sorted(out, key=lambda v: v.name)

    def _used_names(self) -> set[str]:
        return {m.name for _, binds, _ in self._containers() for m in binds if m.type == "volume"}

    def usage(self) -> list[VolumeUsage]:
        """Every volume with its size and the number of containers using it, as `docker system df -v` shows."""
        counts: dict[str, int] = {}
        for _, binds, _ in self._containers():
            for name in {m.name for m in binds if m.type == "volume"}:
                counts[name] = counts.get(name, 0) + 1
        return [VolumeUsage(v, fs.disk_usage(v.mountpoint), counts.get(v.name, 0)) for v in self._records()]

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume no container uses (force: a missing one is not an error).

        Raises:
            NotFound: no such volume.  Conflict: containers use it ("volume is in use - [ids]").
        """
        try:
            self.get(name)
        except NotFound:
            if force:
                return
            raise
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._delete(name)

    def _delete(self, name: str) -> None:
        self._unmount(name)
        left = host_mount.mounts_under(self._dir(name))
        if left:  # never delete through a mount: it would empty what is mounted there (a bind's source)
            raise FailedPrecondition(f"remove {name}: {', '.join(left)} is still mounted; unmount it and try again")
        self._db.delete_volume(name)
        crashpoint.reached("volume:after-record")
        self._discard(name)
        self._events.publish("volume", "destroy", name, {"driver": DRIVER})

    def _discard(self, name: str) -> None:
        """Take the directory of volume *name* out of the way at once (a rename; the name is free again) and
        delete it beside the answer, in a thread. The record goes first: a daemon killed before the rename
        or the deletion leaves a directory with no record, which `sweep` removes at the next start."""
        trash = os.path.join(self.root, f"{TRASH_PREFIX}{secrets.token_hex(8)}")
        try:
            os.rename(self._dir(name), trash)
        except FileNotFoundError:
            return  # already gone (removed by hand): the record was all there was
        try:
            asyncio.get_running_loop().run_in_executor(None, fs.rmtree, trash)
        except RuntimeError:  # no event loop (a tool, a test): here and now
            fs.rmtree(trash)

    def sweep(self) -> list[tuple[str, str]]:
        """At start: delete what a removal the last daemon did not finish left (no record, or taken out of
        the way); a directory with something still mounted below stays, and is reported. Blocking: run
        it in a thread. Returns (subject, what was done) for the recovery report."""
        known = {name for name, _ in self._db.volumes()}
        found = []
        for entry in os.listdir(self.root):
            if entry in known:
                continue
            path = os.path.join(self.root, entry)
            subject = f"volume directory {entry[:40]}"
            if host_mount.mounts_under(path):
                found.append((subject, "no volume record, but something is mounted below it: left in place"))
                continue
            fs.rmtree(path)
            if not entry.startswith(TRASH_PREFIX):
                found.append((subject, "no volume record (a removal cut short): removed"))
        return found

    def prune(self, filters: dict[str, list[str]]) -> VolumePruneReport:
        """Remove the unused volumes *filters* select (`docker volume prune`)."""
        used = self._used_names()
        deleted, reclaimed = [], 0
        for volume in self._records():
            if volume.name in used or not prunable(volume.labels, filters):
                continue
            size = fs.disk_usage(volume.mountpoint)
            try:
                self._delete(volume.name)
            except BerthError as exc:
                log.warning("prune: volume %s stays: %s", volume.name, exc)
                continue
            deleted.append(volume.name)
            reclaimed += size
        self._events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return VolumePruneReport(tuple(deleted), reclaimed)

    # containers ---------------------------------------------------------
    def container_mounts(self, cid: str, request: MountRequest,
                         mounts_of: Callable[[str], Sequence[Mount]]) -> list[Mount]:
        """The mounts of a container being created; creates the volumes they name.

        Args:
            cid: the new container's id (volumes created for it say so in the log).
            request: what its HostConfig and Config.Volumes ask for (mountspec.mount_request).
            mounts_of: another container's mounts, by name or id (raises NotFound).
        Raises:
            InvalidArgument: a malformed spec, a duplicate destination, a --mount bind
                source that does not exist.
        """
        inherited: list[MountSpec] = []
        for ref, mode in request.volumes_from:
            inherited += inherit(mounts_of(ref), mode)
        specs = plan(request.binds, request.mounts, request.config_volumes, request.tmpfs, inherited)
        for spec in specs:
            if spec.type == "bind" and spec.must_exist and not os.path.lexists(spec.source):
                raise mount_error("bind", f"bind source path does not exist: {spec.source}")
        mounts = []
        for spec in specs:
            mounts.append(self._mount_of(spec))
            if spec.type == "volume" and not spec.source:
                log.info("anonymous volume %s for container %s", mounts[-1].name[:12], cid[:12])
        return mounts

    def _mount_of(self, spec: MountSpec) -> Mount:
        if spec.type == "bind":
            propagation = spec.propagation or DEFAULT_PROPAGATION
            return Mount("bind", spec.destination, spec.source, mode=spec.mode, rw=not spec.readonly,
                         propagation=propagation, options=(propagation,), create_source=not spec.must_exist)
        if spec.type == "tmpfs":
            return Mount("tmpfs", spec.destination, rw=not spec.readonly, tmpfs_options=spec.tmpfs_options)
        labels = dict(spec.labels) if spec.source else {ANONYMOUS_LABEL: "", **dict(spec.labels)}
        volume = self.create(VolumeCreateRequest(spec.source, DRIVER, dict(spec.driver_options), labels))
        return Mount("volume", spec.destination, volume.mountpoint, name=volume.name, driver=DRIVER,
                     mode=spec.mode, rw=not spec.readonly, copy_data=spec.copy_data)

    async def prepare(self, cid: str, binds: list[Mount], rootfs: str) -> None:
        """Before a container starts: mount its volumes' file systems, fill empty volumes from the image.

        A volume is filled at most once per container (its mount's copy_data is then
        cleared in *binds*, the record's list), from what the image (and the container's
        own changes) hold at the destination, when the volume is empty.
        """
        mountinfo: list[str] = []  # /proc/self/mountinfo's text, read when a bind first needs it
        for i, m in enumerate(binds):
            if m.type == "bind":
                _check_propagation(m, mountinfo)
            if m.type != "volume":
                continue
            volume = self.get(m.name)
            data = self.mountpoint(m.name)
            if not os.path.isdir(data):  # removed behind our back: make it again, empty
                os.makedirs(data, mode=0o755, exist_ok=True)
            self._holders.setdefault(m.name, set()).add(cid)
            async with self._mounting:
                await self._mount(volume)
            if m.copy_data:
                # Filled only while no other container runs on it: one that did could race the
                # copy (swap a directory for a symlink), and its volume is in use, not new.
                if not self._running_users(m.name, but=cid):
                    await self._fill(data, rootfs, m.destination)
                binds[i] = replace(m, copy_data=False)
            self._events.publish("volume", "mount", m.name, {
                "container": cid, "destination": m.destination, "driver": DRIVER,
                "propagation": m.propagation, "read/write": str(m.rw).lower()})

    def release(self, cid: str, binds: Iterable[Mount]) -> None:
        """After a container stopped: unmount the file systems of its volumes no other running container uses."""
        for m in binds:
            if m.type != "volume":
                continue
            self._events.publish("volume", "unmount", m.name, {"container": cid, "driver": DRIVER})
            holders = self._holders.get(m.name, set())
            holders.discard(cid)
            if not holders and not self._running_users(m.name, but=cid):
                try:
                    self._unmount(m.name)
                except BerthError as exc:
                    log.warning("volume %s stays mounted: %s", m.name, exc)

    def remove_anonymous(self, binds: Iterable[Mount]) -> None:
        """`docker rm -v`: remove the container's anonymous volumes that no other container uses."""
        for m in binds:
            if m.type != "volume":
                continue
            volume = self._find(m.name)
            if volume is None or not volume.anonymous or self.users(m.name):
                continue
            try:
                self._delete(m.name)
            except BerthError as exc:
                log.warning("rm -v: volume %s stays: %s", m.name, exc)

    async def _mount(self, volume: VolumeRecord) -> None:
        data = self.mountpoint(volume.name)
        if not volume.options.get("device") or data in host_mount.mounts_under(data):
            return
        await proc.run(mount_argv(volume.options, data), timeout=60)

    def _unmount(self, name: str) -> None:
        """Unmount the volume's file system (every layer of it: a mount may have been stacked)."""
        data = self.mountpoint(name)
        for _ in range(8):
            if data not in host_mount.mounts_under(data):
                return
            host_mount.unmount(data)
        raise FailedPrecondition(f"cannot unmount {data}: it is still mounted after 8 attempts")

    async def _fill(self, data: str, rootfs: str, destination: str) -> None:
        try:
            found = containerview.locate(containerview.View(rootfs), destination, follow_last=True)
        except (NotFound, InvalidArgument):
            return  # nothing in the image there
        with found:
            if not stat.S_ISDIR(found.st.st_mode) or os.listdir(data):
                return
            source = f"/proc/self/fd/{found.fd}"
            if os.listdir(source):
                await proc.run(["cp", "-a", "--", source + "/.", data + "/"], pass_fds=[found.fd], timeout=3600)
            os.chown(data, found.st.st_uid, found.st.st_gid)
            os.chmod(data, stat.S_IMODE(found.st.st_mode))


def _mounts_volume(binds: Iterable[Mount], name: str) -> bool:
    return any(m.type == "volume" and m.name == name for m in binds)


def _check_propagation(m: Mount, mountinfo: list[str]) -> None:
    """Refuse a shared or slave bind whose source is not on a mount that allows it (as Docker does at start).

    *mountinfo* holds /proc/self/mountinfo's text once read (read here the first time it is needed).
    """
    if m.propagation.lstrip("r") not in ("shared", "slave"):
        return
    if not mountinfo:
        with open("/proc/self/mountinfo") as f:
            mountinfo.append(f.read())
    why = propagation_refusal(mountinfo[0], os.path.realpath(m.source), m.propagation)
    if why:
        raise FailedPrecondition(f"{why}: make it one (mount --make-rshared), or use another propagation")
