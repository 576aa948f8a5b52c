"""VM isolation driver: the same OCI bundle, run inside a utility VM by berth.vm.shim.

Strategy: the shim, which execs the C monitor once the VM is up, plays conmon's
part (its own process, detached from berthd, leaving the same files in the
bundle: pid, exit, container.log, ctl), so this driver mirrors runtime.oci:
create = start the shim and read the report on a sync pipe; everything else
is one line on the monitor's control socket ("start", "kill N", "pause",
"resume"; answered "ok" or "error MESSAGE"), or an "exec" session carrying
agent frames: `top` runs busybox ps in the guest that way, and exec runs
`python -m berth.vm.execclient` in the foreground, as runc exec.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Any

from berth.errors import (
    CommandFailed,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from berth.host import cgroups, proc
from berth.runtime import execmon, monitor, vmpool
from berth.runtime.base import (
    CannotExecute,
    CommandNotFound,
    CreateOptions,
    Exit,
    Loaded,
    Started,
    StartFailed,
)
from berth.vm import execclient
from berth.vm.prepare import MONITOR_NAME
from berth.wire import agentproto as ap

SHIM_MODULE = "berth.vm.shim"
GUEST_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


log = logging.getLogger(__name__)
NIC_FILE = "network.json"  # the VM's card, from the driver to its shim


class VmRuntime:
    name = "vm"

    def __init__(self, vm_dir: str, socket_dir: str, containers_dir: str, cold_boot: bool = False,
                 pool: vmpool.VmPool | None = None) -> None:
        self.vm_dir = vm_dir
        self.cold_boot = cold_boot
        self.pool = None if cold_boot else pool
        self.socket_dir = socket_dir
        self.containers_dir = containers_dir
        os.makedirs(socket_dir, mode=0o700, exist_ok=True)  # control, attach sockets and VM workdirs: root only

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
        for stale in ("exit", "oom", "pid", "shim.pid", "ctl", "error", NIC_FILE):
            try:
                os.unlink(os.path.join(bundle, stale))
            except FileNotFoundError:
                pass
        if opts.nic is not None:  # the shim reads it before it boots the VM (berth.vm.shim._nic)
            with open(os.path.join(bundle, NIC_FILE), "w") as f:
                json.dump(dataclasses.asdict(opts.nic), f)
        if not opts.log:
            raise InvalidArgument("VM-isolated containers keep their log: the none log driver is not supported")
        args = ["--bundle", bundle, "--cid", cid, "--vm-dir", self.vm_dir,
                "--attach", self.attach_socket(cid, bundle), "--control", self.control_socket(cid),
                "--workdir", os.path.join(self.socket_dir, f"{cid[:16]}.d")]
        if opts.stdin:
            args.append("--stdin")
            if opts.stdin_once:
                args.append("--stdin-once")
        if self.cold_boot:
            args.append("--cold")
        if opts.log_size_max > 0:
            args += ["--log-size-max", str(opts.log_size_max)]  # the monitor rotates as conmon does
        doc = await self._from_pool(cid, bundle, args, opts.nic is not None) \
            if self.pool is not None and self.pool.settings.enabled else None
        if doc is None:
            rfd, wfd = os.pipe()
            try:
                await proc.run([sys.executable, "-m", SHIM_MODULE, *args, "--sync-fd", str(wfd)],
                               timeout=30, pass_fds=[wfd], cwd=bundle)
            finally:
                os.close(wfd)
            doc = await _sync_reply(rfd)
        pid = int(doc.get("pid", -1))
        if pid <= 0:
            tail = _tail(os.path.join(bundle, "shim.log"))
            raise FailedPrecondition(doc.get("message") or f"the VM shim failed before reporting: {tail}")
        with open(os.path.join(bundle, "shim.pid")) as f:
            monitor = int(f.read().strip())
        return Started(monitor, pid)

    async def _from_pool(self, cid: str, bundle: str, args: list[str], nic: bool) -> dict[str, Any] | None:
        """Hand a pooled VM of this container's shape its shim's *args*; its report, or None when the
        pool has none (or the one taken died before answering: the caller then starts a shim)."""
        assert self.pool is not None
        shape = await asyncio.to_thread(vmpool.bundle_shape, bundle, nic)
        member = self.pool.take(shape) if shape is not None else None
        if member is None:
            return None
        rfd, wfd = os.pipe()
        try:
            await asyncio.to_thread(vmpool.send_claim, member, args, wfd)
        except OSError as exc:
            os.close(rfd)
            log.warning("the pooled VM %s could not be claimed (%s): starting one", member.name, exc)
            return None
        finally:
            os.close(wfd)
        doc = await _sync_reply(rfd)
        if not doc:
            log.warning("the pooled VM %s ended before it answered: starting one", member.name)
            return None
        log.info("container %s: its VM came from the pool (%s)", cid[:12], member.name)
        return doc

    async def _connect(self, cid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(self.control_socket(cid))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise Conflict(f"container {cid[:12]} is not running") from exc

    async def _call(self, cid: str, op: str, timeout: float = 30) -> str:
        """Send one request line; return what follows "ok" in the answer."""
        reader, writer = await self._connect(cid)
        try:
            writer.write(op.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        return parse_answer(cid, op, answer)

    async def _run_in_guest(self, cid: str, frame: bytes, timeout: float = 30) -> tuple[int, bytes, bytes]:
        """Run an EXEC frame through the monitor with no input: (exit code, stdout, stderr)."""
        reader, writer = await self._connect(cid)
        out, err = bytearray(), bytearray()
        decoder = ap.Decoder()
        try:
            writer.write(execclient.EXEC_OP + frame + ap.encode_stdin_eof(0))
            await writer.drain()
            async with asyncio.timeout(timeout):
                while data := await reader.read(65536):
                    for f in decoder.feed(data):
                        if f.type in (ap.T.STDOUT, ap.T.STDERR):
                            (out if f.type == ap.T.STDOUT else err).extend(f.payload)
                        elif f.type == ap.T.EXIT:
                            return ap.decode_exit(f.payload), bytes(out), bytes(err)
                        elif f.type == ap.T.ERROR:
                            raise CommandFailed(["vm-monitor", "exec"], 1, ap.decode_error(f.payload))
        except TimeoutError:
            raise Unavailable(f"the VM of container {cid[:12]} did not answer within {timeout}s") from None
        finally:
            writer.close()
        raise Conflict(f"container {cid[:12]} stopped")

    async def start(self, cid: str) -> None:
        try:
            await self._call(cid, "start", timeout=60)
        except CommandFailed as exc:  # the agent's exec error, in the words the docker CLI maps to 126/127
            text = exc.stderr
            if "No such file" in text or "not found" in text:
                raise CommandNotFound(f"failed to create task for container: {text}: no such file or directory "
                                      "(executable file not found in the VM)") from exc
            if "Permission denied" in text:
                raise CannotExecute(f"failed to create task for container: {text}: permission denied") from exc
            raise StartFailed(exc.argv, exc.returncode, exc.stderr) from exc

    async def kill(self, cid: str, signal: int) -> None:
        await self._call(cid, f"kill {int(signal)}")

    async def pause(self, cid: str) -> None:
        await self._call(cid, "pause")

    async def resume(self, cid: str) -> None:
        await self._call(cid, "resume")

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
        return Exit(255, False, "the VM monitor exited without recording an exit code; see shim.log in the bundle")

    async def status(self, cid: str) -> str | None:
        if not self._shim_pid(cid):
            return None
        try:  # the monitor's word: created, running, paused (an older monitor never says paused) or stopped
            state = (await self._call(cid, "state", timeout=10)).strip()
        except (CommandFailed, OSError, asyncio.TimeoutError, Conflict):
            return "running"  # alive with a VM
        return state if state in ("created", "running", "paused", "stopped") else "running"

    async def load(self, cid: str, bundle: str) -> Loaded | None:
        if os.path.exists(os.path.join(bundle, "exit")):
            return None  # its exit is already known
        monitor_pid = self._shim_pid(cid)  # 0 when never started, or gone
        if not monitor_pid:
            return None
        try:
            state = (await self._call(cid, "state", timeout=10)).strip()  # what the monitor says its process is
        except (CommandFailed, OSError, asyncio.TimeoutError, Conflict) as exc:
            log.warning("the VM monitor of %s did not say its state: %s", cid[:12], exc)
            state = "running"  # alive with a VM: adopt it (stopping it stays possible)
        try:
            with open(os.path.join(bundle, "pid")) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        return Loaded(state if state in ("created", "running", "paused", "stopped") else "running", monitor_pid, pid)

    def held(self) -> list[str]:
        return []  # a VM's state lives in its bundle and ends with its monitor; delete() tidies a killed one

    def tidy(self) -> list[str]:
        return []  # its sockets live in the bundle's own directory

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
        frame = execclient.process_frame({"args": ["/bin/busybox", "ps", *ps_args], "env": [GUEST_PATH]},
                                         chroot="")  # the guest's own busybox and /proc
        code, out, err = await self._run_in_guest(cid, frame)
        if code != 0:
            raise CommandFailed(["busybox", "ps", *ps_args], code, err.decode(errors="replace"))
        return monitor.parse_ps(container_ps(out.decode(errors="replace")))

    def resize(self, bundle: str, height: int, width: int) -> None:
        monitor.write_resize(bundle, height, width)

    def exec_argv(self, cid: str, process_json: str, pid_file: str) -> list[str]:
        return [sys.executable, "-m", "berth.vm.execclient", "--control", self.control_socket(cid),
                "--process", process_json, "--pid-file", pid_file]

    def exec_monitored(self, cid: str, tty: bool) -> execmon.RuntimeCommand | None:
        """conmon runs a session without a terminal through berth.vm.execruntime (runtime.execmon)."""
        if tty:
            return None
        return execmon.RuntimeCommand(sys.executable, ("-m", "berth.vm.execruntime", "--control",
                                                       self.control_socket(cid)), self.socket_dir)

    async def kill_exec(self, cid: str, pid_file: str, command_pid: int) -> None:
        """Nothing to do here: the monitor SIGKILLs an exec's guest process when its client (the command) goes."""


