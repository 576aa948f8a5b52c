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

The parsing of -v, --mount and --volumes-from specs is pure and comes first
in this module, with Docker's wording for every refusal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from berth import timefmt
from berth.errors import (
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotImplemented_,
)
from berth.host import fs, proc
from berth.host import mount as host_mount
from berth.metadata.db import Database
from berth.services import copy
from berth.services.events import Events

log = logging.getLogger(__name__)

DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_PROPAGATION = "rprivate"
LOCAL_OPTIONS = ("type", "device", "o", "size")
LIST_FILTERS = ("dangling", "name", "label", "driver")
PRUNE_FILTERS = ("label", "label!", "all")
TMPFS_DEFAULTS = ("noexec", "nosuid", "nodev")

# A container's mount entry (in its document's "Binds" list) -- the API's MountPoint keys:
#   Type "bind" | "volume" | "tmpfs", Name, Source, Destination, Driver, Mode, RW, Propagation
# plus berth's own: Options (bind propagation for the runtime), CopyData (fill the volume from
# the image at the next start), TmpfsOptions (the tmpfs mount's options).
MOUNT_POINT_KEYS = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")


# --------------------------------------------------------------------------- #
# Pure parsing


@dataclass(frozen=True, slots=True)
class MountSpec:
    """One mount a container asks for, parsed from -v, --mount, --volumes-from or Config.Volumes."""

    type: str                        # "bind", "volume" or "tmpfs"
    source: str                      # bind: host path; volume: name ("" = anonymous); tmpfs: ""
    destination: str                 # clean absolute container path
    readonly: bool = False
    mode: str = ""                   # the -v mode text as given (Docker shows it as Mode)
    propagation: str = ""            # binds only; "" = rprivate
    copy_data: bool = True           # volumes: fill from the image when empty ("nocopy" turns it off)
    driver_options: tuple[tuple[str, str], ...] = ()   # volume-opt=, for a volume created here
    labels: tuple[tuple[str, str], ...] = ()           # volume-label=, likewise
    tmpfs_options: str = ""          # tmpfs: mount options ("size=..,mode=..")
    must_exist: bool = False         # bind from --mount: the host path must exist (-v creates it)


def check_volume_name(name: str) -> str:
    """Raises InvalidArgument with Docker's wording unless *name* is a valid local volume name."""
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                              f'only "{NAME_CHARS}" are allowed. If you intended to pass a host directory, '
                              "use absolute path")
    return name


def _mount_error(kind: str, text: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {text}')


def _check_target(kind: str, target: str) -> str:
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    cleaned = posixpath.normpath(target)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned == "/":
        raise _mount_error(kind, "invalid specification: destination can't be '/'")
    return cleaned


@dataclass(frozen=True, slots=True)
class _Mode:
    readonly: bool = False
    propagation: str = ""
    copy: bool | None = None


def _parse_mode(mode: str) -> _Mode:
    """A -v mode ("ro,rshared", "z", "nocopy"...): each kind at most once, as Docker checks it."""
    seen: dict[str, int] = {}
    out = _Mode()
    for opt in mode.split(",") if mode else []:
        if opt in ("ro", "rw"):
            kind = "rw"
            out = replace(out, readonly=opt == "ro")
        elif opt in ("z", "Z"):
            kind = "label"
        elif opt in PROPAGATIONS:
            kind = "propagation"
            out = replace(out, propagation=opt)
        elif opt == "nocopy":
            kind = "copy"
            out = replace(out, copy=False)
        elif opt in ("consistent", "cached", "delegated"):
            kind = "consistency"
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] > 1:
            raise InvalidArgument(f"invalid mode: {mode}")
    return out


def parse_volume_flag(raw: Any) -> MountSpec:
    """A HostConfig.Binds entry (`-v`): `[source:]destination[:mode]`.

    A source that is an absolute path is a bind; any other source names a volume;
    no source at all is an anonymous volume.
    """
    if not isinstance(raw, str):
        raise InvalidArgument("HostConfig.Binds: every element must be a string")
    parts = raw.split(":")
    if not raw or not parts[0]:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    mode = ""
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        if parts[1] in ("ro", "rw") or _looks_like_mode(parts[1]):
            raise InvalidArgument(f"invalid volume specification: '{raw}': a volume without a source "
                                  "cannot have a mode (use -v /path alone, or name:/path:mode)")
        source, target = parts
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"invalid volume specification: '{raw}'")
    parsed = _parse_mode(mode)
    kind = "bind" if source.startswith("/") else "volume"
    try:
        destination = _check_target(kind, target)
        if kind == "volume" and parsed.propagation:
            raise _mount_error(kind, "field BindOptions must not be specified")
        if kind == "bind" and parsed.copy is not None:
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        if kind == "volume" and not source and parsed.readonly:
            raise _mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid volume specification: '{raw}': {exc}") from None
    if kind == "volume" and source:
        check_volume_name(source)
    if kind == "volume" and not mode:
        mode = "z"  # Docker's default mode for local volumes
    return MountSpec(kind, source, destination, parsed.readonly, mode, parsed.propagation,
                     parsed.copy is not False)


