"""Cold-boot a utility VM under QEMU and run commands in it through the guest agent.

    async with UtilityVM.boot(artifacts, shares={"rootfs": Path(...)}) as vm:
        code, out, err = await vm.run(["uname", "-r"], rootfs_tag="rootfs")

Strategy: minimal and test-oriented. The engine listens on a unix socket in a
private work directory; QEMU (`-M microvm`, TCG, the decompressed vmlinux and
the agent's initramfs) connects to it as the chardev of a virtio-serial port, so
the channel exists before the guest's first instruction. One reader task
decodes frames (`berth.wire.agentproto`) and routes them by id to whoever waits:
request futures (MOUNT/SETTIME/RNGSEED -> OK/ERROR, EXEC -> STARTED/ERROR) and
`GuestProcess` objects (output queue, exit future). Output is buffered without
bound here; a real driver would apply backpressure per process. Whatever
happens, leaving the context kills QEMU and waits for it: no stray processes.
The QEMU command line and the kernel command line are pure functions.

Templates (see `berth.vm.template`): `boot(memory_file=...)` puts guest RAM in
a file mapped shared, and `save_state()` migrates the device state (not the RAM:
x-ignore-shared) to a file. `restore(template)` starts QEMU with the same
command line but the RAM file mapped privately (copy-on-write) and
`-incoming defer`, feeds it the saved state over QMP (a descriptor passed with
`getfd`: QEMU runs under `-sandbox ...,spawn=deny`, so no `exec:` migration),
waits for the VM to run,
then sets the clock and reseeds the RNG through the agent -- which was waiting
in poll() when the template was saved and never notices it moved -- and only
then hands the VM out. The agent channel works unchanged: the saved state says
the host end is connected, and the clone's QEMU connects to the clone's own
socket before the guest runs again. Each clone passes its own `-fsdev path=`
(not part of the saved state); the template never mounts its 9p shares.
The work directory is 0700 and its sockets 0600: only root reaches QMP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qemu.qmp import (
    ConnectError,
    ExecInterruptedError,
    ExecuteError,
    QMPClient,
    QMPError,
)

from berth.errors import CommandFailed, FailedPrecondition, InvalidArgument, Unavailable
from berth.host import proc
from berth.vm import accel
from berth.vm.prepare import QEMU, Artifacts
from berth.wire import agentproto as ap

log = logging.getLogger(__name__)


class SavedVM(Protocol):
    """What a clone is restored from (berth.vm.template.Template is one): the saved VM's shape and
    a way to hold its files while QEMU opens them. A protocol, so boot never imports template."""

    @property
    def artifacts(self) -> Artifacts: ...
    @property
    def cmdline(self) -> str: ...
    @property
    def kernel_release(self) -> str: ...
    @property
    def mem_mib(self) -> int: ...
    @property
    def share_tags(self) -> tuple[str, ...]: ...
    @property
    def vcpus(self) -> int: ...

    def pin(self, state_copy: Path) -> contextlib.AbstractContextManager[int]: ...

PORT_NAME = "berth.agent"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KERNEL_HZ = 250  # Debian's CONFIG_HZ; lpj is loops per jiffy
MEMORY_ID = "mem"  # the RAM backend's id: it names the RAM block, so template and clones share it

_BASE_CMDLINE = (
    "console=ttyS0 quiet loglevel=1 panic=-1 init_on_alloc=0 tsc=reliable no_timer_check rcupdate.rcu_expedited=1 "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd cryptomgr.notests noreplace-smp "
    "mitigations=off nokaslr random.trust_cpu=on pci=lastbus=0 edd=off audit=0 nowatchdog"
)


# ---- pure pieces --------------------------------------------------------------------

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
    into each clone for nothing (user pages are zeroed regardless).
    """
    lpj = tsc_khz * 1000 // KERNEL_HZ
    line = f"{_BASE_CMDLINE} nr_cpus={vcpus} tsc_early_khz={tsc_khz} lpj={lpj}"
    return f"{line} {extra}".strip()


