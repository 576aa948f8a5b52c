"""A container's Config and HostConfig, typed: what was asked at create, as the record keeps it.

Strategy: one dataclass field per Docker field, its JSON name in the field's metadata, so the
stored form, the API's form and the request's form are read and written by one generic pair
(`_from_doc`/`_to_doc`) and no code outside this module spells a Docker key. The rendering follows
Docker's own structs: every field is shown, with its zero value when it was not given (None where
Docker's field is a pointer), except the Config fields Docker marks `omitempty`. The request's types
were checked before parsing (services.createtypes, services.validate); fields berth does not act on
are kept as sent in `extra`, so inspect shows them back and a later version can read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
JSON = Any  # a value decoded from JSON (the request's or the stored record's), shape checked elsewhere


def _key(name: str, omitempty: bool = False) -> dict[str, Any]:
    return {"key": name, "omitempty": omitempty}


@dataclass(slots=True)
class RestartPolicy:
    name: str = field(default="no", metadata=_key("Name"))  # no, always, unless-stopped, on-failure
    maximum_retry_count: int = field(default=0, metadata=_key("MaximumRetryCount"))


@dataclass(slots=True)
class LogConfig:
    type: str = field(default="json-file", metadata=_key("Type"))
    config: dict[str, str] = field(default_factory=dict, metadata=_key("Config"))


_NESTED: dict[str, type] = {"RestartPolicy": RestartPolicy, "LogConfig": LogConfig}


@dataclass(slots=True)
class ContainerConfig:
    """Docker's Config: the process and its environment, merged from the request and the image."""

    hostname: str = field(default="", metadata=_key("Hostname"))
    domainname: str = field(default="", metadata=_key("Domainname"))
    user: str = field(default="", metadata=_key("User"))
    attach_stdin: bool = field(default=False, metadata=_key("AttachStdin"))
    attach_stdout: bool = field(default=False, metadata=_key("AttachStdout"))
    attach_stderr: bool = field(default=False, metadata=_key("AttachStderr"))
    exposed_ports: dict[str, JSON] | None = field(default=None, metadata=_key("ExposedPorts", True))
    tty: bool = field(default=False, metadata=_key("Tty"))
    open_stdin: bool = field(default=False, metadata=_key("OpenStdin"))
    stdin_once: bool = field(default=False, metadata=_key("StdinOnce"))
    env: list[str] | None = field(default=None, metadata=_key("Env"))
    cmd: list[str] | None = field(default=None, metadata=_key("Cmd"))
    healthcheck: dict[str, JSON] | None = field(default=None, metadata=_key("Healthcheck", True))
    image: str = field(default="", metadata=_key("Image"))
    volumes: dict[str, JSON] | None = field(default=None, metadata=_key("Volumes"))
    working_dir: str = field(default="", metadata=_key("WorkingDir"))
    entrypoint: list[str] | None = field(default=None, metadata=_key("Entrypoint"))
    network_disabled: bool | None = field(default=None, metadata=_key("NetworkDisabled", True))
    mac_address: str | None = field(default=None, metadata=_key("MacAddress", True))
    on_build: list[str] | None = field(default=None, metadata=_key("OnBuild"))
    labels: dict[str, str] = field(default_factory=dict, metadata=_key("Labels"))
    stop_signal: str | None = field(default=None, metadata=_key("StopSignal", True))
    stop_timeout: int | None = field(default=None, metadata=_key("StopTimeout", True))
    shell: list[str] | None = field(default=None, metadata=_key("Shell", True))
    extra: dict[str, JSON] = field(default_factory=dict)  # fields berth does not act on, as sent

    @classmethod
    def from_doc(cls, doc: dict[str, JSON]) -> ContainerConfig:
        """From a Config object (a create request's body, without HostConfig/NetworkingConfig, or a stored one)."""
        return _from_doc(cls, {k: v for k, v in doc.items() if k not in ("HostConfig", "NetworkingConfig")})

    def to_doc(self) -> dict[str, JSON]:
        return _to_doc(self)


