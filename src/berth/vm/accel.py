"""Which accelerator utility VMs get: KVM where it really works, TCG otherwise.

Strategy: /dev/kvm existing is not enough. This workplace's /dev/kvm is served by
kvm_pvm, which boots only PVM guest kernels: a stock kernel hangs under it. So
the choice is made from what the kernel module is (pure: `choose(modules, ...)`),
and the reason is kept so `docker info` and the logs can say why TCG is used.
A module that claims hardware virtualisation (kvm_intel, kvm_amd) is trusted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Accel:
    name: str      # "kvm" or "tcg"
    reason: str    # why, in words for `docker info` and logs


def choose(loaded: set[str], kvm_device: bool) -> Accel:
    """Pick the accelerator from the kernel's module names (/sys/module) and whether /dev/kvm exists."""
    if not kvm_device:
        return Accel("tcg", "no /dev/kvm: QEMU emulates the CPU in software (TCG)")
    if "kvm_pvm" in loaded:
        return Accel("tcg", "/dev/kvm is kvm_pvm, which boots only PVM guest kernels: using TCG (software)")
    if loaded & {"kvm_intel", "kvm_amd"}:
        return Accel("kvm", "KVM (hardware virtualisation)")
    return Accel("tcg", "/dev/kvm has no hardware backend this host shows (kvm_intel/kvm_amd): using TCG")


def detect() -> Accel:
    try:
        loaded = {m for m in os.listdir("/sys/module") if m.startswith("kvm")}  # built in or loaded
    except OSError:
        loaded = set()
    return choose(loaded, os.path.exists("/dev/kvm"))
