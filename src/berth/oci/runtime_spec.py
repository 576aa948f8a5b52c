"""ContainerSpec -> OCI runtime config.json (runtime-spec 1.0.2), as runc/runsc read it.

Strategy: every decision about a container (process, user, mounts, limits,
security) is made once, here, as a pure function of a ContainerSpec; every
isolation driver consumes the same document. No I/O in this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BindMount:
    source: str            # absolute host path
    destination: str       # absolute path in the container
    readonly: bool = False
    options: tuple[str, ...] = ()   # extra options, e.g. ("rprivate",)


@dataclass(frozen=True, slots=True)
class Resources:
    memory: int = 0            # bytes; 0 = unlimited
    memory_swap: int = 0       # bytes incl. memory; 0 = default (2 x memory), -1 = unlimited
    nano_cpus: int = 0         # 1e9 = one CPU; maps to quota/period with period 100000
    cpu_shares: int = 0        # 0 = default
    cpu_quota: int = 0         # microseconds per cpu_period; 0 = unlimited
    cpu_period: int = 0        # microseconds; 0 = default (100000)
    pids_limit: int = 0        # 0 or negative = unlimited


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    args: tuple[str, ...]                  # argv, already joined from entrypoint + cmd (+ init)
    rootfs: str                            # absolute path of the mounted root file system
    env: tuple[str, ...] = ()              # "KEY=value"
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    hostname: str = ""
    tty: bool = False
    readonly_rootfs: bool = False
    mounts: tuple[BindMount, ...] = ()     # binds, plus generated /etc/hosts etc.
    cap_add: tuple[str, ...] = ()          # "NET_ADMIN" or "CAP_NET_ADMIN" or "ALL"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    resources: Resources = field(default_factory=Resources)
    network_mode: str = "none"             # "none" (own netns, loopback only) or "host"
    cgroups_path: str = ""                 # e.g. "/berth/<id>"
    annotations: tuple[tuple[str, str], ...] = ()


def build(spec: ContainerSpec) -> dict[str, Any]:
    """Return the OCI runtime config (config.json content) for *spec*.

    Raises:
        berth.errors.InvalidArgument: an unknown capability name.
    """
    raise NotImplementedError