def _looks_like_mode(text: str) -> bool:
    try:
        _parse_mode(text)
    except InvalidArgument:
        return False
    return not text.startswith("/")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: expected an object")
    return value


def _str_map(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    items = _dict(value, where)
    if not all(isinstance(v, str) for v in items.values()):
        raise InvalidArgument(f"{where}: values must be strings")
    return tuple(sorted(items.items()))


def parse_api_mount(m: Any) -> MountSpec:
    """A HostConfig.Mounts entry (`--mount`), checked as Docker checks it."""
    if not isinstance(m, dict):
        raise InvalidArgument("HostConfig.Mounts: every element must be an object")
    kind = m.get("Type") or ""
    source = m.get("Source") or ""
    readonly = bool(m.get("ReadOnly"))
    if not isinstance(kind, str) or not isinstance(source, str) or not isinstance(m.get("Target") or "", str):
        raise InvalidArgument("HostConfig.Mounts: Type, Source and Target must be strings")
    bind_opts = m.get("BindOptions")
    volume_opts = m.get("VolumeOptions")
    tmpfs_opts = m.get("TmpfsOptions")
    if kind not in ("bind", "volume", "tmpfs"):
        raise _mount_error(kind, "mount type unknown (use bind, volume or tmpfs)")
    destination = _check_target(kind, m.get("Target") or "")
    if kind == "bind":
        if not source:
            raise _mount_error(kind, "field Source must not be empty")
        if volume_opts:
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        if tmpfs_opts:
            raise _mount_error(kind, "field TmpfsOptions must not be specified")
        if not source.startswith("/"):
            raise _mount_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        opts = _dict(bind_opts, "Mounts.BindOptions")
        propagation = opts.get("Propagation") or ""
        if propagation and propagation not in PROPAGATIONS:
            raise _mount_error(kind, f"invalid propagation mode: {propagation}")
        return MountSpec("bind", posixpath.normpath(source), destination, readonly, "", propagation,
                         must_exist=not opts.get("CreateMountpoint"))
    if bind_opts:
        raise _mount_error(kind, "field BindOptions must not be specified")
    if kind == "volume":
        if tmpfs_opts:
            raise _mount_error(kind, "field TmpfsOptions must not be specified")
        opts = _dict(volume_opts, "Mounts.VolumeOptions")
        if opts.get("Subpath"):
            raise NotImplemented_("volume subpaths (--mount volume-subpath=) are not supported by berth yet: "
                                  "mount the whole volume")
        if not source and readonly:
            raise _mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
        if source:
            check_volume_name(source)
        driver = _dict(opts.get("DriverConfig"), "Mounts.VolumeOptions.DriverConfig")
        if (driver.get("Name") or DRIVER) != DRIVER:
            raise NotFound(f'error looking up volume plugin {driver["Name"]}: plugin "{driver["Name"]}" not found '
                           "(berth has the local driver only)")
        options = _str_map(driver.get("Options"), "Mounts.VolumeOptions.DriverConfig.Options")
        check_driver_options(dict(options))
        return MountSpec("volume", source, destination, readonly, "z", "", not opts.get("NoCopy"),
                         options, _str_map(opts.get("Labels"), "Mounts.VolumeOptions.Labels"))
    if source:
        raise _mount_error(kind, "field Source must not be specified")
    if volume_opts:
        raise _mount_error(kind, "field VolumeOptions must not be specified")
    return MountSpec("tmpfs", "", destination, readonly, tmpfs_options=tmpfs_mount_options(tmpfs_opts, readonly))


def tmpfs_mount_options(value: Any, readonly: bool) -> str:
    """Mounts.TmpfsOptions (SizeBytes, Mode) as tmpfs mount options, with Docker's defaults."""
    opts = _dict(value, "Mounts.TmpfsOptions")
    out = ["ro" if readonly else "rw", *TMPFS_DEFAULTS]
    size, mode = opts.get("SizeBytes") or 0, opts.get("Mode") or 0
    if not isinstance(size, int) or not isinstance(mode, int) or size < 0 or mode < 0:
        raise _mount_error("tmpfs", "SizeBytes and Mode must be non-negative integers")
    if mode:
        out.append(f"mode={mode & 0o7777:o}")
    if size:
        out.append(f"size={size}")
    return ",".join(out)


def parse_volumes_from(spec: Any) -> tuple[str, str]:
    """`CONTAINER[:ro|rw]` -> (container, mode)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    name, _, mode = spec.partition(":")
    if not name or mode not in ("", "ro", "rw", "z", "Z", "ro,z", "rw,z", "ro,Z", "rw,Z"):
        raise InvalidArgument(f"invalid mode: {mode} in volumes-from '{spec}' (use CONTAINER[:ro|rw])")
    return name, mode


def inherit(entries: Iterable[dict[str, Any]], mode: str) -> list[MountSpec]:
    """Another container's mount entries as this container's (--volumes-from): never filled again."""
    out = []
    for e in entries:
        if e.get("Type") == "tmpfs":
            continue
        readonly = not e.get("RW", True) or mode.startswith("ro")
        if e.get("Type") == "volume":
            out.append(MountSpec("volume", e["Name"], e["Destination"], readonly, e.get("Mode") or "",
                                 copy_data=False))
        else:
            out.append(MountSpec("bind", e["Source"], e["Destination"], readonly, e.get("Mode") or "",
                                 e.get("Propagation") or ""))
    return out


def plan(binds: Iterable[Any], mounts: Iterable[Any], config_volumes: Iterable[str], tmpfs: Iterable[str],
         inherited: Iterable[MountSpec]) -> list[MountSpec]:
    """Every mount of a new container, in Docker's precedence; refuses two mounts on one destination.

    Args:
        binds: HostConfig.Binds.  mounts: HostConfig.Mounts.
        config_volumes: Config.Volumes' keys (the image's VOLUMEs and `-v /path`).
        tmpfs: HostConfig.Tmpfs' destinations.  inherited: from --volumes-from (see inherit()).
    """
    chosen: dict[str, MountSpec] = {m.destination: m for m in inherited}
    tmpfs_at = {posixpath.normpath(t) for t in tmpfs}
    taken: set[str] = set()
    for raw in binds:
        spec = parse_volume_flag(raw)
        if spec.destination in taken or spec.destination in tmpfs_at:
            raise InvalidArgument(f"Duplicate mount point: {spec.destination}")
        taken.add(spec.destination)
        chosen[spec.destination] = spec
    for raw in mounts:
        spec = parse_api_mount(raw)
        if spec.destination in taken or spec.destination in tmpfs_at:
            raise InvalidArgument(f"Duplicate mount point: {spec.destination}")
        taken.add(spec.destination)
        chosen[spec.destination] = spec
    for path in config_volumes:
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{path}': the container path must be absolute")
        destination = _check_target("volume", path)
        if destination not in chosen and destination not in tmpfs_at:
            chosen[destination] = MountSpec("volume", "", destination)
    return list(chosen.values())


def check_driver_options(options: dict[str, str]) -> None:
    """The local driver's options: type, device and o together (size is for quota file systems)."""
    for key in options:
        if key not in LOCAL_OPTIONS:
            raise InvalidArgument(f'invalid option: "{key}" (the local driver takes type, device and o)')
    if "size" in options:
        raise NotImplemented_("the local driver's size option needs a quota file system, which berth does not "
                              "manage: use -o type=tmpfs -o device=tmpfs -o o=size=...")
    if options.get("o") and not options.get("device"):
        raise InvalidArgument('missing required option: "device"')
    if options.get("type") and not options.get("device"):
        raise InvalidArgument('missing required option: "device"')
    if options.get("device") and not options.get("type") and "bind" not in (options.get("o") or "").split(","):
        raise InvalidArgument('missing required option: "type"')


