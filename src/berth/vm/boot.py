"""Start a utility VM under QEMU -- a cold boot, or a clone restored from a saved template -- and stop it.

    async with UtilityVM.boot(artifacts, shares={"rootfs": Path(...)}) as vm:
        code, out, err = await vm.run(["uname", "-r"], rootfs_tag="rootfs")

Strategy: minimal and test-oriented. The engine listens on a unix socket in a
private work directory; QEMU (`-M microvm`, TCG, the decompressed vmlinux and
the agent's initramfs, command line from `berth.vm.cmdline`) connects to it as
the chardev of a virtio-serial port, so the channel exists before the guest's
first instruction; the connected socket becomes the VM's `AgentChannel`
(`berth.vm.agentchannel`). Whatever happens, leaving the context kills QEMU
and waits for it: no stray processes.

Templates (see `berth.vm.templatebuild`): `boot(memory_file=...)` puts guest RAM in
a file mapped shared, and `save_state()` migrates the device state (not the RAM:
x-ignore-shared) to a file. `restore(template)` starts QEMU with the same
command line but the RAM file mapped privately (copy-on-write) and
`-incoming defer`, feeds it the saved state over QMP (`berth.vm.qmp`; a
descriptor passed with `getfd`: QEMU runs under `-sandbox ...,spawn=deny`, so
no `exec:` migration), waits for the VM to run,
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
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from berth.errors import CommandFailed, FailedPrecondition, InvalidArgument, Unavailable
from berth.host import proc
from berth.vm.agentchannel import AgentChannel
from berth.vm.cmdline import host_tsc_khz, kernel_cmdline, qemu_argv
from berth.vm.prepare import QEMU, Artifacts
from berth.vm.qmp import Qmp
from berth.wire import agentproto as ap


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


SOCKET_MODE = 0o600  # the agent and QMP sockets: root only (their directory is 0700 too)


class UtilityVM(AgentChannel):
    """A booted VM with its agent; make one with `UtilityVM.boot(...)`."""

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
            await vm.fresh_identity()
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
                await vm.fresh_identity(timeout=remaining())
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

    async def fresh_identity(self, timeout: float = 60.0) -> None:
        """Set the guest's clock and reseed its RNG (after boot, after every restore, and when a
        pooled VM is handed out): no two clones ever share random state."""
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

    # -- what callers use --

    async def qmp(self, command: str) -> dict[str, object]:
        """Run one QMP command (e.g. "stop", "cont") on this VM's QEMU and return its answer
        ({"return": ...}); CommandFailed when QEMU refuses it."""
        session = await Qmp.connect(self.workdir / "qmp.sock", timeout=10.0)
        try:
            return {"return": await session.execute(command)}
        finally:
            await session.close()


def private_workdir(wd: Path) -> None:
    """A VM's work directory (its sockets, console log, state copy): made 0700, or tightened to it."""
    wd.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(wd, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
