"""Validation of the create request: pure checks with Docker's wording.

Strategy: every field of ContainerConfig/HostConfig that berth acts on is
checked for type and value here, before anything is written, so a bad request
is a 400 that names the field, never a 500 from deep inside.
"""

from __future__ import annotations

import functools
import os
import re
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.network import ipam, ipam6
from berth.oci import seccompprofile
from berth.services import createtypes, endpoints, healthrules
from berth.services.endpoints import EndpointSettings
from berth.wire import mountspec

_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")

_TYPES: dict[str, tuple[type, ...]] = {
    "Hostname": (str,), "Domainname": (str,), "User": (str,), "AttachStdin": (bool,),
    "AttachStdout": (bool,), "AttachStderr": (bool,), "Tty": (bool,), "OpenStdin": (bool,),
    "StdinOnce": (bool,), "Env": (list,), "Cmd": (list, str), "Entrypoint": (list, str),
    "Image": (str,), "WorkingDir": (str,), "Labels": (dict,), "StopSignal": (str,),
    "StopTimeout": (int,), "NetworkDisabled": (bool,), "Volumes": (dict,), "ExposedPorts": (dict,),
    "HostConfig": (dict,), "MacAddress": (str,),
}
_HOST_TYPES: dict[str, tuple[type, ...]] = {
    "Binds": (list,), "AutoRemove": (bool,), "Memory": (int,), "MemorySwap": (int,),
    "NanoCpus": (int,), "CpuShares": (int,), "CpuQuota": (int,), "CpuPeriod": (int,),
    "PidsLimit": (int,), "ReadonlyRootfs": (bool,), "CapAdd": (list,), "CapDrop": (list,),
    "Privileged": (bool,), "Init": (bool,), "NetworkMode": (str,), "Isolation": (str,),
    "Runtime": (str,), "SecurityOpt": (list,), "ExtraHosts": (list,), "Dns": (list,),
    "OomKillDisable": (bool,), "Tmpfs": (dict,), "RestartPolicy": (dict,), "Mounts": (list,),
    "VolumesFrom": (list,),
}


