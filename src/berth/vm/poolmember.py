"""A pooled VM: a template clone restored before any container asks, waiting to be claimed.

    python -m berth.vm.poolmember --dir DIR --vm-dir VMDIR --mem-mib M --vcpus N --slots S
                                  [--tap NAME] --sync-fd FD

Strategy: the shim's first half done ahead of time (berth.vm.pool explains
what must match). The process detaches as the shim does and runs at SCHED_IDLE,
and so does its QEMU, so filling the pool never takes a CPU from a start. Its
9p shares are DIR/<tag>, each holding an empty directory `m`; it restores a
clone of the shape's template with them (a template that fails to restore is
rebuilt once; then the pooled VM gives up: the pool never boots cold) and reports
on the sync fd ({"ready": its state, as in `ready`} or {"error": ...}) after writing
DIR/ready. Then it waits, at most for its QEMU's life, for one connection on
DIR/claim.sock: one message, the shim's own arguments as JSON, with the
container's sync pipe passed along (SCM_RIGHTS). From there it is that
container's shim: `ready` gives way to `claimed`, the scheduling goes back to
normal (this process and every QEMU thread), and berth.vm.shim.Setup.run_pooled
binds the container's directories into the shares' `m`, moves the card into
the container's tap's place, sets the clock and reseeds the RNG again, mounts
the root, and execs the C monitor, with DIR as its work directory. Unclaimed,
SIGTERM (or QEMU's end) stops the VM and removes DIR.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

from berth.errors import FailedPrecondition
from berth.host import netlink
from berth.vm import clones, pool, shares, shim
from berth.vm.prepare import QEMU, monitor_binary, prepare
from berth.vm.template import artifacts_id

log = logging.getLogger("berth.vm.poolmember")

CLAIM_MAX = 64 * 1024  # bytes of a claim message (a shim's arguments)
CLAIM_TIMEOUT = 10.0  # s for a claimer to send its message once connected


def parse_claim(data: bytes) -> list[str]:
    """A claim message: {"argv": [shim arguments]}; raises ValueError when it is not one."""
    doc = json.loads(data)
    argv = doc.get("argv") if isinstance(doc, dict) else None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("a claim is {\"argv\": [strings]}")
    return argv


def claim_message(shim_argv: list[str]) -> bytes:
    return json.dumps({"argv": shim_argv}).encode()


def normal_priority(pids: list[int]) -> None:
    """Every thread of *pids* back to SCHED_OTHER (they ran at SCHED_IDLE while pooled)."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError, ValueError):
                os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _report(fd: int | None, doc: dict[str, object]) -> bool:
    """Write *doc* on the sync pipe and close it; False when no one reads it any more."""
    if fd is None:
        return False
    try:
        os.write(fd, json.dumps(doc).encode() + b"\n")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


