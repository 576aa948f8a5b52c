"""The per-container monitor for VM isolation, first half: set the VM up, then become the C monitor.

    python -m berth.vm.shim --bundle DIR --cid ID --vm-dir VMDIR --attach PATH
                            --control PATH --workdir DIR [--stdin] [--stdin-once]
                            [--sync-fd N] [--cold]

Strategy: conmon's role, for a utility VM, in two programs sharing one process.
This Python half detaches from berthd (double fork, new session), boots or
clones the utility VM with the bundle's root file system (and each bind-mount
directory) shared in over virtio-9p, mounts them in the guest, writes the
bundle's `pid` (QEMU's) and `shim.pid`, puts QEMU in the container's cgroups,
makes the `ctl` fifo and binds the attach (SOCK_SEQPACKET) and control sockets.
Then it execs the C monitor (`berth-vm-monitor`, built by berth.vm.prepare;
see its source for what it does while the container lives) in this same
process: QEMU stays its child and `shim.pid` stays true, and the open
descriptors it needs are handed over as they are. `Handover` is that hand-over
as a value; its `argv()` is the monitor's command line. The monitor reports
{"pid": N} on the sync fd; a failure before the exec is reported from here as
{"pid": -1, "message": ...}, after the VM is stopped and everything undone.

The container's processes are started from EXEC frames built here
(`main_frame`, `probe_frame`: the guest's OOM count after a SIGKILL) and by
the clients of the control socket (berth.vm.execclient), so the C side never
parses JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from berth.errors import BerthError, CommandFailed, FailedPrecondition, InvalidArgument
from berth.host import cgroups, fstree, mount
from berth.vm import clones, execclient, shares, sizing
from berth.vm.agentchannel import DEFAULT_PATH
from berth.vm.boot import UtilityVM
from berth.vm.prepare import monitor_binary, prepare
from berth.wire import agentproto as ap

log = logging.getLogger("berth.vm.shim")

PROBE_ARGV = ("/bin/busybox", "cat", "/proc/vmstat")  # in the guest's own root: its oom_kill count


# ---- the hand-over (pure) -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Handover:
    """What the C monitor takes over: paths, QEMU's pid, and the open descriptors by number."""

    cid: str
    bundle: str
    workdir: str          # QEMU's sockets and console log; removed at the end
    attach: str           # the attach socket's path (unlinked at the end)
    control: str          # the control socket's path (unlinked at the end)
    qemu_pid: int
    agent_fd: int         # the agent channel's connection
    attach_fd: int        # the attach listener
    control_fd: int       # the control listener
    ctl_fd: int           # the ctl fifo, open read-write
    log_fd: int           # container.log, open for appending
    main_exec: str        # a file holding the main process's EXEC frame
    probe_exec: str = ""  # a file holding the OOM probe's EXEC frame
    sync_fd: int | None = None
    stdin: bool = False
    stdin_once: bool = False
    cgroups: tuple[str, ...] = ()   # removed at the end
    unmounts: tuple[str, ...] = ()  # staged host bind mounts, detached at the end
    log_size_max: int = 0           # bytes of container.log before the monitor rotates it; 0 = no limit

    def fds(self) -> tuple[int, ...]:
        """The descriptors that must survive the exec."""
        fds = (self.agent_fd, self.attach_fd, self.control_fd, self.ctl_fd, self.log_fd)
        return fds if self.sync_fd is None else (*fds, self.sync_fd)

    def argv(self, binary: str) -> list[str]:
        """The monitor's command line (its argv[0] is *binary*; `cid` is in it, for VmRuntime)."""
        argv = [binary, "--cid", self.cid, "--bundle", self.bundle, "--workdir", self.workdir,
                "--attach", self.attach, "--control", self.control, "--qemu-pid", str(self.qemu_pid),
                "--agent-fd", str(self.agent_fd), "--attach-fd", str(self.attach_fd),
                "--control-fd", str(self.control_fd), "--ctl-fd", str(self.ctl_fd),
                "--log-fd", str(self.log_fd), "--main-exec", self.main_exec]
        if self.probe_exec:
            argv += ["--probe-exec", self.probe_exec]
        if self.sync_fd is not None:
            argv += ["--sync-fd", str(self.sync_fd)]
        if self.stdin:
            argv.append("--stdin")
            if self.stdin_once:
                argv.append("--stdin-once")
        for path in self.cgroups:
            argv += ["--cgroup", path]
        for path in self.unmounts:
            argv += ["--unmount", path]
        if self.log_size_max > 0:
            argv += ["--log-size-max", str(self.log_size_max)]
        return argv


