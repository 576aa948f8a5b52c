"""Mount specs as Docker's clients send them, parsed: `-v`, `--mount`, `--tmpfs`, `--volumes-from`,
the local volume driver's options, and the volume list and prune filters.

Strategy: pure text and values (no file system, no mounts: berth.services.volumes applies what
these functions decide), with Docker's wording for every refusal. A container's mounts are
decided once, at create, from four sources in Docker's order -- VolumesFrom, then Binds (-v),
then Mounts (--mount), then Config.Volumes (the image's VOLUMEs and `-v /path`) for destinations
still free (`plan`). What is decided is a list of `Mount`s, kept in the container's record (and
stored in its JSON document as the entries older daemons wrote); the API renders them as MountPoints.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from berth.errors import InvalidArgument, NotFound, NotImplemented_
from berth.wire.containerspec import HostConfig

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


# --------------------------------------------------------------------------- #
# A container's mounts, as decided at create


@dataclass(frozen=True, slots=True)
class Mount:
    """One mount a container was given at create: an entry of its record's "Binds" list.

    The API's MountPoint fields (type to propagation) plus what berth needs to mount it:
    a bind's runtime options and whether a missing source is made (-v) or refused
    (--mount), whether a volume is filled from the image at the next start, a tmpfs'
    mount options. `to_doc`/`from_doc` are the stored JSON entry (Docker's field names,
    only those of its type), the same older daemons wrote; `extra` keeps stored keys this
    version does not know.
    """

    type: str                         # "bind", "volume" or "tmpfs"
    destination: str                  # clean absolute container path
    source: str = ""                  # bind: host path; volume: its _data directory; tmpfs: ""
    name: str = ""                    # volume only
    driver: str = ""                  # volume only
    mode: str = ""                    # the -v mode text as given
    rw: bool = True
    propagation: str = ""             # binds only
    options: tuple[str, ...] = ()     # bind: the runtime's mount options (its propagation)
    create_source: bool = True        # bind: make a missing source (-v), else refuse it (--mount)
    copy_data: bool = False           # volume: fill it from the image at the next start
    tmpfs_options: str = ""           # tmpfs: mount options ("rw,noexec,...,size=..")
    extra: dict[str, Any] = field(default_factory=dict)

    _STORED: ClassVar[dict[str, tuple[str, ...]]] = {
        "bind": ("Type", "Source", "Destination", "Mode", "RW", "Propagation", "Options", "CreateSource"),
        "tmpfs": ("Type", "Source", "Destination", "Mode", "RW", "Propagation", "TmpfsOptions"),
        "volume": ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation", "CopyData"),
    }
    _KEYS: ClassVar[tuple[str, ...]] = ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW",
                                        "Propagation", "Options", "CreateSource", "CopyData", "TmpfsOptions")

    def to_doc(self) -> dict[str, Any]:
        """The stored entry: the keys of its type, in the order berth has always written them."""
        values: dict[str, Any] = {
            "Type": self.type, "Name": self.name, "Source": self.source, "Destination": self.destination,
            "Driver": self.driver, "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation,
            "Options": list(self.options), "CreateSource": self.create_source, "CopyData": self.copy_data,
            "TmpfsOptions": self.tmpfs_options}
        return {**{k: values[k] for k in self._STORED.get(self.type, self._KEYS)}, **self.extra}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Mount:
        """A stored entry; a key it lacks takes the default older code read it with."""
        return cls(
            type=str(doc.get("Type") or "bind"), destination=str(doc.get("Destination") or ""),
            source=str(doc.get("Source") or ""), name=str(doc.get("Name") or ""),
            driver=str(doc.get("Driver") or ""), mode=str(doc.get("Mode") or ""), rw=bool(doc.get("RW", True)),
            propagation=str(doc.get("Propagation") or ""), options=tuple(str(o) for o in doc.get("Options") or ()),
            create_source=bool(doc.get("CreateSource", True)), copy_data=bool(doc.get("CopyData")),
            tmpfs_options=str(doc.get("TmpfsOptions") or ""),
            extra={k: v for k, v in doc.items() if k not in cls._KEYS})


@dataclass(frozen=True, slots=True)
class MountRequest:
    """What a container being created asks to mount (see `mount_request`)."""

    binds: tuple[object, ...] = ()                  # HostConfig.Binds as sent: `plan` parses them
    mounts: tuple[object, ...] = ()                 # HostConfig.Mounts as sent, likewise
    volumes_from: tuple[tuple[str, str], ...] = ()  # HostConfig.VolumesFrom: (container, mode)
    tmpfs: tuple[str, ...] = ()                     # HostConfig.Tmpfs' destinations
    config_volumes: tuple[str, ...] = ()            # Config.Volumes' keys, the image's included


def mount_request(host: HostConfig, config_volumes: Iterable[str]) -> MountRequest:
    """The mounts a HostConfig asks for (its fields' shapes were checked with the request), --volumes-from parsed.

    Raises:
        InvalidArgument: a malformed --volumes-from.
    """
    return MountRequest(tuple(host.binds or ()), tuple(host.mounts or ()),
                        tuple(parse_volumes_from(spec) for spec in host.volumes_from or ()),
                        tuple(host.tmpfs or {}), tuple(config_volumes))


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


def mount_error(kind: str, text: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {text}')


def _check_target(kind: str, target: str) -> str:
    if not target:
        raise mount_error(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    cleaned = posixpath.normpath(target)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned == "/":
        raise mount_error(kind, "invalid specification: destination can't be '/'")
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
            raise mount_error(kind, "field BindOptions must not be specified")
        if kind == "bind" and parsed.copy is not None:
            raise mount_error(kind, "field VolumeOptions must not be specified")
        if kind == "volume" and not source and parsed.readonly:
            raise mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
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
        raise mount_error(kind, "mount type unknown (use bind, volume or tmpfs)")
    destination = _check_target(kind, m.get("Target") or "")
    if kind == "bind":
        if not source:
            raise mount_error(kind, "field Source must not be empty")
        if volume_opts:
            raise mount_error(kind, "field VolumeOptions must not be specified")
        if tmpfs_opts:
            raise mount_error(kind, "field TmpfsOptions must not be specified")
        if not source.startswith("/"):
            raise mount_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        opts = _dict(bind_opts, "Mounts.BindOptions")
        propagation = opts.get("Propagation") or ""
        if propagation and propagation not in PROPAGATIONS:
            raise mount_error(kind, f"invalid propagation mode: {propagation}")
        return MountSpec("bind", posixpath.normpath(source), destination, readonly, "", propagation,
                         must_exist=not opts.get("CreateMountpoint"))
    if bind_opts:
        raise mount_error(kind, "field BindOptions must not be specified")
    if kind == "volume":
        if tmpfs_opts:
            raise mount_error(kind, "field TmpfsOptions must not be specified")
        opts = _dict(volume_opts, "Mounts.VolumeOptions")
        if opts.get("Subpath"):
            raise NotImplemented_("volume subpaths (--mount volume-subpath=) are not supported by berth yet: "
                                  "mount the whole volume")
        if not source and readonly:
            raise mount_error(kind, "must not set ReadOnly mode when using anonymous volumes")
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
        raise mount_error(kind, "field Source must not be specified")
    if volume_opts:
        raise mount_error(kind, "field VolumeOptions must not be specified")
    return MountSpec("tmpfs", "", destination, readonly, tmpfs_options=tmpfs_mount_options(tmpfs_opts, readonly))


def tmpfs_mount_options(value: Any, readonly: bool) -> str:
    """Mounts.TmpfsOptions (SizeBytes, Mode) as tmpfs mount options, with Docker's defaults."""
    opts = _dict(value, "Mounts.TmpfsOptions")
    out = ["ro" if readonly else "rw", *TMPFS_DEFAULTS]
    size, mode = opts.get("SizeBytes") or 0, opts.get("Mode") or 0
    if not isinstance(size, int) or not isinstance(mode, int) or size < 0 or mode < 0:
        raise mount_error("tmpfs", "SizeBytes and Mode must be non-negative integers")
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


def inherit(entries: Iterable[Mount], mode: str) -> list[MountSpec]:
    """Another container's mounts as this container's (--volumes-from): never filled again."""
    out = []
    for m in entries:
        if m.type == "tmpfs":
            continue
        readonly = not m.rw or mode.startswith("ro")
        if m.type == "volume":
            out.append(MountSpec("volume", m.name, m.destination, readonly, m.mode, copy_data=False))
        else:
            out.append(MountSpec("bind", m.source, m.destination, readonly, m.mode, m.propagation))
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


def matches(name: str, driver: str, labels: dict[str, str], in_use: bool, filters: dict[str, list[str]]) -> bool:
    """Whether a volume (its name, driver and labels; used by a container or not) passes `docker volume ls`
    *filters*."""
    for key, values in filters.items():
        if key not in LIST_FILTERS:
            raise InvalidArgument(f"Invalid filter '{key}'")  # Docker's capital, for volumes
        if key == "dangling" and _truth(values, key) == in_use:
            return False
        if key == "name" and not any(v in name for v in values):
            return False
        if key == "driver" and driver not in values:
            return False
        if key == "label" and not all(label_matches(labels, v) for v in values):
            return False
    return True


def prunable(labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """Whether an unused volume (its labels) goes in `docker volume prune` (anonymous ones only unless all=true)."""
    for key in filters:
        if key not in PRUNE_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    everything = _truth(filters["all"], "all") if "all" in filters else False
    if not everything and ANONYMOUS_LABEL not in labels:
        return False
    if not all(label_matches(labels, v) for v in filters.get("label", [])):
        return False
    return not any(label_matches(labels, v) for v in filters.get("label!", []))