class Member:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(args.dir)
        self.shape = pool.Shape(args.mem_mib, args.vcpus, args.slots, args.tap is not None)
        self.setup: shim.Setup | None = None  # once claimed
        self.claim_fd: int | None = None

    async def run(self) -> None:
        args = self.args
        vm_dir = Path(args.vm_dir)
        artifacts = prepare(vm_dir)
        monitor = monitor_binary(vm_dir)
        dirs = {}
        for tag in self.shape.share_tags:
            (self.dir / tag / "m").mkdir(parents=True, exist_ok=True)
            dirs[tag] = self.dir / tag
        async with clones.clone(artifacts, vm_dir, shares=dirs, mem_mib=self.shape.mem_mib,
                                workdir=self.dir, vcpus=self.shape.vcpus, tap=args.tap) as vm:
            code, _, err = await vm.run(["/bin/busybox", "sh", "-c", shares.premount_script(self.shape.share_tags)])
            if code != 0:
                raise FailedPrecondition(f"mounting the pooled VM's shares failed: {err.decode(errors='replace')}")
            state = pool.MemberState(os.getpid(), vm.qemu.pid, self.shape,
                                     artifacts_id(artifacts, Path(shutil.which(QEMU) or QEMU)))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            listener.bind(str(self.dir / pool.CLAIM_SOCKET))
            os.chmod(self.dir / pool.CLAIM_SOCKET, 0o600)
            listener.listen(1)
            listener.setblocking(False)
            _write_atomic(self.dir / pool.READY_FILE, state.to_json())
            heard = _report(args.sync_fd, {"ready": state.to_json()})
            args.sync_fd = None
            if not heard:  # the daemon stopped or gave up on this one meanwhile: no one would ever claim it
                log.warning("no daemon is waiting for this pooled VM any more: stopping it")
                return
            loop = asyncio.get_running_loop()
            while True:
                accept = asyncio.ensure_future(loop.sock_accept(listener))
                died = asyncio.ensure_future(vm.qemu.wait())
                try:
                    await asyncio.wait({accept, died}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for fut in (accept, died):
                        if not fut.done():
                            fut.cancel()
                if not accept.done() or accept.cancelled():
                    log.warning("the pooled VM's QEMU exited (%s) before it was claimed", vm.qemu.returncode)
                    return
                conn, _ = accept.result()
                claimed = self._receive(conn)
                if claimed is not None:
                    break
            listener.close()
            shim_argv, fd = claimed
            self.claim_fd = fd
            with contextlib.suppress(FileNotFoundError):
                (self.dir / pool.READY_FILE).unlink()
            (self.dir / pool.CLAIM_SOCKET).unlink(missing_ok=True)
            normal_priority([os.getpid(), vm.qemu.pid])
            sargs = shim.parse_args(shim_argv)
            sargs.sync_fd, sargs.workdir = fd, str(self.dir)
            _write_atomic(self.dir / pool.CLAIMED_FILE, json.dumps({"cid": sargs.cid, "pid": os.getpid()}))
            self.setup = shim.Setup(sargs)
            log.info("claimed by container %s", sargs.cid[:12])
            (Path(sargs.bundle) / "shim.pid").write_text(f"{os.getpid()}\n")
            tap = args.tap
            adopt = None if tap is None else (lambda name: netlink.adopt_tap(tap, name))
            await self.setup.run_pooled(vm, self.dir, monitor, adopt)

    def _receive(self, conn: socket.socket) -> tuple[list[str], int] | None:
        """One claim from *conn*: (shim arguments, the container's sync fd); None when it is not one."""
        fds = array.array("i")
        try:
            conn.setblocking(True)
            conn.settimeout(CLAIM_TIMEOUT)
            msg, ancdata, _, _ = conn.recvmsg(CLAIM_MAX, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            if len(fds) != 1:
                raise ValueError(f"a claim passes one descriptor, not {len(fds)}")
            return parse_claim(msg), fds[0]
        except (OSError, ValueError) as exc:
            log.warning("ignoring a bad claim: %s", exc)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            return None
        finally:
            conn.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berth-vm-poolmember")
    p.add_argument("--dir", required=True, help="this pooled VM's directory (its shares, sockets, state)")
    p.add_argument("--vm-dir", required=True)
    p.add_argument("--mem-mib", type=int, required=True)
    p.add_argument("--vcpus", type=int, required=True)
    p.add_argument("--slots", type=int, required=True)
    p.add_argument("--tap", help="the network card's tap (QEMU makes it); none: no card")
    p.add_argument("--sync-fd", type=int)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    d = Path(args.dir)
    d.mkdir(mode=0o700, exist_ok=True)
    shim.detach(d / "pid", d / "member.log", 0o600, f"pool {d.name}")
    with contextlib.suppress(OSError):  # the pool fills at idle priority: never a CPU taken from a start
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    member = Member(args)
    failure: BaseException | None = None
    try:
        shim.run_until_sigterm(member.run)
    except BaseException as exc:  # a claimed member only gets here on failure: success execs the monitor
        failure = exc
    if member.setup is not None:  # claimed, and the take-over failed: as the shim reports it
        message = f"the pooled VM could not be handed over: {failure}"
        log.error("%s", message, exc_info=failure is not None)
        member.setup.undo()
        _report(member.claim_fd, {"pid": -1, "message": message})
        sys.exit(1)
    if failure is not None and not isinstance(failure, (asyncio.CancelledError, KeyboardInterrupt)):
        log.error("the pooled VM did not start: %s", failure, exc_info=failure)
        _report(args.sync_fd, {"error": str(failure)})
    shim.remove_workdir(d)
    sys.exit(0 if failure is None or isinstance(failure, asyncio.CancelledError) else 1)


if __name__ == "__main__":
    main()