def main_frame(config: Mapping[str, Any]) -> bytes:
    """The container's process (config.json's) as an EXEC frame.

    A console size in the config is kept; without one the size is 0x0, which
    the monitor replaces by a size given on the ctl fifo before the start.
    """
    process = config["process"]
    size = process.get("consoleSize") or {}
    return execclient.process_frame(process, rows=int(size.get("height", 0)), cols=int(size.get("width", 0)))


def probe_frame() -> bytes:
    """The OOM probe: the guest's /proc/vmstat, read with the guest's own busybox."""
    return ap.exec_frame(0, PROBE_ARGV, env=[f"PATH={DEFAULT_PATH}"])


# ---- set-up ---------------------------------------------------------------------------------

class Setup:
    """Everything up to the hand-over; undone by `undo` when it fails."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bundle = Path(args.bundle)
        self.config: dict[str, Any] = json.loads((self.bundle / "config.json").read_text())
        self.host_mounts: list[Path] = []  # staged files bind-mounted on the host

    def stage(self, p: shares.Plan, stage_dir: Callable[[str], Path]) -> None:
        """Put the plan's host side in place: /etc copies, mount points in the root, staged files
        (each stage tag's files in *stage_dir(tag)*).

        A staged file is a hard link to the bind's source, or (across file
        systems) a bind mount of it, undone by the monitor (or `undo`).
        """
        # The root is the guest's to shape (it is root in its VM and writes it through 9p between
        # starts): every path in it is resolved inside it (berth.host.fstree), never by host path,
        # so a symlinked /etc/hosts is replaced inside the root, never followed out of it.
        with fstree.Root(self.config["root"]["path"]) as root:
            for src, dest in p.copies:
                try:
                    fstree.write_file(root, dest, src.read_bytes(), 0o644)
                except (BerthError, OSError) as exc:
                    raise InvalidArgument(f"cannot write {dest} in the container's root: {exc}") from exc
            for d in p.dirs:
                with contextlib.suppress(BerthError, OSError):  # the mount point, on the host side of the share
                    os.close(fstree.mkdirs(root, d.destination))
        for why in p.skipped:
            log.warning("%s: not shared into the VM", why)
        for f in p.files:
            source = os.path.realpath(f.source)  # a symlink is bound by its target, as the kernel does
            stage = stage_dir(f.stage_tag)
            stage.mkdir(parents=True, exist_ok=True)
            target = stage / f.name
            try:
                os.link(source, target)
            except OSError:
                target.touch()
                mount.mount(str(source), str(target), "", flags=mount.MS_BIND)
                self.host_mounts.append(target)

    def open_ctl(self) -> int:
        """Make the resize fifo before the container is reported created (resizes follow start at once)."""
        path = self.bundle / "ctl"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o600)
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def prepare_host(self, workdir: Path, stage_dir: Callable[[str], Path]) -> HostSide:
        """The host side, before there is a VM: exec frames, the mount plan and its staging, sockets, card."""
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "main.exec").write_bytes(main_frame(self.config))  # a bad process spec fails here, early
        (workdir / "probe.exec").write_bytes(probe_frame())
        plan = shares.plan(self.config.get("mounts") or [], path_kind)
        attach = _listen(self.args.attach, socket.SOCK_SEQPACKET)
        control = _listen(self.args.control, socket.SOCK_STREAM)
        empty = workdir / "empty"
        empty.mkdir(exist_ok=True)
        self.stage(plan, stage_dir)
        vm_shares = shares.shares(plan, Path(self.config["root"]["path"]), stage_dir, empty)
        return HostSide(plan, vm_shares, _nic(self.bundle), attach, control, empty)

    async def run(self) -> NoReturn:
        """Start the VM, mount what the container needs, and exec the monitor (or raise)."""
        args = self.args
        vm_dir = Path(args.vm_dir)
        artifacts = prepare(vm_dir)
        workdir = Path(args.workdir)
        host = self.prepare_host(workdir, lambda tag: workdir / f"stage-{tag}")
        async with clones.start_vm(artifacts, vm_dir, shares=host.shares,
                                   mem_mib=sizing.memory_mib(self.config),
                                   vcpus=sizing.vcpus(self.config, os.cpu_count() or 1),
                                   readonly=host.plan.readonly_tags, workdir=workdir,
                                   templates=not args.cold, tap=host.nic.get("tap")) as vm:
            await self.finish(vm, host, workdir, monitor_binary(vm_dir))

    async def run_pooled(self, vm: UtilityVM, workdir: Path, monitor: Path,
                         adopt_card: Callable[[str], None] | None) -> NoReturn:
        """Take over a pooled VM (berth.vm.poolmember) whose work directory is *workdir*: the
        container's directories are bind-mounted into its shares' subdirectories m, its card
        takes the container's tap's place (*adopt_card(tap)*), its clock and RNG are set again;
        then as `run`. (The shim itself never imports netlink: pyroute2 costs ~70 ms of import
        at every VM start; a pooled VM imports it while it waits.)"""
        host = self.prepare_host(workdir, lambda tag: workdir / tag / "m")
        for tag, source in host.shares.items():
            target = workdir / tag / "m"
            if source in (target, host.empty):
                continue
            mount.mount(str(source), str(target), "", flags=mount.MS_BIND | mount.MS_REC)
            self.host_mounts.append(target)
        if host.nic:
            if adopt_card is None:
                raise FailedPrecondition("this pooled VM has no network card")
            adopt_card(host.nic["tap"])
        await vm.fresh_identity()  # it waited in the pool: its clock is behind, its RNG seen by no one yet
        await self.finish(vm, host, workdir, monitor, subdir=True)

    async def finish(self, vm: UtilityVM, host: HostSide, workdir: Path, monitor: Path, *,
                     subdir: bool = False) -> NoReturn:
        """With the VM up: its card, the root and volumes mounted in the guest, then exec the monitor."""
        args = self.args
        if host.nic:  # loopback and the hostname are the agent's (at boot, and when it mounts the root)
            try:
                await vm.netconf(ap.NetConf(host.nic["mac"], host.nic["address"], host.nic.get("gateway", "")))
            except (CommandFailed, KeyError) as exc:
                raise FailedPrecondition(f"configuring the VM's network card failed: {exc}") from exc
        root = await vm.mount("rootfs", execclient.GUEST_ROOT, subdir=subdir)
        plan = host.plan
        if plan.share_count() or plan.tmpfs:
            script = shares.guest_script(plan, root, subdir=subdir)
            code, _, err = await vm.run(["/bin/busybox", "sh", "-c", script])
            if code != 0:
                raise FailedPrecondition(f"mounting the container's volumes in the VM failed: "
                                         f"{err.decode(errors='replace').strip()}")
        (self.bundle / "pid").write_text(f"{vm.qemu.pid}\n")
        joined = cgroups.join(args.cid, vm.qemu.pid)  # for stats: what the VM costs the host
        handover = Handover(
            cid=args.cid, bundle=str(self.bundle), workdir=str(workdir), attach=args.attach,
            control=args.control, qemu_pid=vm.qemu.pid, agent_fd=_agent_fd(vm),
            attach_fd=host.attach.fileno(), control_fd=host.control.fileno(), ctl_fd=self.open_ctl(),
            log_fd=os.open(self.bundle / "container.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            main_exec=str(workdir / "main.exec"), probe_exec=str(workdir / "probe.exec"),
            sync_fd=args.sync_fd, stdin=args.stdin, stdin_once=args.stdin_once,
            cgroups=tuple(str(d) for d in joined), unmounts=tuple(str(t) for t in self.host_mounts),
            log_size_max=args.log_size_max)
        _exec(str(monitor), handover)

    def undo(self) -> None:
        """After a failed set-up (the VM is already stopped): what the monitor would have removed."""
        for target in reversed(self.host_mounts):
            with contextlib.suppress(Exception):
                mount.unmount(str(target))
        cgroups.remove(self.args.cid)
        remove_workdir(Path(self.args.workdir))
        for path in (self.args.attach, self.args.control):
            with contextlib.suppress(OSError):
                os.unlink(path)
        _write(self.bundle / "exit", "255")


@dataclass(frozen=True, slots=True)
class HostSide:
    """What `Setup.prepare_host` made: the plan, each 9p tag's host directory, the card, the listeners."""

    plan: shares.Plan
    shares: dict[str, Path]
    nic: dict[str, str]
    attach: socket.socket
    control: socket.socket
    empty: Path  # the directory behind the spare (padding) shares


