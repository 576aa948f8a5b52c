"""Pure parts of a container's record: its Config merged from request and image, its first record,
its restart decision, its generated name.

Strategy: no I/O and no engine state here: `Containers.create` gathers the facts (the image's
config, the run plan, the mounts, the networks) and these functions shape the record from them,
so each rule is tested as a function of its inputs.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass, field

from berth import timefmt
from berth.network.endpoint import EndpointSettings
from berth.oci.imageconfig import RuntimeConfig
from berth.services import bundle as bundles
from berth.services import hostlimits
from berth.services.records import ContainerRecord, ContainerState
from berth.services.runplan import RunPlan
from berth.wire.containerspec import (
    ContainerConfig,
    HostConfig,
    LogConfig,
    RestartPolicy,
    replace,
)
from berth.wire.mountspec import Mount

_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zealous")
_NOUNS = ("anchor", "beacon", "buoy", "cove", "dock", "harbor", "jetty", "keel", "lagoon", "marina",
          "pier", "quay", "reef", "skiff", "tide", "wharf", "yawl", "schooner")


def generate_name(taken: Collection[str]) -> str:
    """A free name of Docker's adjective_noun shape (a number added when the pair is taken)."""
    while True:
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if name in taken:
            name += str(secrets.randbelow(100))
        if name not in taken:
            return name


def new_id(taken: Collection[str]) -> str:
    """A fresh 64-hex container id whose short form is not all digits (it could read as a number)."""
    cid = secrets.token_hex(32)
    while cid in taken or cid[:12].isdigit():
        cid = secrets.token_hex(32)
    return cid


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A create request, parsed (api/): its Config and HostConfig as sent, and the networks it names."""

    config: ContainerConfig
    host: HostConfig
    networks: dict[str, EndpointSettings] = field(default_factory=dict)  # NetworkingConfig.EndpointsConfig


@dataclass(frozen=True, slots=True)
class ResourceUpdate:
    """`docker update`: the limits given (None, or 0, leaves one as it is, as Docker does), and a restart policy."""

    memory: int | None = None
    memory_swap: int | None = None
    nano_cpus: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    pids_limit: int | None = None
    oom_kill_disable: bool | None = None
    restart_policy: RestartPolicy | None = None  # applied when it names a policy
    extra: tuple[tuple[str, object], ...] = ()   # HostConfig.extra knobs given (hostlimits.UPDATABLE)


def updated_host(host: HostConfig, update: ResourceUpdate) -> HostConfig:
    """*host* with *update* applied; CPUs given one way (NanoCpus, or quota and period) clear the other way."""
    changes: dict[str, object] = {name: getattr(update, name) for name in (
        "memory", "memory_swap", "nano_cpus", "cpu_shares", "cpu_quota", "cpu_period", "pids_limit",
        "oom_kill_disable") if getattr(update, name) not in (None, 0, False)}
    if update.restart_policy is not None and update.restart_policy.name:
        changes["restart_policy"] = update.restart_policy
    if changes.get("nano_cpus"):
        changes["cpu_quota"] = changes["cpu_period"] = 0
    elif changes.get("cpu_quota") or changes.get("cpu_period"):
        changes["nano_cpus"] = 0
    if update.extra:
        changes["extra"] = {**host.extra, **dict(update.extra)}
    updated = replace(host, **changes)
    hostlimits.check_update(updated)
    return updated


def merge_image_config(request: ContainerConfig, image: RuntimeConfig) -> ContainerConfig:
    """The container's Config: the request's fields over the image's defaults (as Docker merges them)."""
    entrypoint = request.entrypoint
    if entrypoint is None:  # null or absent: the image's (only [""] clears it, as in Docker)
        entrypoint = list(image.entrypoint) if image.entrypoint is not None else None
    elif entrypoint == [""]:
        entrypoint = None
    cmd = request.cmd
    if not cmd and not request.entrypoint:
        cmd = list(image.cmd) if image.cmd is not None else None
    env = list(image.env or ())
    for e in request.env or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    return replace(
        request, entrypoint=entrypoint, cmd=cmd, env=env,
        working_dir=request.working_dir or image.working_dir, user=request.user or image.user,
        stop_signal=request.stop_signal or image.stop_signal or None,
        shell=request.shell or (list(image.shell) if image.shell else None),
        labels={**(image.labels or {}), **request.labels},
        volumes={**{path: {} for path in image.volumes or ()}, **(request.volumes or {})} or request.volumes)


def settled_host_config(host: HostConfig, run: RunPlan) -> HostConfig:
    """The HostConfig as recorded: the plan's runtime, isolation and network mode, Docker's defaults filled in."""
    return replace(
        host, network_mode=run.network, runtime=run.runtime, isolation=run.isolation_field,
        # -1 is the CLI's "unset", stored as Docker stores it
        memory_swappiness=None if host.memory_swappiness == -1 else host.memory_swappiness,
        log_config=LogConfig(host.log_config.type or "json-file", host.log_config.config or {}),
        restart_policy=host.restart_policy if host.restart_policy.name else RestartPolicy())


def new_record(cid: str, name: str, cfg: ContainerConfig, host: HostConfig, image_id: str, image_os: str,
               binds: list[Mount], endpoints: dict[str, EndpointSettings]) -> ContainerRecord:
    """A created container's first record (State "created")."""
    args = bundles.process_args(cfg)
    return ContainerRecord(id=cid, name=name, created=timefmt.now(), path=args[0], args=args[1:], image=image_id,
                           config=cfg, host=host, state=ContainerState(), platform=image_os, binds=binds,
                           endpoints_config=endpoints, endpoints_listed=True)


def should_restart(record: ContainerRecord, code: int) -> bool:
    """Does the restart policy start the container again after it exited with *code*?"""
    policy = record.host.restart_policy
    name = policy.name or "no"
    if record.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        limit = policy.maximum_retry_count
        return code != 0 and (limit == 0 or record.restart_count < limit)
    return name in ("always", "unless-stopped")


def restart_delay(restart_count: int) -> float:
    """Seconds before a restart by policy: 100 ms, doubling with each restart, at most a minute."""
    return min(60.0, 0.1 * 2 ** min(restart_count, 10))


def label_matches(labels: dict[str, str], spec: str) -> bool:
    """A `label=` filter: KEY (present) or KEY=VALUE (equal)."""
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)
