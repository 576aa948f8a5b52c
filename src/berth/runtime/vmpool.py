"""The daemon's pool of ready VMs: which pooled VMs wait, handing one out, refilling, adopting.

    pool = VmPool(socket_dir, vm_dir, pool.Settings(per_shape=1, memory_mib=1024))
    await pool.start()                       # adopt the pooled VMs a previous daemon left waiting
    member = pool.take(shape)                # None: start as before; the pool refills either way
    await pool.close()                       # a clean stop: the waiting ones are stopped

Strategy: each pooled VM is its own detached process (berth.vm.poolmember) in
<socket dir>/p-<12 hex>/, so it survives this daemon as containers do; this
object only keeps the list. Shapes are learnt from use (berth.vm.pool.remember,
saved in pool-shapes.json so a restart refills them). One refill task starts
members one at a time, a moment after the start that asked for it, under
`chrt --idle` (and the member keeps SCHED_IDLE until claimed): filling never
competes with a start. A member that fails to come up backs its shape off
(30 s, doubling up to 10 min) and is logged. At start, a member directory is
adopted when its process is the pooled VM it says it is, its QEMU lives and it
was made from the current kernel, initramfs and QEMU; a claimed one belongs to
its container and is left alone; any other is stopped and removed.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from berth.errors import BerthError, InvalidArgument
from berth.host import mount, proc
from berth.vm import pool, shares
from berth.vm.poolmember import claim_message
from berth.vm.prepare import QEMU, prepare
from berth.vm.shim import path_kind
from berth.vm.template import artifacts_id

log = logging.getLogger(__name__)

MEMBER_MODULE = "berth.vm.poolmember"
REFILL_DELAY = 0.3  # s after a hand-out before the refill starts a VM: the start comes first
READY_TIMEOUT = 180.0  # s for a member to come up (a template may be built first, at idle priority)
BACKOFF_MIN, BACKOFF_MAX = 30.0, 600.0


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # p-<12 hex>
    path: Path
    state: pool.MemberState

    @property
    def tap(self) -> str | None:
        return tap_name(self.name) if self.state.shape.nic else None


def tap_name(member: str) -> str:
    """A pooled VM's own tap (QEMU makes it; it takes a container's tap's name when claimed)."""
    return "bp" + member.removeprefix(pool.MEMBER_PREFIX)[:12]


