"""The run plan: how a container will run, decided once at create from the request and host facts.

Strategy: a pure function of the request's HostConfig, whether the image runs natively here, and
what the host offers (its runtimes, the default one, its memory). It decides the isolation and
the driver, checks the network mode against them, and checks the namespace modes' spelling;
every refusal is the error a Docker user would get, with what to do instead. What needs the
engine's state (the networks that exist, the containers a mode names) is checked by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import FailedPrecondition, InvalidArgument, NotImplemented_
from berth.vm import sizing
from berth.wire.containerspec import HostConfig

# What the API accepts for HostConfig.Isolation -> the isolation berth applies.
ISOLATIONS = {"": "process", "default": "process", "process": "process", "vm": "hyperv", "hyperv": "hyperv"}
def namespace_mode(host: HostConfig, key: str) -> str:
    """HostConfig's PidMode, IpcMode or UTSMode ("" when not given)."""
    return {"PidMode": host.pid_mode, "IpcMode": host.ipc_mode, "UTSMode": host.uts_mode}[key]


NAMESPACE_MODES = (("PidMode", ("", "host", "private")), ("IpcMode", ("", "host", "private", "shareable")),
                   ("UTSMode", ("", "host")))


@dataclass(frozen=True)
class HostOffer:
    """What this host can run."""

    runtimes: frozenset[str]   # the OCI runtimes found ("runc", "runsc"), and "vm" when QEMU is there
    default_runtime: str
    memory_mib: int


@dataclass(frozen=True)
class RunPlan:
    isolation: str        # "process" or "hyperv"
    isolation_field: str  # HostConfig.Isolation as inspect shows it ("default" stays "default", as Docker)
    runtime: str          # the OCI runtime ("runc", "runsc"); for VM isolation, the one its guest uses
    network: str          # HostConfig.NetworkMode, "default" when not given
    sandboxed: bool       # gVisor: loopback only on this host

    @property
    def vm(self) -> bool:
        return self.isolation == "hyperv"


def plan(host: HostConfig, image_ref: str, image_platform: str, native: bool, offer: HostOffer) -> RunPlan:
    """Decide how a container of *image_ref* (of *image_platform*; *native*: runs without emulation)
    runs with HostConfig *host* on a host offering *offer*.

    Raises:
        InvalidArgument: an unknown isolation, runtime or namespace mode, a combination that cannot be,
            or a VM larger than the host's memory.
        NotImplemented_: what berth cannot do on this host (a foreign image in a VM, networking under runsc).
        FailedPrecondition: VM isolation without QEMU.
    """
    given = host.isolation.lower()
    if given not in ISOLATIONS:
        raise InvalidArgument(f"invalid isolation {given!r}: use process, vm or hyperv")
    isolation = ISOLATIONS[given]
    if not native and isolation == "hyperv":
        raise NotImplemented_(f"{image_ref} is a {image_platform} image: berth runs foreign-architecture "
                              "images under emulation in process isolation only; use --isolation process")
    runtime = host.runtime or offer.default_runtime
    if isolation == "hyperv":
        if "vm" not in offer.runtimes:
            raise FailedPrecondition("VM isolation needs QEMU: run the README's set-up "
                                     "(apt-get install qemu-system-x86), or use --isolation process")
        sizing.check_fits(sizing.guest_mib(host.memory), offer.memory_mib)
        if host.runtime not in ("", "runc"):
            raise InvalidArgument(f"--runtime {host.runtime} and --isolation {given} cannot be combined: "
                                  "a VM-isolated container runs in its own kernel")
        runtime = offer.default_runtime if offer.default_runtime != "vm" else "runc"
    if runtime not in offer.runtimes or runtime == "vm":
        names = ", ".join(sorted(n for n in offer.runtimes if n != "vm"))
        raise InvalidArgument(f"unknown or invalid runtime name: {runtime} (available: {names})")
    network = host.network_mode or "default"
    if isolation == "hyperv" and (network == "host" or network.startswith("container:")):
        raise InvalidArgument(f"--network {network} cannot be used with VM isolation: a VM-isolated container "
                              "has its own kernel and network stack (use a bridge network or none)")
    sandboxed = isolation != "hyperv" and runtime == "runsc"
    if sandboxed and (network not in ("default", "none", "host")
                      or any(host.port_bindings or {}) or host.publish_all_ports):
        raise NotImplemented_("gVisor (runsc) cannot set up its own network stack on this host, so runsc "
                              "containers have loopback only: use --network none, or the default runtime")
    for key, allowed in NAMESPACE_MODES:
        mode = namespace_mode(host, key)
        if not isinstance(mode, str) or (mode not in allowed and not mode.startswith("container:")) \
                or (key == "UTSMode" and mode.startswith("container:")):
            raise InvalidArgument(f"invalid {key} {mode!r}: use {', '.join(a for a in allowed if a)}"
                                  f"{'' if key == 'UTSMode' else ' or container:<name|id>'}")
    return RunPlan(isolation, "default" if given == "default" else isolation, runtime, network, sandboxed)
