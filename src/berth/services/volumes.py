"""Volumes: named and anonymous volumes of the local driver, and the mounts containers ask for.

Strategy: a volume is a directory <root>/volumes/<name>/_data (Docker's
layout) plus a record in the metadata database (name, labels, driver options,
creation time). The local driver's options (type, device, o) name a file
system that is mounted on _data, with mount(8), while a running container
uses the volume, and unmounted when the last one stops.

A container's mounts are decided once, at create, from four sources in
Docker's order -- VolumesFrom, then Binds (-v), then Mounts (--mount), then
Config.Volumes (the image's VOLUMEs and `-v /path`) for destinations still
free -- and recorded in its document as entries of one shape (the API's
MountPoint plus what berth needs to mount it). Named volumes are created on
first use, anonymous ones get a random 64-hex name and the
com.docker.volume.anonymous label. At start, each volume is mounted if its
options say so and, the first time, filled from the image's content at the
destination when it is empty (as Docker copies it: owners, modes, xattrs,
links kept). Whether a volume is in use is read from the container records,
never kept apart, so it cannot drift.

The parsing of -v, --mount and --volumes-from specs is pure and lives in
berth.wire.mountspec, with Docker's wording for every refusal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from typing import Any

from berth import timefmt
from berth.errors import (
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from berth.host import fs, proc
from berth.host import mount as host_mount
from berth.metadata.db import Database
from berth.services import containerview
from berth.services.events import Events
from berth.wire.mountspec import (
    ANONYMOUS_LABEL,
    DEFAULT_PROPAGATION,
    DRIVER,
    MountSpec,
    check_driver_options,
    check_volume_name,
    inherit,
    matches,
    mount_argv,
    mount_error,
    parse_volumes_from,
    plan,
    propagation_refusal,
    prunable,
)

log = logging.getLogger(__name__)

ContainerList = Callable[[], Iterable[tuple[str, list[dict[str, Any]], bool]]]  # (id, mounts, running)

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

    def get(self, name: str) -> dict[str, Any]:
        """The volume's API document (Volume).

        Raises:
            NotFound: "get <name>: no such volume".
        """
        doc = self._db.get_volume(name) if isinstance(name, str) and name else None
        if doc is None:
            raise NotFound(f"get {name}: no such volume")
        return doc

    def create(self, name: str = "", driver: str = "", options: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a volume (or return the one of that name, as Docker does); returns its document."""
        if (driver or DRIVER) != DRIVER:
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found '
                           "(berth has the local driver only)")
        options = dict(options or {})
        labels = dict(labels or {})
        if not all(isinstance(v, str) for v in [*options.values(), *labels.values()]):
            raise InvalidArgument("volume DriverOpts and Labels: values must be strings")
        check_driver_options(options)
        if name:
            check_volume_name(name)
            existing = self._db.get_volume(name)
            if existing is not None:
                return existing
        else:  # no name: anonymous, as Docker labels it (so `volume prune` removes it once unused)
            name = secrets.token_hex(32)
            labels.setdefault(ANONYMOUS_LABEL, "")
        os.makedirs(self._dir(name), mode=0o701, exist_ok=True)
        os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
        doc = {"CreatedAt": timefmt.now().split(".")[0] + "Z", "Driver": DRIVER, "Labels": labels,
               "Mountpoint": self.mountpoint(name), "Name": name, "Options": options, "Scope": "local"}
        self._db.put_volume(name, doc)
        self._events.publish("volume", "create", name, {"driver": DRIVER})
        return doc

    def users(self, name: str) -> list[str]:
        """The ids of the containers (in any state) that mount volume *name*."""
        return [cid for cid, binds, _ in self._containers()
                if any(e.get("Type") == "volume" and e.get("Name") == name for e in binds)]

    def _running_users(self, name: str, but: str = "") -> list[str]:
        return [cid for cid, binds, running in self._containers() if running and cid != but
                and any(e.get("Type") == "volume" and e.get("Name") == name for e in binds)]

    def listing(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        used = self._used_names()
        out = [doc for name, doc in self._db.volumes() if matches(doc, name in used, filters)]
        return {"Volumes": sorted(out, key=lambda d: d["Name"]), "Warnings": []}

    def _used_names(self) -> set[str]:
        return {str(e["Name"]) for _, binds, _ in self._containers() for e in binds
                if e.get("Type") == "volume"}

    def usage(self) -> list[dict[str, Any]]:
        """Every volume with UsageData (Size in bytes, RefCount), as `docker system df -v` shows them."""
        counts: dict[str, int] = {}
        for _, binds, _ in self._containers():
            for name in {e.get("Name") for e in binds if e.get("Type") == "volume"}:
                counts[str(name)] = counts.get(str(name), 0) + 1
        return [doc | {"UsageData": {"Size": fs.disk_usage(doc["Mountpoint"]), "RefCount": counts.get(name, 0)}}
                for name, doc in self._db.volumes()]

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
        left = mounts_under(self._dir(name))
        if left:  # never delete through a mount: it would empty what is mounted there (a bind's source)
            raise FailedPrecondition(f"remove {name}: {', '.join(left)} is still mounted; unmount it and try again")
        self._db.delete_volume(name)
        fs.rmtree(self._dir(name))
        self._events.publish("volume", "destroy", name, {"driver": DRIVER})

    def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        used = self._used_names()
        deleted, reclaimed = [], 0
        for name, doc in list(self._db.volumes()):
            if name in used or not prunable(doc, filters):
                continue
            size = fs.disk_usage(doc["Mountpoint"])
            try:
                self._delete(name)
            except BerthError as exc:
                log.warning("prune: volume %s stays: %s", name, exc)
                continue
            deleted.append(name)
            reclaimed += size
        self._events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return {"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}  # a list, even when empty

    # containers ---------------------------------------------------------
    def container_mounts(self, cid: str, host: dict[str, Any], config_volumes: Iterable[str],
                         mounts_of: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The mount entries of a container being created; creates the volumes they name.

        Args:
            cid: the new container's id (volumes created for it say so in the log).
            host: its HostConfig (Binds, Mounts, VolumesFrom, Tmpfs).
            config_volumes: its Config.Volumes' keys, the image's included.
            mounts_of: another container's mount entries, by name or id (raises NotFound).
        Raises:
            InvalidArgument: a malformed spec, a duplicate destination, a --mount bind
                source that does not exist.
        """
        inherited: list[MountSpec] = []
        for spec in host.get("VolumesFrom") or []:
            ref, mode = parse_volumes_from(spec)
            inherited += inherit(mounts_of(ref), mode)
        for key, kind in (("Binds", list), ("Mounts", list), ("VolumesFrom", list), ("Tmpfs", dict)):
            if host.get(key) is not None and not isinstance(host[key], kind):
                raise InvalidArgument(f"HostConfig.{key}: expected {'an array' if kind is list else 'an object'}")
        specs = plan(host.get("Binds") or [], host.get("Mounts") or [], config_volumes,
                     (host.get("Tmpfs") or {}).keys(), inherited)
        for spec in specs:
            if spec.type == "bind" and spec.must_exist and not os.path.lexists(spec.source):
                raise mount_error("bind", f"bind source path does not exist: {spec.source}")
        entries = []
        for spec in specs:
            entries.append(self._entry(spec))
            if spec.type == "volume" and not spec.source:
                log.info("anonymous volume %s for container %s", entries[-1]["Name"][:12], cid[:12])
        return entries

    def _entry(self, spec: MountSpec) -> dict[str, Any]:
        if spec.type == "bind":
            propagation = spec.propagation or DEFAULT_PROPAGATION
            return {"Type": "bind", "Source": spec.source, "Destination": spec.destination, "Mode": spec.mode,
                    "RW": not spec.readonly, "Propagation": propagation, "Options": [propagation],
                    "CreateSource": not spec.must_exist}
        if spec.type == "tmpfs":
            return {"Type": "tmpfs", "Source": "", "Destination": spec.destination, "Mode": "",
                    "RW": not spec.readonly, "Propagation": "", "TmpfsOptions": spec.tmpfs_options}
        if spec.source:
            doc = self.create(spec.source, DRIVER, dict(spec.driver_options), dict(spec.labels))
        else:
            doc = self.create("", DRIVER, dict(spec.driver_options), {ANONYMOUS_LABEL: "", **dict(spec.labels)})
        return {"Type": "volume", "Name": doc["Name"], "Source": doc["Mountpoint"], "Destination": spec.destination,
                "Driver": DRIVER, "Mode": spec.mode, "RW": not spec.readonly, "Propagation": "",
                "CopyData": spec.copy_data}

    async def prepare(self, cid: str, binds: list[dict[str, Any]], rootfs: str) -> None:
        """Before a container starts: mount its volumes' file systems, fill empty volumes from the image.

        A volume is filled at most once per container (its entry's CopyData is then
        cleared in *binds*), from what the image (and the container's own changes) hold
        at the destination, when the volume is empty.
        """
        mountinfo = ""
        for entry in binds:
            if entry.get("Type") == "bind" and entry.get("Propagation", "").lstrip("r") in ("shared", "slave"):
                if not mountinfo:
                    with open("/proc/self/mountinfo") as f:
                        mountinfo = f.read()
                why = propagation_refusal(mountinfo, os.path.realpath(entry["Source"]), entry["Propagation"])
                if why:
                    raise FailedPrecondition(f"{why}: make it one (mount --make-rshared), or use another propagation")
            if entry.get("Type") != "volume":
                continue
            name = entry["Name"]
            volume = self.get(name)
            data = self.mountpoint(name)
            if not os.path.isdir(data):  # removed behind our back: make it again, empty
                os.makedirs(data, mode=0o755, exist_ok=True)
            self._holders.setdefault(name, set()).add(cid)
            async with self._mounting:
                await self._mount(volume)
            if entry.get("CopyData"):
                # Filled only while no other container runs on it: one that did could race the
                # copy (swap a directory for a symlink), and its volume is in use, not new.
                if not self._running_users(name, but=cid):
                    await self._fill(data, rootfs, entry["Destination"])
                entry["CopyData"] = False
            self._events.publish("volume", "mount", name, {
                "container": cid, "destination": entry["Destination"], "driver": DRIVER,
                "propagation": entry.get("Propagation") or "", "read/write": str(bool(entry.get("RW"))).lower()})

    def release(self, cid: str, binds: list[dict[str, Any]]) -> None:
        """After a container stopped: unmount the file systems of its volumes no other running container uses."""
        for entry in binds:
            if entry.get("Type") != "volume":
                continue
            name = entry["Name"]
            self._events.publish("volume", "unmount", name, {"container": cid, "driver": DRIVER})
            holders = self._holders.get(name, set())
            holders.discard(cid)
            if not holders and not self._running_users(name, but=cid):
                try:
                    self._unmount(name)
                except BerthError as exc:
                    log.warning("volume %s stays mounted: %s", name, exc)

    def remove_anonymous(self, binds: list[dict[str, Any]]) -> None:
        """`docker rm -v`: remove the container's anonymous volumes that no other container uses."""
        for entry in binds:
            if entry.get("Type") != "volume":
                continue
            volume = self._db.get_volume(entry["Name"])
            if volume is None or ANONYMOUS_LABEL not in (volume.get("Labels") or {}):
                continue
            if self.users(entry["Name"]):
                continue
            try:
                self._delete(entry["Name"])
            except BerthError as exc:
                log.warning("rm -v: volume %s stays: %s", entry["Name"], exc)

    async def _mount(self, volume: dict[str, Any]) -> None:
        options = volume.get("Options") or {}
        data = self.mountpoint(volume["Name"])
        if not options.get("device") or data in mounts_under(data):
            return
        await proc.run(mount_argv(options, data), timeout=60)

    def _unmount(self, name: str) -> None:
        """Unmount the volume's file system (every layer of it: a mount may have been stacked)."""
        data = self.mountpoint(name)
        for _ in range(8):
            if data not in mounts_under(data):
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


def mounts_under(path: str, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """The mount points at or below *path* (read from mountinfo: os.path.ismount misses same-device binds)."""
    prefix = path.rstrip("/") + "/"
    out = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split(" ")
            if len(fields) > 4:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if point == path or point.startswith(prefix):
                    out.append(point)
    return out