@dataclass(slots=True)
class HostConfig:
    """Docker's HostConfig as settled at create (the run plan's runtime and isolation recorded)."""

    binds: list[str] | None = field(default=None, metadata=_key("Binds"))
    log_config: LogConfig = field(default_factory=LogConfig, metadata=_key("LogConfig"))
    network_mode: str = field(default="default", metadata=_key("NetworkMode"))
    port_bindings: dict[str, JSON] | None = field(default=None, metadata=_key("PortBindings"))
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy, metadata=_key("RestartPolicy"))
    auto_remove: bool = field(default=False, metadata=_key("AutoRemove"))
    volumes_from: list[str] | None = field(default=None, metadata=_key("VolumesFrom"))
    console_size: list[int] = field(default_factory=lambda: [0, 0], metadata=_key("ConsoleSize"))
    cap_add: list[str] | None = field(default=None, metadata=_key("CapAdd"))
    cap_drop: list[str] | None = field(default=None, metadata=_key("CapDrop"))
    dns: list[str] | None = field(default=None, metadata=_key("Dns"))
    extra_hosts: list[str] | None = field(default=None, metadata=_key("ExtraHosts"))
    group_add: list[str] | None = field(default=None, metadata=_key("GroupAdd"))
    ipc_mode: str = field(default="", metadata=_key("IpcMode"))
    links: list[str] | None = field(default=None, metadata=_key("Links"))
    pid_mode: str = field(default="", metadata=_key("PidMode"))
    privileged: bool = field(default=False, metadata=_key("Privileged"))
    publish_all_ports: bool = field(default=False, metadata=_key("PublishAllPorts"))
    readonly_rootfs: bool = field(default=False, metadata=_key("ReadonlyRootfs"))
    security_opt: list[str] | None = field(default=None, metadata=_key("SecurityOpt"))
    tmpfs: dict[str, str] | None = field(default=None, metadata=_key("Tmpfs"))
    uts_mode: str = field(default="", metadata=_key("UTSMode"))
    runtime: str = field(default="", metadata=_key("Runtime"))
    isolation: str = field(default="", metadata=_key("Isolation"))
    init: bool | None = field(default=None, metadata=_key("Init"))
    # resources
    cpu_shares: int = field(default=0, metadata=_key("CpuShares"))
    memory: int = field(default=0, metadata=_key("Memory"))
    nano_cpus: int = field(default=0, metadata=_key("NanoCpus"))
    cpu_period: int = field(default=0, metadata=_key("CpuPeriod"))
    cpu_quota: int = field(default=0, metadata=_key("CpuQuota"))
    memory_swap: int = field(default=0, metadata=_key("MemorySwap"))
    memory_swappiness: int | None = field(default=None, metadata=_key("MemorySwappiness"))
    oom_kill_disable: bool | None = field(default=None, metadata=_key("OomKillDisable"))
    pids_limit: int | None = field(default=None, metadata=_key("PidsLimit"))
    mounts: list[dict[str, JSON]] | None = field(default=None, metadata=_key("Mounts"))
    extra: dict[str, JSON] = field(default_factory=dict)  # fields berth does not act on, as sent

    @classmethod
    def from_doc(cls, doc: dict[str, JSON] | None) -> HostConfig:
        return _from_doc(cls, doc or {})

    def to_doc(self) -> dict[str, JSON]:
        return _to_doc(self)

    @property
    def vm(self) -> bool:
        """VM isolation (`--isolation vm|hyperv`, recorded as "hyperv")."""
        return self.isolation == "hyperv"


_KEYED: dict[type, dict[str, dataclasses.Field[Any]]] = {}  # per class: a record is saved at every state change


def _keyed(cls: type) -> dict[str, dataclasses.Field[Any]]:
    if cls not in _KEYED:
        _KEYED[cls] = {f.metadata["key"]: f for f in dataclasses.fields(cls) if "key" in f.metadata}
    return _KEYED[cls]


def _from_doc(cls: type[T], doc: dict[str, JSON]) -> T:
    """*cls* from a JSON object: known keys into fields (null is the field's zero value), the rest into `extra`."""
    known = _keyed(cls)
    values: dict[str, Any] = {}
    rest: dict[str, JSON] = {}
    for key, value in doc.items():
        f = known.get(key)
        if f is None:
            rest[key] = value
        elif key in _NESTED:
            values[f.name] = _from_doc(_NESTED[key], value if isinstance(value, dict) else {})
        elif value is not None:
            values[f.name] = value
    if "extra" in {f.name for f in dataclasses.fields(cls)}:  # type: ignore[arg-type]
        values["extra"] = rest
    return cls(**values)


def _to_doc(value: Any) -> dict[str, JSON]:
    out: dict[str, JSON] = dict(getattr(value, "extra", {}))
    for key, f in _keyed(type(value)).items():
        item = getattr(value, f.name)
        if f.metadata["omitempty"] and (item is None or item is False or item in ("", [], {})):
            continue
        out[key] = _to_doc(item) if dataclasses.is_dataclass(item) else item
    return out


def replace(value: T, **changes: Any) -> T:
    """A copy of a Config or HostConfig with *changes* (field names), for updates that must not be seen half-done."""
    return dataclasses.replace(value, **changes)  # type: ignore[type-var]