def qemu_argv(artifacts: Artifacts, *, agent_socket: Path, shares: Mapping[str, Path],
              cmdline: str, mem_mib: int = 256, console_log: Path | None = None,
              qemu: str = QEMU, qmp_socket: Path | None = None, memory_file: Path | None = None,
              memory_shared: bool = True, incoming: bool = False, accelerator: str | None = None,
              vcpus: int = 1, readonly: Collection[str] = (), tap: str | None = None) -> list[str]:
    """QEMU's argv: microvm, virtio-serial to *agent_socket*, one virtio-9p per share.

    *accelerator* is "kvm" or "tcg"; None asks berth.vm.accel (KVM only where it really works).

    With *memory_file*, guest RAM is that file (`share=on`: a template writes
    through to it; off: a clone's private copy-on-write mapping of it); with
    *incoming*, QEMU waits for `migrate-incoming` instead of booting. The shares
    tagged in *readonly* are exported read-only by QEMU itself (the guest cannot undo it).
    With *tap*, the guest gets a virtio-net card on that tap device (QEMU makes the tap
    when it does not exist, and removes it when it exits).
    """
    argv = [qemu, "-M", "microvm", "-cpu", "max", "-accel", accelerator or accel.detect().name,
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
SOCKET_MODE = 0o600  # the agent and QMP sockets: root only (their directory is 0700 too)


# ---- QMP --------------------------------------------------------------------------------

class Qmp:
    """One QMP session kept open (restore and save need several commands and the events between),
    over QEMU's own client library (qemu.qmp); this class adds the retry while QEMU makes its socket,
    timeouts on every call, and berth's error categories."""

    def __init__(self, client: QMPClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, path: Path, *, timeout: float = 10.0) -> Qmp:
        """Connect (retrying while QEMU creates the socket) and negotiate capabilities."""
        deadline = time.monotonic() + timeout
        while True:
            if not path.exists():  # QEMU has not made it yet (a connect now would only log a failure)
                if time.monotonic() > deadline:
                    raise Unavailable(f"QEMU's QMP socket {path} did not appear within {timeout}s")
                await asyncio.sleep(0.005)
                continue
            client = QMPClient(path.name)
            try:
                await asyncio.wait_for(client.connect(str(path)), max(0.1, deadline - time.monotonic()))
                return cls(client)
            except ConnectError as exc:
                await _quietly_disconnect(client)
                if not isinstance(exc.exc, (FileNotFoundError, ConnectionRefusedError)) \
                        or time.monotonic() > deadline:
                    raise Unavailable(f"QEMU's QMP socket {path} did not answer within {timeout}s: "
                                      f"{exc.exc!r}") from None
                await asyncio.sleep(0.005)
            except BaseException:
                await _quietly_disconnect(client)
                raise

    async def execute(self, command: str, arguments: Mapping[str, Any] | None = None, *,
                      timeout: float = 10.0) -> Any:
        """Run *command*; return its "return" value, raise CommandFailed on an "error"."""
        try:
            return await asyncio.wait_for(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise CommandFailed([QEMU, "qmp", command], 1, str(exc.error.error.desc)) from None
        except ExecInterruptedError:
            raise Unavailable("QEMU closed its QMP socket (did it exit?)") from None

    async def pass_fd(self, name: str, fd: int, *, timeout: float = 10.0) -> None:
        """Hand *fd* to QEMU as *name* (`getfd` with the descriptor attached), for a `fd:NAME` URI.

        Migrations use descriptors rather than `exec:` because the sandbox denies QEMU fork/exec.
        """
        self._client.send_fd_scm(fd)
        await self.execute("getfd", {"fdname": name}, timeout=timeout)

    async def wait_event(self, name: str, *, timeout: float) -> dict[str, Any]:
        """Wait for the event *name* (or return it if it already came: the client queues them)."""
        async def until() -> dict[str, Any]:
            while True:
                event = await self._client.events.get()
                if event.get("event") == name:
                    return dict(event)

        return await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        await _quietly_disconnect(self._client)


async def _quietly_disconnect(client: QMPClient) -> None:
    """Disconnect; a QEMU that already went away is no error here (its exit is reported elsewhere)."""
    try:
        await client.disconnect()
    except (OSError, EOFError, QMPError):
        pass


# ---- processes in the guest ------------------------------------------------------------

@dataclass
class GuestProcess:
    """A process the agent started; output frames land in `output` as (T.STDOUT|T.STDERR, bytes)."""

    vm: UtilityVM
    id: int
    pid: int = 0
    output: asyncio.Queue[tuple[ap.T, bytes]] = field(default_factory=asyncio.Queue)
    exited: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def write(self, data: bytes) -> None:
        await self.vm._send(*ap.encode_stdin(self.id, data))

    async def close_stdin(self) -> None:
        await self.vm._send(ap.encode_stdin_eof(self.id))

    async def signal(self, signo: int) -> None:
        await self.vm._send(ap.encode_signal(self.id, signo))

    async def resize(self, rows: int, cols: int) -> None:
        await self.vm._send(ap.encode_resize(self.id, rows, cols))

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)


class UtilityVM:
    """A booted VM with its agent; make one with `UtilityVM.boot(...)`."""

    def __init__(self, qemu: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, workdir: Path) -> None:
        self.qemu = qemu
        self.workdir = workdir
        self.kernel_release = ""
        self.boot_seconds = 0.0  # QEMU start -> agent READY
        self._reader = reader
        self._writer = writer
        self._ids = iter(range(1, 1 << 32))
        self._pending: dict[int, asyncio.Future[ap.Frame]] = {}
        self._procs: dict[int, GuestProcess] = {}
        self._mounted: dict[str, str] = {}
        self._ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._dead: BaseException | None = None
        self._task = asyncio.create_task(self._read_loop(), name="berth-vm-agent-reader")

    def channel_fd(self) -> int:
        """The agent channel's descriptor, for a monitor that takes the VM over (call when it is quiet)."""
        return int(self._writer.get_extra_info("socket").fileno())

    # -- boot and teardown --

    @classmethod
    @contextlib.asynccontextmanager
    async def boot(cls, artifacts: Artifacts, *, shares: Mapping[str, Path] | None = None,
                   mem_mib: int = 256, timeout: float = 60.0, workdir: Path | None = None,
                   console_log: bool = True, extra_cmdline: str = "",
                   memory_file: Path | None = None, vcpus: int = 1,
                   readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
        """Boot a VM, wait for its agent's READY, set its clock and seed its RNG.

        With *memory_file* (on a tmpfs), guest RAM is that file mapped shared: the
        VM can then become a template (`save_state`).

        Raises:
            FailedPrecondition: QEMU is not installed.
            CommandFailed: QEMU exited before the agent connected.
            Unavailable: the agent did not say READY within *timeout*.
        """
        if shutil.which(QEMU) is None:
            raise FailedPrecondition(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
        own_dir = workdir is None
        wd = Path(tempfile.mkdtemp(prefix="berth-vm-")) if workdir is None else workdir
        private_workdir(wd)
        vm: UtilityVM | None = None
        qemu_box: list[asyncio.subprocess.Process] = []
        try:
            argv = qemu_argv(artifacts, agent_socket=wd / "agent.sock", shares=dict(shares or {}),
                             cmdline=kernel_cmdline(host_tsc_khz(), extra_cmdline, vcpus=vcpus), mem_mib=mem_mib,
                             vcpus=vcpus, readonly=readonly, tap=tap,
                             console_log=wd / "console.log" if console_log else None,
                             qmp_socket=wd / "qmp.sock", memory_file=memory_file, memory_shared=True)
            started = time.monotonic()
            vm = await cls._launch(argv, wd, timeout, qemu_box)
            remaining = max(1.0, timeout - (time.monotonic() - started))
            try:
                vm.kernel_release = await asyncio.wait_for(asyncio.shield(vm._ready), remaining)
            except asyncio.TimeoutError:
                raise Unavailable(f"the VM's agent did not say READY within {timeout}s "
                                  f"(console: {wd / 'console.log'})") from None
            except Unavailable as exc:
                raise cls._failure(vm.qemu, wd, str(exc)) from None
            vm.boot_seconds = time.monotonic() - started
            await vm._fresh_identity()
            yield vm
        finally:
            await cls._teardown(vm, qemu_box)
            if own_dir:
                shutil.rmtree(wd, ignore_errors=True)

    @classmethod
    @contextlib.asynccontextmanager
    async def restore(cls, template: SavedVM, *, shares: Mapping[str, Path],
                      workdir: Path | None = None, timeout: float = 60.0,
                      readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
        """Start a copy-on-write clone of *template* with its own *shares*; like `boot` after.

        *shares* must have exactly the template's tags (any order). The VM is
        handed out running, with its clock set and its RNG reseeded; nothing is
        mounted yet. `boot_seconds` is QEMU start -> the agent answered.

        Raises:
            InvalidArgument: the shares' tags are not the template's.
            FailedPrecondition: QEMU is not installed.
            Unavailable: the template's files are gone, or the clone did not
                come up (QEMU refused the state, exited, or the agent did not answer).
        """
        if shutil.which(QEMU) is None:
            raise FailedPrecondition(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
        if sorted(shares) != sorted(template.share_tags):
            raise InvalidArgument(f"a clone of this template needs the 9p shares {list(template.share_tags)}, "
                                  f"got {sorted(shares)}")
        ordered = {tag: shares[tag] for tag in template.share_tags}  # device order = the template's
        own_dir = workdir is None
        wd = Path(tempfile.mkdtemp(prefix="berth-vm-")) if workdir is None else workdir
        private_workdir(wd)
        vm: UtilityVM | None = None
        qemu_box: list[asyncio.subprocess.Process] = []
        try:
            started = time.monotonic()
            state = wd / "state"
            with template.pin(state) as ram_fd:  # the RAM file open, the state copied: a rebuild can't pull them away
                argv = qemu_argv(template.artifacts, agent_socket=wd / "agent.sock", shares=ordered,
                                 cmdline=template.cmdline, mem_mib=template.mem_mib, vcpus=template.vcpus,
                                 readonly=readonly, tap=tap,
                                 console_log=wd / "console.log", qmp_socket=wd / "qmp.sock",
                                 memory_file=Path(f"/proc/self/fd/{ram_fd}"), memory_shared=False,
                                 incoming=True)
                vm = await cls._launch(argv, wd, timeout, qemu_box, pass_fds=(ram_fd,))
            assert vm is not None

            def remaining() -> float:
                return max(1.0, timeout - (time.monotonic() - started))

            qmp = await Qmp.connect(wd / "qmp.sock", timeout=remaining())
            try:
                await qmp.execute("migrate-set-capabilities",
                                  {"capabilities": [{"capability": "x-ignore-shared", "state": True}]})
                state_fd = os.open(state, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    await qmp.pass_fd("state", state_fd, timeout=remaining())
                finally:
                    os.close(state_fd)
                await qmp.execute("migrate-incoming", {"uri": "fd:state"})
                resumed = asyncio.ensure_future(qmp.wait_event("RESUME", timeout=remaining()))
                died = asyncio.ensure_future(vm.qemu.wait())
                try:
                    await asyncio.wait({resumed, died}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    died.cancel()
                if not resumed.done():
                    resumed.cancel()
                    raise Unavailable(str(cls._failure(vm.qemu, wd, "QEMU exited while loading the template")))
                try:
                    resumed.result()
                except (asyncio.TimeoutError, Unavailable) as exc:
                    raise Unavailable(f"the clone did not start running within {timeout}s: {exc!r}") from None
            finally:
                await qmp.close()
            vm.kernel_release = template.kernel_release
            try:
                await vm._fresh_identity(timeout=remaining())
            except (asyncio.TimeoutError, CommandFailed) as exc:
                raise Unavailable(f"the clone's agent did not answer after restore: {exc!r}") from None
            if not vm._ready.done():
                vm._ready.set_result(template.kernel_release)
            vm.boot_seconds = time.monotonic() - started
            with contextlib.suppress(OSError):
                state.unlink()
            yield vm
        finally:
            await cls._teardown(vm, qemu_box)
            if own_dir:
                shutil.rmtree(wd, ignore_errors=True)

    @classmethod
    async def _launch(cls, argv: list[str], wd: Path, timeout: float,
                      qemu_box: list[asyncio.subprocess.Process],
                      pass_fds: Sequence[int] = ()) -> UtilityVM:
        """Listen on wd/agent.sock, start QEMU (into *qemu_box*, for teardown), accept its connection."""
        sock_path = wd / "agent.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            listener.bind(str(sock_path))
            listener.listen(1)
            listener.setblocking(False)
            logfd = os.open(wd / "qemu.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                qemu = await proc.spawn(argv, stdin=asyncio.subprocess.DEVNULL, stdout=logfd, stderr=logfd,
                                        pass_fds=pass_fds, die_with_parent=True)
            finally:
                os.close(logfd)
            qemu_box.append(qemu)
            loop = asyncio.get_running_loop()
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            died = asyncio.ensure_future(qemu.wait())
            try:
                done, _ = await asyncio.wait({accept, died}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (accept, died):
                    if not fut.done():
                        fut.cancel()
            if accept not in done:
                raise cls._failure(qemu, wd, "QEMU did not connect to the agent socket")
            conn, _ = accept.result()
            for name in ("agent.sock", "qmp.sock"):  # QEMU made the QMP socket before it connected
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(wd / name, SOCKET_MODE)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
            return cls(qemu, reader, writer, wd)
        finally:
            listener.close()

    @staticmethod
    async def _teardown(vm: UtilityVM | None, qemu_box: list[asyncio.subprocess.Process]) -> None:
        if vm is not None:
            await vm._close()
        for qemu in qemu_box:
            if qemu.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    qemu.send_signal(signal.SIGKILL)
            await qemu.wait()

    async def _fresh_identity(self, timeout: float = 60.0) -> None:
        """Set the guest's clock and reseed its RNG (after boot, and after every restore)."""
        await self._request(lambda i: ap.encode_settime(i, time.time_ns()), timeout=timeout)
        await self._request(lambda i: ap.encode_rngseed(i, os.urandom(64)), timeout=timeout)

    async def save_state(self, state: Path, *, timeout: float = 60.0) -> None:
        """Save the device state (not the shared RAM) to *state*; the VM stays paused after.

        Only for a VM booted with `memory_file`, with nothing mounted over 9p and
        nothing running in it: that is what a template is.

        Raises:
            FailedPrecondition: a 9p share is mounted (QEMU cannot migrate it).
            Unavailable: the migration failed or did not finish within *timeout*.
        """
        if self._mounted:
            raise FailedPrecondition(f"cannot save a VM with mounted 9p shares: {sorted(self._mounted)}")
        qmp = await Qmp.connect(self.workdir / "qmp.sock", timeout=timeout)
        try:
            await qmp.execute("migrate-set-capabilities",
                              {"capabilities": [{"capability": "x-ignore-shared", "state": True}]})
            state_fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                await qmp.pass_fd("state", state_fd, timeout=timeout)
            finally:
                os.close(state_fd)
            await qmp.execute("migrate", {"uri": "fd:state"})
            deadline = time.monotonic() + timeout
            while True:
                info = await qmp.execute("query-migrate")
                status = info.get("status") if isinstance(info, dict) else None
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    raise Unavailable(f"saving the VM failed: {info.get('error-desc', status)}")
                if time.monotonic() > deadline:
                    raise Unavailable(f"saving the VM did not finish within {timeout}s (status {status})")
                await asyncio.sleep(0.01)
        finally:
            await qmp.close()

    @staticmethod
    def _failure(qemu: asyncio.subprocess.Process, wd: Path, what: str) -> CommandFailed:
        try:
            tail = (wd / "qemu.log").read_text(errors="replace")[-2000:]
        except OSError:
            tail = ""
        return CommandFailed([QEMU], qemu.returncode if qemu.returncode is not None else -1,
                             f"{what}\n{tail}")

    async def _close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    # -- the channel --

    async def _send(self, *frames: bytes) -> None:
        if self._dead is not None:
            raise Unavailable(f"the VM's agent is gone: {self._dead}")
        for f in frames:
            self._writer.write(f)
        await self._writer.drain()

    async def _request(self, make: Callable[[int], bytes], *, timeout: float = 60.0) -> ap.Frame:
        """Send the frame `make(id)` builds and wait for the reply with that id."""
        id_ = next(self._ids)
        fut: asyncio.Future[ap.Frame] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        try:
            await self._send(make(id_))
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(id_, None)
        if reply.type == ap.T.ERROR:
            raise CommandFailed(["berth-agent"], -1, ap.decode_error(reply.payload))
        return reply

    async def _read_loop(self) -> None:
        decoder = ap.Decoder()
        try:
            while True:
                data = await self._reader.read(256 * 1024)
                if not data:
                    raise Unavailable("the agent channel closed (did the VM stop?)")
                for frame in decoder.feed(data):
                    self._dispatch(frame)
        except asyncio.CancelledError:
            self._fail(Unavailable("the VM is shutting down"))
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of it
            log.debug("agent reader stopped: %s", exc)
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._dead = exc
        if not self._ready.done():
            self._ready.set_exception(exc if isinstance(exc, Unavailable) else Unavailable(str(exc)))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(Unavailable(f"the VM's agent is gone: {exc}"))
        for p in self._procs.values():
            if not p.exited.done():
                p.exited.set_exception(Unavailable(f"the VM's agent is gone: {exc}"))
        self._procs.clear()
        with contextlib.suppress(asyncio.InvalidStateError):
            self._ready.exception()  # mark retrieved

    def _dispatch(self, frame: ap.Frame) -> None:
        if frame.type == ap.T.READY:
            if not self._ready.done():
                self._ready.set_result(ap.decode_ready(frame.payload))
            return
        fut = self._pending.get(frame.id)
        if fut is not None and not fut.done() and frame.type in (ap.T.OK, ap.T.ERROR, ap.T.STARTED):
            fut.set_result(frame)
            return
        p = self._procs.get(frame.id)
        if p is None:
            if frame.type == ap.T.ERROR:
                log.warning("agent error (id %d): %s", frame.id, ap.decode_error(frame.payload))
            return
        if frame.type in (ap.T.STDOUT, ap.T.STDERR):
            p.output.put_nowait((frame.type, frame.payload))
        elif frame.type == ap.T.EXIT:
            del self._procs[frame.id]
            if not p.exited.done():
                p.exited.set_result(ap.decode_exit(frame.payload))
        elif frame.type == ap.T.ERROR:
            log.warning("agent error for process %d: %s", frame.id, ap.decode_error(frame.payload))

    # -- what callers use --

    async def qmp(self, command: str) -> dict[str, object]:
        """Run one QMP command (e.g. "stop", "cont") on this VM's QEMU and return its answer
        ({"return": ...}); CommandFailed when QEMU refuses it."""
        session = await Qmp.connect(self.workdir / "qmp.sock", timeout=10.0)
        try:
            return {"return": await session.execute(command)}
        finally:
            await session.close()

    async def mount(self, tag: str, target: str | None = None, *, container_root: bool = True) -> str:
        """Mount the 9p share *tag* in the guest (once) and return where."""
        if tag in self._mounted:
            return self._mounted[tag]
        where = target or f"/mnt/{tag}"
        await self._request(lambda i: ap.encode_mount(i, ap.Mount(tag, where, container_root)))
        self._mounted[tag] = where
        return where

    async def exec(self, argv: Sequence[str], *, env: Sequence[str] | Mapping[str, str] | None = None,
                   cwd: str = "/", uid: int = 0, gid: int = 0, tty: bool = False,
                   rootfs_tag: str | None = None, rows: int = 0, cols: int = 0) -> GuestProcess:
        """Start *argv* in the guest (chrooted into the share *rootfs_tag*, mounted on demand)."""
        root = await self.mount(rootfs_tag) if rootfs_tag else ""
        if env is None:
            env_list = [f"PATH={DEFAULT_PATH}"]
        elif isinstance(env, Mapping):
            env_list = [f"{k}={v}" for k, v in env.items()]
        else:
            env_list = list(env)
        spec = ap.Exec(tuple(argv), tuple(env_list), cwd, uid, gid, tty, root, rows, cols)
        id_ = next(self._ids)
        gp = GuestProcess(self, id_)
        self._procs[id_] = gp  # before sending: output may follow STARTED at once
        fut: asyncio.Future[ap.Frame] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        try:
            await self._send(ap.encode_exec(id_, spec))
            reply = await asyncio.wait_for(fut, 60)
        except BaseException:
            self._procs.pop(id_, None)
            raise
        finally:
            self._pending.pop(id_, None)
        if reply.type == ap.T.ERROR:
            self._procs.pop(id_, None)
            raise CommandFailed(list(argv), 127, ap.decode_error(reply.payload))
        gp.pid = ap.decode_started(reply.payload)
        return gp

    async def run(self, argv: Sequence[str], *, env: Sequence[str] | Mapping[str, str] | None = None,
                  cwd: str = "/", rootfs_tag: str | None = None, stdin: bytes | None = None,
                  uid: int = 0, gid: int = 0, timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        """Run *argv* to completion: (exit code, stdout, stderr)."""
        gp = await self.exec(argv, env=env, cwd=cwd, rootfs_tag=rootfs_tag, uid=uid, gid=gid)
        if stdin:
            await gp.write(stdin)
        await gp.close_stdin()
        try:
            code = await asyncio.wait_for(gp.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(Exception):
                await gp.signal(signal.SIGKILL)
            raise CommandFailed(list(argv), -1, f"timed out after {timeout}s in the VM") from None
        out, err = bytearray(), bytearray()
        while not gp.output.empty():
            kind, data = gp.output.get_nowait()
            (out if kind == ap.T.STDOUT else err).extend(data)
        return code, bytes(out), bytes(err)


def private_workdir(wd: Path) -> None:
    """A VM's work directory (its sockets, console log, state copy): made 0700, or tightened to it."""
    wd.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