def _check_types(obj: dict[str, Any], table: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in table.items():
        value = obj.get(key)
        if value is None:
            continue
        if bool in types and not isinstance(value, bool):
            raise InvalidArgument(f"{where}{key}: expected a boolean, got {type(value).__name__}")
        if isinstance(value, bool) and bool not in types:
            raise InvalidArgument(f"{where}{key}: expected {types[0].__name__}, got a boolean")
        if not isinstance(value, types):
            names = " or ".join("array" if t is list else "object" if t is dict else
                                "string" if t is str else "integer" if t is int else t.__name__ for t in types)
            raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into {where}{key} (expected {names})")


def check_config(body: Any) -> None:
    """Raises InvalidArgument on a malformed create request."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object (ContainerConfig)")
    createtypes.check_config(body)  # every field's JSON type, as Docker's structs declare it
    _check_types(body, _TYPES, "Config.")
    networks = endpoints.parse_networking_config(body.get("NetworkingConfig"))  # its shape, naming the field
    healthrules.check_config(body.get("Healthcheck"))
    for key in ("Env", "Cmd", "Entrypoint"):
        value = body.get(key)
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"Config.{key}: every element must be a string")
    labels = body.get("Labels") or {}
    if not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("Config.Labels: values must be strings")
    host = body.get("HostConfig") or {}
    _check_types(host, _HOST_TYPES, "HostConfig.")
    for key in ("Memory", "MemorySwap" if host.get("MemorySwap", 0) != -1 else "", "NanoCpus", "CpuShares",
                "CpuQuota", "CpuPeriod"):
        if key and (host.get(key) or 0) < 0:
            raise InvalidArgument(f"invalid {key}: {host[key]} must not be negative")
    memory = host.get("Memory") or 0
    if 0 < memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if host.get("NanoCpus") and (host.get("CpuQuota") or host.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    for bind in host.get("Binds") or []:
        mountspec.parse_volume_flag(bind)  # binds, named and anonymous volumes
    for spec in host.get("Mounts") or []:
        mountspec.parse_api_mount(spec)
    for spec in host.get("VolumesFrom") or []:
        mountspec.parse_volumes_from(spec)
    log_config(host.get("LogConfig"))
    restart_policy(host.get("RestartPolicy"), bool(host.get("AutoRemove")))
    check_security_options(security_options(host.get("SecurityOpt")), *host_lsms())
    check_addresses(str(body.get("MacAddress") or ""), networks)


def check_addresses(mac: str, networks: Mapping[str, EndpointSettings]) -> None:
    """--mac-address (Config.MacAddress, *mac*) and each network's MacAddress and --ip6 values: a 400
    at create rather than a failed start (their shapes are services.endpoints' to check, their use
    services.attachments')."""
    if mac:
        ipam.parse_mac(mac, "MAC address (Config.MacAddress, --mac-address)")
    for name, settings in networks.items():
        if settings.mac:
            ipam.parse_mac(settings.mac, f"MAC address on network {name[:64]}")
        if settings.ipv6:
            ipam6.parse_address6(settings.ipv6, f"IPv6 address (--ip6) on network {name[:64]}")


# --- HostConfig.SecurityOpt --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecurityOptions:
    """HostConfig.SecurityOpt, parsed. seccomp: "" (berth's built-in policy), "builtin",
    "unconfined", or a Docker-format profile's JSON text (the docker CLI reads the file)."""

    no_new_privileges: bool = False
    seccomp: str = ""
    apparmor: str = ""
    labels: tuple[str, ...] = ()


_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")
SECURITY_KEYS = ("seccomp", "apparmor", "label", "no-new-privileges")


def security_options(values: Any) -> SecurityOptions:
    """Parse HostConfig.SecurityOpt as dockerd does (`key=value`, or the legacy `key:value`).

    A later option overrides an earlier one of the same key. A seccomp profile's
    JSON is checked here, so that a bad profile is refused at create.

    Raises:
        InvalidArgument: not a list of strings, an unknown option, a bad value.
    """
    if values is None:
        return SecurityOptions()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidArgument("HostConfig.SecurityOpt: expected an array of strings")
    nnp, profile, apparmor, labels = False, "", "", []
    for opt in values:
        if opt == "no-new-privileges":
            nnp = True
            continue
        if opt == "disable":  # the old spelling of label=disable
            labels.append("disable")
            continue
        sep = "=" if "=" in opt else ":" if ":" in opt else ""
        key, _, value = opt.partition(sep) if sep else (opt, "", "")
        shown = opt if len(opt) <= 80 else opt[:77] + "..."
        if not sep or key not in SECURITY_KEYS:
            raise InvalidArgument(f"invalid --security-opt: {shown!r}: use seccomp=, apparmor=, label= or "
                                  "no-new-privileges[=true|false]")
        if key == "no-new-privileges":
            if value not in _TRUE + _FALSE:
                raise InvalidArgument(f"invalid --security-opt: {shown!r}: no-new-privileges takes true or false")
            nnp = value in _TRUE
        elif key == "seccomp":
            if value not in ("", "unconfined", "builtin"):
                if not value.lstrip().startswith("{"):
                    raise InvalidArgument(
                        f"invalid --security-opt: {shown!r}: seccomp takes unconfined, builtin or a profile's JSON "
                        "content (the docker CLI reads seccomp=FILE and sends the file's content)")
                seccompprofile.parse_docker_profile(value)
            profile = value
        elif key == "apparmor":
            apparmor = value
        else:
            labels.append(value)
    return SecurityOptions(nnp, profile, apparmor, tuple(labels))


def check_security_options(opts: SecurityOptions, apparmor_enabled: bool, selinux_enabled: bool) -> None:
    """Refuse what this host cannot do: berth applies neither AppArmor profiles nor SELinux labels.

    Raises:
        InvalidArgument: an AppArmor profile other than unconfined, a label other than disable.
    """
    if opts.apparmor and opts.apparmor != "unconfined":
        why = ("AppArmor is not enabled on this host" if not apparmor_enabled
               else "berth does not load AppArmor profiles")
        raise InvalidArgument(f"apparmor={opts.apparmor[:80]} cannot be used: {why}; only apparmor=unconfined "
                              "is accepted")
    for label in opts.labels:
        if label != "disable":
            why = ("SELinux is not enabled on this host" if not selinux_enabled
                   else "berth does not apply SELinux labels")
            raise InvalidArgument(f"label={label[:80]} cannot be used: {why}; only label=disable is accepted")


@functools.lru_cache(maxsize=1)
def host_lsms() -> tuple[bool, bool]:
    """(AppArmor enabled, SELinux enabled) on this host; read once."""
    try:
        with open("/sys/module/apparmor/parameters/enabled", encoding="ascii") as f:
            apparmor = f.read(8).strip() == "Y"
    except OSError:
        apparmor = False
    return apparmor, os.path.isdir("/sys/fs/selinux") and os.path.exists("/sys/fs/selinux/enforce")


RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


def restart_policy(value: Any, auto_remove: bool = False) -> tuple[str, int]:
    """HostConfig.RestartPolicy -> (name, maximum retry count), refused in Docker's words.

    An empty name is "no" with any count (what Docker before 25.0 stored); a count
    goes only with on-failure and is never negative; AutoRemove excludes a policy.
    """
    policy = value or {}
    name, count = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
    if name in ("always", "unless-stopped", "no") and count != 0:
        message = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        raise InvalidArgument(message + (" and cannot be negative" if count < 0 else ""))
    if name == "on-failure" and count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if name and name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name[:64]}'; use one of "
                              + ", ".join(f"'{p}'" for p in RESTART_POLICIES[:-1]) + f", or '{RESTART_POLICIES[-1]}'")
    if auto_remove and name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    return name or "no", count


