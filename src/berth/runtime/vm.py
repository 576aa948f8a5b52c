"""VM isolation driver: the same OCI bundle, run inside a utility VM by berth.vm.shim.

Strategy: the shim plays conmon's part (its own process, detached from berthd,
leaving the same files in the bundle: pid, exit, container.log, ctl), so this
driver mirrors runtime.oci: create = start the shim and read its report on a
sync pipe; everything else is one JSON line on the shim's control socket.
Exec runs `python -m berth.vm.execclient` in the foreground, as runc exec.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from berth.errors import CommandFailed, Conflict, FailedPrecondition, InvalidArgument
from berth.host import cgroups, proc
from berth.runtime import monitor
from berth.runtime.base import CreateOptions, Exit, Started

SHIM_MODULE = "berth.vm.shim"


class VmRuntime:
    name = "vm"

    def __init__(self, vm_dir: str, socket_dir: str, containers_dir: str, cold_boot: bool = False) -> None:
        self.vm_dir = vm_dir
        self.cold_boot = cold_boot
        self.socket_dir = socket_dir
        self.containers_dir = containers_dir
        os.makedirs(socket_dir, exist_ok=True)

    def _shim_pid(self, cid: str) -> int:
        try:
            with open(os.path.join(self.containers_dir, cid, "shim.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return 0
        return pid if _is_shim(pid, cid) else 0

    def control_socket(self, cid: str) -> str:
        return os.path.join(self.socket_dir, f"{cid[:16]}.vm")

    def attach_socket(self, cid: str, bundle: str) -> str:
        return os.path.join(self.socket_dir, f"{cid[:16]}.attach")

    async def create(self, cid: str, bundle: str, opts: CreateOptions) -> Started:
        for stale in ("exit", "oom", "pid", "shim.pid", "ctl", "error"):
            try:
                os.unlink(os.path.join(bundle, stale))
            except FileNotFoundError:
                pass
        if not opts.log:
            raise InvalidArgument("VM-isolated containers keep their log: the none log driver is not supported")
        rfd, wfd = os.pipe()
        argv = [sys.executable, "-m", SHIM_MODULE, "--bundle", bundle, "--cid", cid, "--vm-dir", self.vm_dir,
                "--attach", self.attach_socket(cid, bundle), "--control", self.control_socket(cid),
                "--workdir", os.path.join(self.socket_dir, f"{cid[:16]}.d"),
                "--sync-fd", str(wfd)]
        if opts.stdin:
            argv.append("--stdin")
            if opts.stdin_once:
                argv.append("--stdin-once")
        if self.cold_boot:
            argv.append("--cold")
        try:
            await proc.run(argv, timeout=30, pass_fds=[wfd], cwd=bundle)
        finally:
            os.close(wfd)
        loop = asyncio.get_running_loop()
        try:
            reply = await asyncio.wait_for(loop.run_in_executor(None, _read_line, rfd), 180)
        finally:
            os.close(rfd)
        try:
            doc = json.loads(reply or b"{}")
        except ValueError:
            doc = {}
        pid = int(doc.get("pid", -1))
        if pid <= 0:
            tail = _tail(os.path.join(bundle, "shim.log"))
            raise FailedPrecondition(doc.get("message") or f"the VM shim failed before reporting: {tail}")
        with open(os.path.join(bundle, "shim.pid")) as f:
            monitor = int(f.read().strip())
        return Started(monitor, pid)

    async def _call(self, cid: str, request: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_unix_connection(self.control_socket(cid))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Conflict(f"container {cid[:12]} is not running") from exc
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), timeout) or b"{}")
        finally:
            writer.close()
        if reply.get("error"):
            if reply["error"] == "not running":
                raise Conflict(f"container {cid[:12]} is not running")
            raise CommandFailed(["vm-shim", str(request.get("op"))], 1, reply["error"])
        return dict(reply)

    async def start(self, cid: str) -> None:
        try:
            await self._call(cid, {"op": "start"}, timeout=60)
        except CommandFailed as exc:  # the agent's exec error, in the words the docker CLI maps to 126/127
            text = exc.stderr
            if "No such file" in text or "not found" in text:
                raise InvalidArgument(f"failed to create task for container: {text}: no such file or directory "
                                      "(executable file not found in the VM)") from exc
            if "Permission denied" in text:
                raise InvalidArgument(f"failed to create task for container: {text}: permission denied") from exc
            raise

    async def kill(self, cid: str, signal: int) -> None:
        await self._call(cid, {"op": "kill", "signal": signal})

    async def pause(self, cid: str) -> None:
        await self._call(cid, {"op": "pause"})

    async def resume(self, cid: str) -> None:
        await self._call(cid, {"op": "resume"})

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        raise InvalidArgument("the limits of a VM-isolated container are its VM's size, fixed when it starts")

    async def wait(self, cid: str, bundle: str, monitor_pid: int) -> Exit:
        if monitor_pid > 0 and _is_shim(monitor_pid, cid):
            await proc.wait_pid_exit(monitor_pid)
        for _ in range(50):
            try:
                with open(os.path.join(bundle, "exit")) as f:
                    text = f.read().strip()
                if text:
                    return Exit(int(text), os.path.exists(os.path.join(bundle, "oom")), _read(bundle, "error"))
            except FileNotFoundError:
                pass
            await asyncio.sleep(0.02)
        return Exit(255, False, "the VM shim exited without recording an exit code; see shim.log in the bundle")

    async def status(self, cid: str) -> str | None:
        return "running" if self._shim_pid(cid) else None

    async def delete(self, cid: str) -> None:
        """Stop the VM if it still runs (a start that failed half way), and drop the sockets."""
        pid = self._shim_pid(cid)
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not proc.pid_alive(pid):
                    break
                await asyncio.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        cgroups.remove(cid, wait=0)  # left by a shim that was killed
        for path in (self.control_socket(cid), self.attach_socket(cid, "")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    async def top(self, cid: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
        reply = await self._call(cid, {"op": "top", "args": ps_args})
        return monitor.parse_ps(str(reply.get("output", "")))

    def resize(self, bundle: str, height: int, width: int) -> None:
        monitor.write_resize(bundle, height, width)

    def exec_argv(self, cid: str, process_json: str, pid_file: str) -> list[str]:
        return [sys.executable, "-m", "berth.vm.execclient", "--control", self.control_socket(cid),
                "--process", process_json, "--pid-file", pid_file]


def _read_line(fd: int) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
    return out


def _read(bundle: str, name: str) -> str:
    try:
        with open(os.path.join(bundle, name), errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return " ".join(f.read().strip().splitlines()[-3:])
    except OSError:
        return ""


def _is_shim(pid: int, cid: str) -> bool:
    argv = proc.cmdline(pid)
    return SHIM_MODULE in argv and cid in argv
