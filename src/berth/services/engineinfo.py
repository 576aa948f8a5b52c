"""What `docker version` and `docker info` report about the engine and its host, read once at start.

The API's system routes render these facts; reading them (the kernel, the tools' versions, the VM
accelerator, seccomp) belongs below the API, here.
"""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from berth.host import proc
from berth.runtime.base import Runtime
from berth.runtime.oci import OciRuntime
from berth.vm.accel import detect as detect_accel

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class EngineInfo:
    kernel: str
    arch: str                       # Go's spelling (amd64), as `docker version` shows it
    machine: str                    # the kernel's (x86_64), as `docker info` shows it
    os_name: str
    security_options: tuple[str, ...]
    runtimes: Mapping[str, tuple[str, str]]  # OCI runtime name -> (binary, version)
    conmon_version: str
    vm: bool                        # VM isolation is available
    qemu_version: str
    accel_name: str
    accel_reason: str

    @classmethod
    def probe(cls, runtimes: Mapping[str, Runtime]) -> EngineInfo:
        oci = {name: rt for name, rt in runtimes.items() if isinstance(rt, OciRuntime)}
        vm = "vm" in runtimes
        accel = detect_accel()
        return cls(
            kernel=platform.release(), arch=ARCH.get(platform.machine(), platform.machine()),
            machine=platform.machine(), os_name=_os_name(), security_options=tuple(_security_options()),
            runtimes={name: (rt.binary, _version([rt.binary, "--version"])) for name, rt in oci.items()},
            conmon_version=_version(["conmon", "--version"]), vm=vm,
            qemu_version=_version(["qemu-system-x86_64", "--version"]) if vm else "",
            accel_name=accel.name, accel_reason=accel.reason)


def _version(argv: list[str]) -> str:
    first = proc.first_line(argv)
    return first.split()[-1] if first else ""


def _security_options() -> list[str]:
    """`docker info`'s SecurityOptions: only what is in force. berth applies its built-in seccomp
    policy where the kernel has seccomp; it applies no AppArmor or SELinux policy, no user namespace,
    and no-new-privileges is not a daemon default."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            has_seccomp = any(line.startswith("Seccomp:") for line in f)
    except OSError:
        has_seccomp = False
    return ["name=seccomp,profile=builtin"] if has_seccomp else []


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def daemon_id(root: str) -> str:
    """The engine's ID, made once and kept in the data root."""
    path = os.path.join(root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        with open(path, "w") as f:
            f.write(value)
        return value