LOG_DRIVERS = ("json-file", "none")
LOG_OPTIONS = ("max-size", "max-file", "compress", "mode", "max-buffer-size", "labels", "labels-regex", "env",
               "env-regex", "tag")


def log_config(value: Any) -> tuple[str, int]:
    """HostConfig.LogConfig -> (driver, max size in bytes); only what berth really does is accepted."""
    if value is None:
        return "json-file", 0
    if not isinstance(value, dict):
        raise InvalidArgument("HostConfig.LogConfig: expected an object")
    return log_settings(value.get("Type") or "json-file", value.get("Config") or {})


def log_settings(driver: str, options: Mapping[str, str]) -> tuple[str, int]:
    """A LogConfig's driver and options -> (driver, max size in bytes), refused in Docker's words."""
    driver = driver or "json-file"
    if driver not in LOG_DRIVERS:
        # Docker's words exactly (clients compare them); berth has json-file and none
        raise InvalidArgument(f"logger: no log driver named '{str(driver)[:64]}' is registered")
    size = 0
    for key, opt in options.items():
        if key not in LOG_OPTIONS or driver == "none":
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
        if key == "max-size":
            size = parse_size(str(opt))
    return driver, size


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text.strip().lower())
    if not m:
        raise InvalidArgument(f"failed to initialize logging driver: invalid size: '{text}'")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


def parse_bind(bind: Any) -> tuple[str, str, bool, tuple[str, ...]]:
    """`/host:/ctr[:ro|rw,propagation]` -> (source, destination, readonly, extra options)."""
    if not isinstance(bind, str):
        raise InvalidArgument("HostConfig.Binds: every element must be a string")
    parts = bind.split(":")
    if len(parts) not in (2, 3):
        raise InvalidArgument(f"invalid volume specification: '{bind}': use /host/path:/container/path[:ro]")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    if not src.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"bind\": '{bind}': the host path must be absolute "
                              "(named volumes are not supported yet)")
    if not dst.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{bind}': the container path must be absolute")
    if dst == "/":
        raise InvalidArgument(f"invalid volume specification: '{bind}': the destination can't be '/'")
    readonly, extra = False, []
    for opt in opts:
        if opt == "ro":
            readonly = True
        elif opt in ("rw", "z", "Z", ""):
            continue
        elif opt in ("private", "rprivate", "shared", "rshared", "slave", "rslave"):
            extra.append(opt)
        elif opt in ("nocopy",):
            continue
        else:
            raise InvalidArgument(f"invalid mode: {opt} in '{bind}'")
    return src, dst, readonly, tuple(extra)


def parse_signal(value: str | int | None, default: int = _signal.SIGTERM) -> int:
    """Signal name ("KILL", "SIGKILL", "sigkill") or number -> number.

    Raises:
        InvalidArgument: no such signal.
    """
    if value is None or value == "":
        return default
    text = str(value).strip()
    if text.isascii() and text.isdigit():
        num = int(text)
        if 0 < num <= 64:
            return num
        raise InvalidArgument(f"Invalid signal: {text}")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(_signal.Signals, name, None) if name in _signal.Signals.__members__ else None
    if sig is None:
        m = re.fullmatch(r"SIGRT(MIN\+|MAX-)([0-9]+)", name)
        if m and int(m.group(2)) <= int(_signal.SIGRTMAX) - int(_signal.SIGRTMIN):
            base = int(_signal.SIGRTMIN) if m.group(1) == "MIN+" else int(_signal.SIGRTMAX)
            return base + int(m.group(2)) if m.group(1) == "MIN+" else base - int(m.group(2))
        raise InvalidArgument(f"Invalid signal: {text}")
    return int(sig)
