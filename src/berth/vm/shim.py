"""The per-container monitor for VM isolation: conmon's role, for a utility VM.

    python -m berth.vm.shim --bundle DIR --cid ID --vm-dir VMDIR --attach PATH
                            --control PATH [--stdin] [--stdin-once] [--sync-fd N]

Strategy: the shim detaches from berthd (double fork, new session), boots the
utility VM with the bundle's root file system (and each bind-mount directory)
shared in over virtio-9p, and leaves in the bundle the same files conmon does,
so everything above the runtime driver works unchanged: `pid` (QEMU's pid),
`shim.pid`, `container.log` (k8s-file lines), `exit`, `ctl` (resize lines
"1 H W"), and a SOCK_SEQPACKET attach socket whose packets start with 2
(stdout) or 3 (stderr). It reports {"pid": N} (or {"pid": -1, "message": ...})
on the sync fd once the VM is up and the root is mounted; the container's
process starts only on the control socket's "start", so an attacher connects
first. The control socket takes one JSON line per connection: start, kill,
pause, resume, top, or exec (after which the connection carries agent protocol
frames for that process, relayed to and from the guest). When the container's
process exits, the shim records the code, stops the VM and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from berth.errors import BerthError, FailedPrecondition
from berth.host import cgroups, mount
from berth.vm import shares, sizing, template
from berth.vm.boot import GuestProcess, UtilityVM
from berth.vm.prepare import prepare
from berth.wire import agentproto as ap

log = logging.getLogger("berth.vm.shim")

STREAM_BYTE = {ap.T.STDOUT: 2, ap.T.STDERR: 3}
STREAM_NAME = {ap.T.STDOUT: "stdout", ap.T.STDERR: "stderr"}


class Shim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bundle = Path(args.bundle)
        self.config: dict[str, Any] = json.loads((self.bundle / "config.json").read_text())
        self.vm: UtilityVM | None = None
        self.main: GuestProcess | None = None
        self.clients: set[socket.socket] = set()
        self.started = asyncio.Event()
        self.exited = asyncio.Event()
        self.code = 255
        self.size: tuple[int, int] = (0, 0)  # a terminal size asked for before the process started
        self.log_file = open(self.bundle / "container.log", "ab", buffering=0)
        self.host_mounts: list[Path] = []  # staged files bind-mounted on the host

    # -- the container's output --------------------------------------------------------
    def record(self, kind: ap.T, data: bytes) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}+00:00"
        lines = data.split(b"\n")
        out = bytearray()
        for i, piece in enumerate(lines):
            last = i == len(lines) - 1
            if last and not piece:
                break
            out += f"{stamp} {STREAM_NAME[kind]} {'P' if last else 'F'} ".encode() + piece + b"\n"
        self.log_file.write(bytes(out))
        packets = [bytes([STREAM_BYTE[kind]]) + data[i:i + 32767] for i in range(0, len(data), 32767)]
        for client in list(self.clients):
            try:
                for packet in packets:
                    client.send(packet)
            except OSError:
                self.clients.discard(client)
                client.close()

    async def pump_main(self) -> None:
        assert self.main is not None
        gp = self.main
        exit_task = asyncio.ensure_future(gp.wait())
        while True:
            getter = asyncio.ensure_future(gp.output.get())
            done, _ = await asyncio.wait({getter, exit_task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                kind, data = getter.result()
                self.record(kind, data)
                continue
            getter.cancel()
            while not gp.output.empty():
                kind, data = gp.output.get_nowait()
                self.record(kind, data)
            self.code = exit_task.result()
            return

    # -- attach socket --------------------------------------------------------------------
    async def serve_attach(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            self.clients.add(conn)
            asyncio.ensure_future(self.attach_input(conn))

    async def attach_input(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(conn, 65536)
            except OSError:
                data = b""
            if not data:
                break
            if self.args.stdin:
                await self.started.wait()
                if self.main is not None:
                    await self.main.write(data)
        if self.args.stdin and self.args.stdin_once and self.main is not None:
            with contextlib.suppress(Exception):
                await self.main.close_stdin()

    # -- ctl fifo (resize) -------------------------------------------------------------------
    def open_ctl(self) -> int:
        """Make the resize fifo before the container is reported created (resizes follow start at once)."""
        path = self.bundle / "ctl"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o600)
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)

    async def serve_ctl(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        loop.add_reader(fd, lambda: queue.put_nowait(os.read(fd, 4096)))
        buf = b""
        while True:
            buf += await queue.get()
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                parts = line.split()
                if len(parts) != 3 or parts[0] != b"1":
                    continue
                if self.main is None:  # before start: the process gets this size when it starts
                    self.size = (int(parts[1]), int(parts[2]))
                    continue
                with contextlib.suppress(Exception):
                    await self.main.resize(int(parts[1]), int(parts[2]))

    # -- control socket ----------------------------------------------------------------------
    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline() or b"{}")
            op = request.get("op")
            if op == "exec":
                await self.relay_exec(request, reader, writer)
                return
            reply = await self.handle(op, request)
        except Exception as exc:  # every failure goes back to the caller as a message
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def handle(self, op: str | None, request: dict[str, Any]) -> dict[str, Any]:
        assert self.vm is not None
        if op == "start":
            await self.start_main()
            return {"ok": True}
        if op == "kill":
            if self.main is None or self.exited.is_set():
                return {"error": "not running"}
            await self.main.signal(int(request["signal"]))
            return {"ok": True}
        if op in ("pause", "resume"):
            await self.vm.qmp("stop" if op == "pause" else "cont")
            return {"ok": True}
        if op == "top":  # the guest's processes, less its kernel threads, agent and this ps
            code, out, err = await self.vm.run(["/bin/busybox", "ps", *(request.get("args") or [])])
            lines = out.decode(errors="replace").splitlines()
            keep = lines[:1] + [line for line in lines[1:]
                                if not line.rstrip().endswith("]") and "/init" not in line
                                and "/bin/busybox ps" not in line]
            return {"ok": True, "output": "\n".join(keep), "code": code}
        return {"error": f"unknown operation {op!r}"}

    async def start_main(self) -> None:
        assert self.vm is not None
        process = self.config["process"]
        user = process.get("user") or {}
        size = process.get("consoleSize") or {"height": self.size[0], "width": self.size[1]}
        self.main = await self.vm.exec(
            process["args"], env=process.get("env") or [], cwd=process.get("cwd") or "/",
            uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)), tty=bool(process.get("terminal")),
            rootfs_tag="rootfs", rows=int(size.get("height", 0)), cols=int(size.get("width", 0)))
        self.started.set()
        if not self.args.stdin:
            await self.main.close_stdin()
        asyncio.ensure_future(self.finish_main())

    async def oom_kills(self) -> int:
        """The guest kernel's OOM-kill count (an OOM in the VM is the container's OOM)."""
        assert self.vm is not None
        try:
            code, out, _ = await self.vm.run(["/bin/busybox", "cat", "/proc/vmstat"], timeout=10)
        except Exception:  # the VM may be gone (a panic): no count
            return 0
        for line in out.decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    async def finish_main(self) -> None:
        try:
            await self.pump_main()
        except BerthError as exc:  # QEMU went away under the process: a guest panic or reset
            self.code = 255
            reason = vm_stop_reason(Path(self.args.workdir) / "console.log", exc)
            log.warning("%s", reason)
            _write(self.bundle / "error", reason)
            self.record(ap.T.STDERR, f"berth: {reason}\n".encode())
            self.exited.set()
            return
        # Only a SIGKILL can be an OOM kill: ask the guest then, not on every start and exit.
        # The VM is this container's alone (a fresh boot or clone), so any OOM kill is its own.
        if self.code == 128 + signal.SIGKILL and await self.oom_kills() > 0:
            _write(self.bundle / "oom", "1")
        self.exited.set()

    async def relay_exec(self, request: dict[str, Any], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """A further process: frames from the client go to it, its frames come back."""
        assert self.vm is not None
        process = request["process"]
        user = process.get("user") or {}
        try:
            gp = await self.vm.exec(process["args"], env=process.get("env") or [], cwd=process.get("cwd") or "/",
                                    uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
                                    tty=bool(process.get("terminal")), rootfs_tag="rootfs",
                                    rows=int(request.get("rows", 0)), cols=int(request.get("cols", 0)))
        except Exception as exc:
            writer.write(ap.encode_error(0, str(exc)))
            await writer.drain()
            writer.close()
            return
        writer.write(ap.encode_started(0, gp.pid))
        await writer.drain()

        async def from_client() -> None:
            decoder = ap.Decoder()
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if frame.type == ap.T.STDIN:
                        await gp.write(frame.payload)
                    elif frame.type == ap.T.STDIN_EOF:
                        await gp.close_stdin()
                    elif frame.type == ap.T.SIGNAL:
                        await gp.signal(ap.decode_signal(frame.payload))
                    elif frame.type == ap.T.RESIZE:
                        await gp.resize(*ap.decode_resize(frame.payload))

        feeder = asyncio.ensure_future(from_client())
        exit_task = asyncio.ensure_future(gp.wait())
        try:
            while True:
                getter = asyncio.ensure_future(gp.output.get())
                done, _ = await asyncio.wait({getter, exit_task}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    kind, data = getter.result()
                    writer.write(b"".join(ap.encode_output(kind, 0, data)))
                    await writer.drain()
                    continue
                getter.cancel()
                while not gp.output.empty():
                    kind, data = gp.output.get_nowait()
                    writer.write(b"".join(ap.encode_output(kind, 0, data)))
                writer.write(ap.encode_exit(0, exit_task.result()))
                await writer.drain()
                return
        except ConnectionError:
            with contextlib.suppress(Exception):
                await gp.signal(signal.SIGKILL)
        finally:
            feeder.cancel()
            writer.close()

    # -- life -----------------------------------------------------------------------------------
    def stage(self, p: shares.Plan, workdir: Path) -> Callable[[str], Path]:
        """Put the plan's host side in place: /etc copies, mount points in the root, staged files.

        A staged file is a hard link to the bind's source, or (across file
        systems) a bind mount of it, undone by `unstage`.
        """
        root = Path(self.config["root"]["path"])
        for src, dest in p.copies:
            target = root / dest.lstrip("/")
            with contextlib.suppress(OSError):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(src.read_bytes())
        for d in p.dirs:
            with contextlib.suppress(OSError):  # the mount point, made on the host side of the share
                (root / d.destination.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for why in p.skipped:
            log.warning("%s: not shared into the VM", why)

        def stage_dir(tag: str) -> Path:
            return workdir / f"stage-{tag}"

        for f in p.files:
            stage = stage_dir(f.stage_tag)
            stage.mkdir(parents=True, exist_ok=True)
            target = stage / f.name
            try:
                os.link(f.source, target)
            except OSError:
                target.touch()
                mount.mount(str(f.source), str(target), "", flags=mount.MS_BIND)
                self.host_mounts.append(target)
        return stage_dir

    def unstage(self) -> None:
        for target in self.host_mounts:
            with contextlib.suppress(Exception):
                mount.unmount(str(target))

    async def run(self, sync_fd: int | None) -> None:
        artifacts = prepare(Path(self.args.vm_dir))
        workdir = Path(self.args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        plan = shares.plan(self.config.get("mounts") or [], _kind)
        attach = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.args.attach)
        attach.bind(self.args.attach)
        attach.listen(16)
        attach.setblocking(False)
        control = await asyncio.start_unix_server(self.control, self.args.control)
        try:
            empty = workdir / "empty"
            empty.mkdir(exist_ok=True)
            vm_shares = shares.shares(plan, Path(self.config["root"]["path"]), self.stage(plan, workdir), empty)
            async with template.start_vm(artifacts, Path(self.args.vm_dir), shares=vm_shares,
                                         mem_mib=sizing.memory_mib(self.config),
                                         vcpus=sizing.vcpus(self.config, os.cpu_count() or 1),
                                         readonly=plan.readonly_tags, workdir=workdir,
                                         templates=not self.args.cold) as vm:
                self.vm = vm
                root = await vm.mount("rootfs")
                if plan.share_count() or plan.tmpfs:
                    code, _, err = await vm.run(["/bin/busybox", "sh", "-c", shares.guest_script(plan, root)])
                    if code != 0:
                        raise FailedPrecondition(f"mounting the container's volumes in the VM failed: "
                                                 f"{err.decode(errors='replace').strip()}")
                (self.bundle / "pid").write_text(f"{vm.qemu.pid}\n")
                cgroups.join(self.args.cid, vm.qemu.pid)  # for stats: what the VM costs the host
                ctl = self.open_ctl()
                tasks = [asyncio.ensure_future(self.serve_attach(attach)), asyncio.ensure_future(self.serve_ctl(ctl))]
                _report(sync_fd, {"pid": vm.qemu.pid})
                sync_fd = None
                await self.exited.wait()
                for t in tasks:
                    t.cancel()
        except BaseException as exc:
            if sync_fd is not None:
                _report(sync_fd, {"pid": -1, "message": f"the utility VM did not start: {exc}"})
            raise
        finally:
            control.close()
            attach.close()
            self.unstage()
            cgroups.remove(self.args.cid)
            shutil.rmtree(self.args.workdir, ignore_errors=True)
            for c in self.clients:
                c.close()
            self.log_file.close()
            _write(self.bundle / "exit", f"{self.code}")


PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)")


def vm_stop_reason(console_log: Path, exc: BaseException) -> str:
    """Why the utility VM stopped under the container, from the guest's console (a panic's last words)."""
    try:
        text = console_log.read_text(errors="replace")
    except OSError:
        text = ""
    for line in reversed(text.splitlines()):
        if m := PANIC.search(line):
            return f"the utility VM stopped: guest kernel panic: {m.group(1).strip() or 'no reason given'}"
    return f"the utility VM stopped unexpectedly ({exc})"


def _kind(path: Path) -> str:
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Detach from berthd: the container must outlive it.
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    bundle = Path(args.bundle)
    (bundle / "shim.pid").write_text(f"{os.getpid()}\n")
    logfd = os.open(bundle / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s shim {args.cid[:12]}: %(message)s")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # stop the VM, then go
        await Shim(args).run(args.sync_fd)

    try:
        asyncio.run(run())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log.info("stopped by a signal; the VM is stopped")
    except Exception:
        log.exception("the shim failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
