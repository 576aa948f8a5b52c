"""The command lines a utility VM starts with: QEMU's argv and the guest kernel's.

    argv = qemu_argv(artifacts, agent_socket=wd / "agent.sock", shares={"rootfs": root},
                     cmdline=kernel_cmdline(host_tsc_khz()))

Strategy: functions of what they are given (only `host_tsc_khz`, and
`accel.detect` when no accelerator is named, look at the host), so the same
configuration always gives the same command lines: a template and its clones
differ only in how the RAM file is mapped and in `-incoming`. The kernel line
carries the host's TSC frequency (`tsc_early_khz`, and `lpj` from it) because a
microvm guest without it hangs calibrating its clock. QEMU runs under its own
seccomp sandbox (`SANDBOX`), and every tag, path or device name that goes into
one of its comma-separated options is checked first: a comma or an odd tag is
refused with InvalidArgument, never passed on.

An idle VM should cost the host (almost) nothing: every guest timer interrupt
wakes QEMU's main loop (the local APIC timer is a QEMU timer) and then the vCPU
thread, so both lines keep periodic wakeups out -- `MACHINE` on the QEMU side,
`_QUIET_CMDLINE` on the guest side. Measured on TCG (one idle VM, 60 s): about
0.5 % of a core and ~80 main-loop wakeups a second before, about 0.01 % and ~1
wakeup a second after.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path

from berth.errors import FailedPrecondition, InvalidArgument
from berth.vm import accel
from berth.vm.prepare import QEMU, Artifacts

PORT_NAME = "berth.agent"
KERNEL_HZ = 250  # Debian's CONFIG_HZ; lpj is loops per jiffy
MEMORY_ID = "mem"  # the RAM backend's id: it names the RAM block, so template and clones share it

_BASE_CMDLINE = (
    "console=ttyS0 quiet loglevel=1 panic=-1 init_on_alloc=0 tsc=reliable no_timer_check rcupdate.rcu_expedited=1 "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd cryptomgr.notests noreplace-smp "
    "mitigations=off nokaslr random.trust_cpu=on pci=lastbus=0 edd=off audit=0 nowatchdog"
)

# Periodic guest work that would wake an idle guest, and so its QEMU, for nothing.
# kcompactd's proactive compaction wakes every 500 ms (0 turns it off; compaction
# on demand, for a high-order allocation, still happens); the vmstat shepherd folds
# per-CPU counters every second (an idle CPU folds its own on going idle anyway);
# PSI averages every 2 s while anything runs (nothing in the guest reads
# /proc/pressure). With these gone an idle guest takes ~1 timer interrupt a second
# instead of ~7.
_QUIET_CMDLINE = "sysctl.vm.compaction_proactiveness=0 sysctl.vm.stat_interval=10 psi=0"

# microvm without its i8254 PIT. The guest never uses it: with the TSC's frequency
# known (tsc_early_khz) Linux calibrates the local APIC timer against the TSC. But
# the PIT, left counting in square-wave mode, is a QEMU main-loop timer firing every
# 27.5 ms -- ~73 main-loop wakeups a second, most of an idle VM's host CPU -- though
# its interrupt stays masked. Measured with `-cpu max` only: under `-cpu qemu64`
# the same guest without a PIT takes ~260 timer interrupts a second.
MACHINE = "microvm,pit=off"


def parse_cpu_khz(cpuinfo: str) -> int | None:
    """The first "cpu MHz" of /proc/cpuinfo, in kHz."""
    m = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", cpuinfo, re.M)
    return int(float(m.group(1)) * 1000) if m else None


def host_tsc_khz() -> int:
    """The host's TSC frequency in kHz: the kernel's tsc_khz when exposed, else cpuinfo."""
    for path in ("/sys/devices/system/cpu/cpu0/tsc_freq_khz",):
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError):
            pass
    try:
        khz = parse_cpu_khz(Path("/proc/cpuinfo").read_text())
    except OSError:
        khz = None
    if not khz:
        raise FailedPrecondition("cannot tell the host's TSC frequency (no cpu MHz in /proc/cpuinfo)")
    return khz


def kernel_cmdline(tsc_khz: int, extra: str = "", *, vcpus: int = 1) -> str:
    """The guest kernel's command line; tsc_early_khz is what keeps microvm guests from hanging.

    loglevel=1 lets only emergency messages (a panic's) reach the console log; panic=-1
    with QEMU's -no-reboot turns a guest panic into QEMU's exit. init_on_alloc=0: the
    guest kernel does not zero every page it allocates, which would copy template pages
    into each clone for nothing (user pages are zeroed regardless). `_QUIET_CMDLINE`
    keeps an idle guest from waking up (and waking its QEMU) several times a second.
    """
    lpj = tsc_khz * 1000 // KERNEL_HZ
    line = f"{_BASE_CMDLINE} {_QUIET_CMDLINE} nr_cpus={vcpus} tsc_early_khz={tsc_khz} lpj={lpj}"
    return f"{line} {extra}".strip()


def qemu_argv(artifacts: Artifacts, *, agent_socket: Path, shares: Mapping[str, Path],
              cmdline: str, mem_mib: int = 256, console_log: Path | None = None,
              qemu: str = QEMU, qmp_socket: Path | None = None, memory_file: Path | None = None,
              memory_shared: bool = True, incoming: bool = False, accelerator: str | None = None,
              vcpus: int = 1, readonly: Collection[str] = (), tap: str | None = None) -> list[str]:
    """QEMU's argv: microvm (no PIT: `MACHINE`), virtio-serial to *agent_socket*, one virtio-9p per share.

    *accelerator* is "kvm" or "tcg"; None asks berth.vm.accel (KVM only where it really works).

    With *memory_file*, guest RAM is that file (`share=on`: a template writes
    through to it; off: a clone's private copy-on-write mapping of it); with
    *incoming*, QEMU waits for `migrate-incoming` instead of booting. The shares
    tagged in *readonly* are exported read-only by QEMU itself (the guest cannot undo it).
    With *tap*, the guest gets a virtio-net card on that tap device (QEMU makes the tap
    when it does not exist, and removes it when it exits).
    """
    argv = [qemu, "-M", MACHINE, "-cpu", "max", "-accel", accelerator or accel.detect().name,
            "-m", str(mem_mib), "-smp", str(vcpus),
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-sandbox", SANDBOX,
            "-kernel", str(artifacts.vmlinux), "-initrd", str(artifacts.initramfs), "-append", cmdline]
    if memory_file is not None:
        if "," in str(memory_file):
            raise InvalidArgument(f"memory file path may not contain a comma: {memory_file}")
        argv += ["-object", f"memory-backend-file,id={MEMORY_ID},size={mem_mib}M,mem-path={memory_file},"
                            f"share={'on' if memory_shared else 'off'}",
                 "-machine", f"memory-backend={MEMORY_ID}"]
    if console_log is not None:
        argv += ["-serial", f"file:{console_log}"]
    if qmp_socket is not None:
        argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    argv += ["-chardev", f"socket,id=agent,path={agent_socket}",
             "-device", "virtio-serial-device,id=vser0",
             "-device", f"virtserialport,bus=vser0.0,chardev=agent,name={PORT_NAME}"]
    for i, (tag, path) in enumerate(shares.items()):
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,31}", tag):
            raise InvalidArgument(f"invalid 9p tag {tag!r}")
        if "," in str(path):
            raise InvalidArgument(f"9p share path may not contain a comma: {path}")
        ro = ",readonly=on" if tag in readonly else ""
        argv += ["-fsdev", f"local,id=fs{i},path={path},security_model=none{ro}",
                 "-device", f"virtio-9p-device,fsdev=fs{i},mount_tag={tag}"]
    if tap is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", tap):
            raise InvalidArgument(f"invalid tap device name {tap!r}")
        argv += ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
                 "-device", "virtio-net-device,netdev=net0"]
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


# QEMU's own seccomp filter: no obsolete syscalls, no setuid/setgid/capabilities,
# no fork/exec (so migrations go through descriptors, never `exec:`), no
# scheduler or affinity changes. QEMU runs as root: this is what is left to
# an attacker who gets code execution in it through a device model.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