def mount_argv(options: dict[str, str], target: str) -> list[str]:
    """The mount(8) command that mounts a volume's file system (its type/device/o) on *target*."""
    argv = ["mount"]
    if options.get("type") and options["type"] != "none":
        argv += ["-t", options["type"]]
    if options.get("o"):
        argv += ["-o", options["o"]]
    return argv + ["--", options["device"], target]


def propagation_refusal(mountinfo: str, source: str, propagation: str) -> str:
    """Why a bind of *source* cannot have *propagation* ("" when it can), as Docker checks it at start.

    A shared bind needs its source on a shared mount; a slave one on a shared or slave
    mount (otherwise nothing could ever propagate).
    """
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return ""
    best, tags = "", []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 7 or "-" not in fields:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = source == point or source.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, tags = point, fields[6:fields.index("-")]
    shared = any(t.startswith("shared:") for t in tags)
    slave = any(t.startswith("master:") for t in tags)
    if propagation in ("shared", "rshared") and not shared:
        return f"path {source} is mounted on {best} but it is not a shared mount"
    if propagation in ("slave", "rslave") and not (shared or slave):
        return f"path {source} is mounted on {best} but it is not a shared or slave mount"
    return ""


def mount_point(entry: dict[str, Any]) -> dict[str, Any]:
    """A container's mount entry as inspect/ps show it (the API's MountPoint)."""
    out = {k: entry.get(k, "") for k in MOUNT_POINT_KEYS}
    out["RW"] = bool(entry.get("RW", True))
    if entry.get("Type") != "volume":
        del out["Name"], out["Driver"]
    return out