class VmPool:
    def __init__(self, socket_dir: str, vm_dir: str, settings: pool.Settings) -> None:
        self.root = Path(socket_dir)
        self.vm_dir = vm_dir
        self.settings = settings
        self.shapes: tuple[pool.Shape, ...] = ()
        self.ready: list[Member] = []
        self.starting: dict[str, pool.Shape] = {}
        self.backoff: dict[pool.Shape, tuple[float, float]] = {}  # shape -> (until, current delay)
        self._refill: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def shapes_file(self) -> Path:
        return self.root / ("pool-" + pool.SHAPES_FILE)

    # -- life cycle --

    async def start(self) -> None:
        """Adopt what a previous daemon left, stop the rest, and start refilling."""
        if not self.settings.enabled:
            await asyncio.to_thread(self._stop_all_found)
            return
        self.shapes = await asyncio.to_thread(self._load_shapes)
        self.ready = await asyncio.to_thread(self._adopt)
        for i in reversed(pool.surplus(self.settings, self.shapes, [m.state.shape for m in self.ready])):
            await asyncio.to_thread(_stop_member, self.ready.pop(i).path)
        if self.ready:
            log.info("VM pool: adopted %d waiting VM(s)", len(self.ready))
        self._refill = asyncio.create_task(self._refill_loop())
        self._wake.set()

    async def close(self) -> None:
        """A clean daemon stop: stop refilling and stop the VMs waiting in the pool (a crash leaves them,
        and the next daemon adopts them)."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        waiting, self.ready = self.ready, []
        await asyncio.gather(*(asyncio.to_thread(_stop_member, m.path) for m in waiting))

    # -- hand-out --

    def take(self, shape: pool.Shape) -> Member | None:
        """A waiting VM of *shape*, no longer the pool's; None when there is none. Either way the
        shape is remembered and the pool refills (a moment later)."""
        if not self.settings.enabled or self._closed:
            return None
        self._remember(shape)
        for i, m in enumerate(self.ready):
            if m.state.shape == shape:
                del self.ready[i]
                if _alive(m):
                    self._wake.set()
                    return m
                log.warning("VM pool: the waiting VM %s is gone; not handing it out", m.name)
        self._wake.set()
        return None

    def _remember(self, shape: pool.Shape) -> None:
        shapes = pool.remember(self.shapes, shape)
        if shapes != self.shapes:
            self.shapes = shapes
            asyncio.get_running_loop().run_in_executor(None, _save_shapes, self.shapes_file, shapes)

    # -- refill --

    async def _refill_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(REFILL_DELAY)
            self.ready = [m for m in self.ready if _alive(m)]
            now = time.monotonic()
            todo = [s for s in pool.refill(self.settings, self.shapes,
                                           [m.state.shape for m in self.ready] + list(self.starting.values()))
                    if self.backoff.get(s, (0.0, 0.0))[0] <= now]
            if not todo:
                waits = [until - now for until, _ in self.backoff.values() if until > now]
                if waits:
                    asyncio.get_running_loop().call_later(min(waits) + 0.1, self._wake.set)
                continue
            await self._start_member(todo[0])
            self._wake.set()  # the next one, if any

    async def _start_member(self, shape: pool.Shape) -> None:
        name = pool.MEMBER_PREFIX + secrets.token_hex(6)
        path = self.root / name
        self.starting[name] = shape
        rfd, wfd = os.pipe()
        reading: asyncio.ReadTransport | None = None
        try:
            argv = ["chrt", "--idle", "0", sys.executable, "-m", MEMBER_MODULE, "--dir", str(path),
                    "--vm-dir", self.vm_dir, "--mem-mib", str(shape.mem_mib), "--vcpus", str(shape.vcpus),
                    "--slots", str(shape.slots), "--sync-fd", str(wfd)]
            if shape.nic:
                argv += ["--tap", tap_name(name)]
            try:
                await proc.run(argv, timeout=30, pass_fds=[wfd])
            finally:
                os.close(wfd)
                wfd = -1
            # Read on the event loop, not in a thread: a thread blocked in read() would keep the pipe
            # open after a cancellation (a daemon stopping), and the pooled VM, its report heard,
            # would wait for a claim forever. Closed, the pipe tells it no one is waiting.
            reader = asyncio.StreamReader(limit=65536)
            reading, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(rfd, "rb", buffering=0))
            rfd = -1  # the transport owns it now
            reply = await asyncio.wait_for(reader.readline(), READY_TIMEOUT)
            doc = json.loads(reply or b"{}")
            if not isinstance(doc, dict) or not isinstance(doc.get("ready"), str):
                raise InvalidArgument(str(doc.get("error") if isinstance(doc, dict) else "") or
                                      "it exited without saying why (see its member.log)")
            state = pool.MemberState.from_json(doc["ready"])
            self.ready.append(Member(name, path, state))  # no await since the report: a stop finds it here
            self.backoff.pop(shape, None)
            log.info("VM pool: %s ready (%s)", name, shape.key())
        except (BerthError, OSError, ValueError, asyncio.TimeoutError) as exc:
            _, delay = self.backoff.get(shape, (0.0, BACKOFF_MIN / 2))
            delay = min(BACKOFF_MAX, delay * 2)
            self.backoff[shape] = (time.monotonic() + delay, delay)
            log.warning("VM pool: a pooled VM of shape %s did not come up (%s); retrying in %.0f s",
                        shape.key(), exc, delay)
            await asyncio.to_thread(_stop_member, path)
        finally:
            self.starting.pop(name, None)
            if reading is not None:
                reading.close()
            for fd in (rfd, wfd):
                if fd >= 0:
                    os.close(fd)

    # -- what a previous daemon left (blocking: run in a thread) --

    def _load_shapes(self) -> tuple[pool.Shape, ...]:
        try:
            return pool.parse_shapes(self.shapes_file.read_text())
        except OSError:
            return ()

    def _adopt(self) -> list[Member]:
        current = _current_artifacts(self.vm_dir)
        out = []
        for path in sorted(self.root.glob(pool.MEMBER_PREFIX + "*")):
            if (path / pool.CLAIMED_FILE).exists():
                continue  # a container's now (its monitor removes it)
            try:
                state = pool.MemberState.from_json((path / pool.READY_FILE).read_text())
            except (OSError, InvalidArgument) as exc:
                log.info("VM pool: removing %s (%s)", path.name, exc)
                _stop_member(path)
                continue
            member = Member(path.name, path, state)
            if state.artifacts_id != current or not _alive(member):
                log.info("VM pool: removing %s (%s)", path.name,
                         "made from other VM artifacts" if _alive(member) else "no longer running")
                _stop_member(path)
                continue
            out.append(member)
        return out

    def _stop_all_found(self) -> None:
        for path in self.root.glob(pool.MEMBER_PREFIX + "*"):
            if not (path / pool.CLAIMED_FILE).exists():
                _stop_member(path)


def bundle_shape(bundle: str, nic: bool) -> pool.Shape | None:
    """The VM shape the container in *bundle* needs (None: the pool can't serve it). Blocking."""
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        plan = shares.plan(config.get("mounts") or [], path_kind)
        return pool.shape_of(config, plan, host_cpus=os.cpu_count() or 1, nic=nic)
    except (OSError, ValueError, AttributeError, TypeError, BerthError) as exc:
        log.warning("VM pool: cannot tell the shape of %s's VM: %s", bundle, exc)
        return None


def send_claim(member: Member, shim_args: list[str], sync_fd: int) -> None:
    """Claim *member* for a container: its shim's arguments, and the write end of its sync pipe.
    Blocking (a local socket: immediate). Raises OSError when the member is gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(5)
        sock.connect(str(member.path / pool.CLAIM_SOCKET))
        sock.sendmsg([claim_message(shim_args)],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [sync_fd]).tobytes())])


def _alive(m: Member) -> bool:
    argv = proc.cmdline(m.state.pid)
    return bool(argv) and MEMBER_MODULE in argv and str(m.path) in argv and proc.pid_alive(m.state.qemu_pid)


def _pid_of(path: Path) -> int:
    try:
        return int((path / "pid").read_text().strip())
    except (OSError, ValueError):
        return 0


def _stop_member(path: Path) -> None:
    """Stop a pooled VM that was not claimed (SIGTERM: it stops its QEMU and removes its directory),
    then remove whatever is left. Blocking."""
    if (path / pool.CLAIMED_FILE).exists():
        return
    pid = _pid_of(path)
    argv = proc.cmdline(pid) if pid > 0 else []
    if argv and MEMBER_MODULE in argv and str(path) in argv:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if (path / pool.CLAIMED_FILE).exists():
        return
    if mount.mounts_under(str(path)):
        log.error("VM pool: not removing %s: something is mounted below it", path)
        return
    shutil.rmtree(path, ignore_errors=True)


def _current_artifacts(vm_dir: str) -> str:
    qemu = shutil.which(QEMU)
    if qemu is None:
        return ""
    try:
        return artifacts_id(prepare(Path(vm_dir)), Path(qemu))
    except (BerthError, OSError) as exc:
        log.warning("VM pool: the VM artifacts are not ready: %s", exc)
        return ""


def _save_shapes(path: Path, shapes: tuple[pool.Shape, ...]) -> None:
    with contextlib.suppress(OSError):
        _write_atomic(path, pool.dump_shapes(shapes))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")  # two saves at once never share one
    tmp.write_text(text)
    os.replace(tmp, path)