def parse_answer(cid: str, op: str, answer: bytes) -> str:
    """The monitor's answer line: "ok [DATA]" gives DATA; "error MESSAGE" raises.

    Raises:
        Conflict: the container is not running (or the monitor went away without answering).
        CommandFailed: the monitor refused or failed the request; MESSAGE is its stderr.
    """
    text = answer.decode(errors="replace").rstrip("\n")
    word, _, rest = text.partition(" ")
    if word == "ok":
        return rest
    if not text or rest == "not running":
        raise Conflict(f"container {cid[:12]} is not running")
    raise CommandFailed(["vm-monitor", op.split(" ")[0]], 1, rest if word == "error" else text)


def container_ps(text: str) -> str:
    """busybox ps of the guest, less its kernel threads, its agent (/init) and that ps itself."""
    lines = text.splitlines()
    keep = lines[:1] + [line for line in lines[1:]
                        if not line.rstrip().endswith("]") and "/init" not in line and "/bin/busybox ps" not in line]
    return "\n".join(keep)


async def _sync_reply(rfd: int) -> dict[str, Any]:
    """The shim's report on its sync pipe ({} when it closed the pipe without one); closes *rfd*."""
    try:
        reply = await asyncio.wait_for(asyncio.to_thread(_read_line, rfd), 180)
    finally:
        os.close(rfd)
    try:
        doc = json.loads(reply or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


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
    """*pid* is the monitor of *cid*: still the Python shim (setting up), or the C monitor it became."""
    argv = proc.cmdline(pid)
    return bool(argv) and cid in argv and (SHIM_MODULE in argv or os.path.basename(argv[0]) == MONITOR_NAME)