def remove_workdir(workdir: Path) -> None:
    """Remove a VM work directory, unless something is still mounted below it (then it is left, and
    logged): deleting through a bind mount would delete the container's own files."""
    left = mount.mounts_under(str(workdir))
    if left:
        log.error("not removing %s: still mounted below it: %s", workdir, ", ".join(left))
        return
    shutil.rmtree(workdir, ignore_errors=True)


def _nic(bundle: Path) -> dict[str, str]:
    """The VM's network card, as the network service wrote it (network.json: tap, mac, address, gateway)."""
    try:
        doc = json.loads((bundle / "network.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in doc.items() if v} if isinstance(doc, dict) and doc.get("tap") else {}


def _agent_fd(vm: UtilityVM) -> int:
    """The descriptor of the VM's agent channel (quiet now: every request has had its answer)."""
    return vm.channel_fd()  # handed over, never used here again


def _listen(path: str, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, kind)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _exec(binary: str, handover: Handover) -> NoReturn:
    for fd in handover.fds():
        os.set_inheritable(fd, True)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(binary, handover.argv(binary))


def path_kind(path: Path) -> str:
    return "dir" if path.is_dir() else "file" if path.exists() else "missing"


def _report(fd: int | None, doc: dict[str, Any]) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(doc).encode() + b"\n")
        os.close(fd)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berth-vm-shim")
    p.add_argument("--bundle", required=True)
    p.add_argument("--cid", required=True)
    p.add_argument("--vm-dir", required=True)
    p.add_argument("--attach", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--workdir", required=True, help="short directory for QEMU's sockets (unix paths are limited)")
    p.add_argument("--stdin", action="store_true")
    p.add_argument("--stdin-once", action="store_true")
    p.add_argument("--sync-fd", type=int)
    p.add_argument("--cold", action="store_true", help="always cold-boot (no template clone)")
    p.add_argument("--log-size-max", type=int, default=0, help="rotate container.log past this many bytes")
    return p.parse_args(argv)


def detach(pid_file: Path, log_file: Path, log_mode: int, label: str) -> None:
    """Leave berthd (double fork, a session of our own): the container must outlive it. Then the
    pid file, stdio to *log_file*, logging with *label*, SIGPIPE ignored (a closed pipe is an OSError)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.umask(0o077)  # sockets, logs, QEMU's files and templates: root only
    if os.fork() > 0:
        os._exit(0)
    pid_file.write_text(f"{os.getpid()}\n")
    logfd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, log_mode)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {label}: %(message)s")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def run_until_sigterm(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run *work()* in an event loop; SIGTERM cancels it (so its context managers stop the VM)."""
    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        await work()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bundle = Path(args.bundle)
    detach(bundle / "shim.pid", bundle / "shim.log", 0o644, f"shim {args.cid[:12]}")
    setup = Setup(args)
    try:
        run_until_sigterm(setup.run)
    except BaseException as exc:  # only a failure returns here: success execs the monitor
        message = "stopped by a signal" if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)) else \
            f"the utility VM did not start: {exc}"
        log.error("%s", message, exc_info=not isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)))
        setup.undo()
        _report(args.sync_fd, {"pid": -1, "message": message})
        sys.exit(1)


if __name__ == "__main__":
    main()