def label_matches(labels: dict[str, str], spec: str) -> bool:
    """`key` or `key=value` (Docker also accepts `key:value` for volumes)."""
    key, eq, value = spec.partition("=")
    if not eq and ":" in spec:
        key, eq, value = spec.partition(":")
    return key in labels and (not eq or labels[key] == value)


def _truth(values: list[str], key: str) -> bool:
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"invalid filter '{key}={','.join(values)}': use true or false")
    return values[0].lower() in ("true", "1")


def matches(doc: dict[str, Any], in_use: bool, filters: dict[str, list[str]]) -> bool:
    """Whether a volume's API document passes `docker volume ls` *filters*."""
    for key, values in filters.items():
        if key not in LIST_FILTERS:
            raise InvalidArgument(f"Invalid filter '{key}'")  # Docker's capital, for volumes
        if key == "dangling" and _truth(values, key) == in_use:
            return False
        if key == "name" and not any(v in doc["Name"] for v in values):
            return False
        if key == "driver" and doc["Driver"] not in values:
            return False
        if key == "label" and not all(label_matches(doc["Labels"], v) for v in values):
            return False
    return True


def prunable(doc: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Whether an unused volume goes in `docker volume prune` (anonymous ones only unless all=true)."""
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    labels = doc["Labels"]
    everything = _truth(filters["all"], "all") if "all" in filters else False
    if not everything and ANONYMOUS_LABEL not in labels:
        return False
    if not all(label_matches(labels, v) for v in filters.get("label", [])):
        return False
    return not any(label_matches(labels, v) for v in filters.get("label!", []))


# --------------------------------------------------------------------------- #
# The service

# (container id, its document, whether it runs), for every container
ContainerList = Callable[[], Iterable[tuple[str, dict[str, Any], bool]]]


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
        return [cid for cid, doc, _ in self._containers()
                if any(e.get("Type") == "volume" and e.get("Name") == name for e in doc.get("Binds") or [])]

    def _running_users(self, name: str, but: str = "") -> list[str]:
        return [cid for cid, doc, running in self._containers() if running and cid != but
                and any(e.get("Type") == "volume" and e.get("Name") == name for e in doc.get("Binds") or [])]

    def listing(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        used = self._used_names()
        out = [doc for name, doc in self._db.volumes() if matches(doc, name in used, filters)]
        return {"Volumes": sorted(out, key=lambda d: d["Name"]), "Warnings": []}

    def _used_names(self) -> set[str]:
        return {e.get("Name") for _, doc, _ in self._containers() for e in doc.get("Binds") or []
                if e.get("Type") == "volume"}

    def usage(self) -> list[dict[str, Any]]:
        """Every volume with UsageData (Size in bytes, RefCount), as `docker system df -v` shows them."""
        counts: dict[str, int] = {}
        for _, doc, _ in self._containers():
            for name in {e.get("Name") for e in doc.get("Binds") or [] if e.get("Type") == "volume"}:
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
                raise _mount_error("bind", f"bind source path does not exist: {spec.source}")
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

    async def prepare(self, cid: str, doc: dict[str, Any], rootfs: str) -> None:
        """Before a container starts: mount its volumes' file systems, fill empty volumes from the image.

        A volume is filled at most once per container (its entry's CopyData is then
        cleared in *doc*), from what the image (and the container's own changes) hold
        at the destination, when the volume is empty.
        """
        mountinfo = ""
        for entry in doc.get("Binds") or []:
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

    def release(self, cid: str, doc: dict[str, Any]) -> None:
        """After a container stopped: unmount the file systems of its volumes no other running container uses."""
        for entry in doc.get("Binds") or []:
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

    def remove_anonymous(self, doc: dict[str, Any]) -> None:
        """`docker rm -v`: remove the container's anonymous volumes that no other container uses."""
        for entry in doc.get("Binds") or []:
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
            found = copy.locate(copy.View(rootfs), destination, follow_last=True)
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




__all__ = [
    "ANONYMOUS_LABEL", "DRIVER", "MountSpec", "Volumes", "check_driver_options", "check_volume_name", "inherit",
    "label_matches", "matches", "mount_argv", "mount_point", "mounts_under", "parse_api_mount", "parse_volume_flag",
    "parse_volumes_from", "plan", "prunable", "propagation_refusal", "tmpfs_mount_options",
]
