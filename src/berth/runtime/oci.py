"""OCI runtime driver: conmon as the per-container monitor, runc or runsc below it.

Strategy: `create` starts conmon, which double-forks away from berthd, runs
`<runtime> create`, keeps the container's stdio (attach socket, log file in
k8s-file format) and writes the exit code to <bundle>/exit when the
container ends. conmon reports the container's pid (or the runtime's error)
on a sync pipe we pass it. `start` is then `<runtime> start` (for runc, its
one read of the exec fifo done here: start_by_fifo), so an attacher can
connect to the attach socket before the first byte is written.
After a daemon restart, `wait` finds the monitor again by its pid file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import stat
from typing import Any

from berth.errors import CommandFailed, Conflict, FailedPrecondition, InvalidArgument
from berth.host import proc
from berth.runtime import execmon, monitor
from berth.runtime.base import (
    CannotExecute,
    CommandNotFound,
    CreateOptions,
    Exit,
    Loaded,
    Started,
    StartFailed,
)

log = logging.getLogger(__name__)

CONMON = "/usr/bin/conmon"
EXEC_FIFO = "exec.fifo"  # runc's, in its state directory: its init waits on it until `runc start` reads it
START_TIMEOUT = 30.0  # seconds a start waits for the container's init (as `runc start` is given)


class OciRuntime:
    """One OCI runtime binary (runc, runsc) under conmon."""

    def __init__(self, name: str, binary: str, state_root: str, socket_dir: str,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.binary = binary
        self.state_root = state_root
        self.socket_dir = socket_dir
        self.extra_args = extra_args
        # runc's start is one read of its exec fifo: done here, it costs no Go program (about 5 ms of every
        # `docker run`); any other runtime, or a container this daemon did not create, is started by its `start`.
        self._fifo_start = name == "runc" and os.path.basename(binary) == "runc" and not extra_args
        self._created: dict[str, int] = {}  # id -> init pid, from create until start or delete
        os.makedirs(state_root, exist_ok=True)
        os.makedirs(socket_dir, exist_ok=True)

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.state_root, *self.extra_args, *args]

    async def create(self, cid: str, bundle: str, opts: CreateOptions) -> Started:
        if not os.path.exists(CONMON):
            raise FailedPrecondition("conmon is not installed: run the README's set-up (apt-get install conmon)")
        for stale in ("exit", "oom", "conmon.pid", "pid", "attach", "ctl", "winsz"):
            try:
                os.unlink(os.path.join(bundle, stale))
            except FileNotFoundError:
                pass
        rfd, wfd = os.pipe()
        argv = [
            CONMON, "--api-version", "1", "-c", cid, "-u", cid[:16], "-n", cid[:12],
            "-r", self.binary, "-b", bundle,
            "-p", os.path.join(bundle, "pid"), "-P", os.path.join(bundle, "conmon.pid"),
            "-l", ("k8s-file:" + os.path.join(bundle, "container.log")) if opts.log else "none:",
            "--exit-dir", os.path.join(bundle, "exits"), "-0", bundle,
            "--socket-dir-path", self.socket_dir, "--log-level", "error",
            "--runtime-arg", "--root", "--runtime-arg", self.state_root,
        ]
        for extra in self.extra_args:
            argv += ["--runtime-arg", extra]
        if opts.log_size_max > 0:
            argv += ["--log-size-max", str(opts.log_size_max)]
        if opts.tty:
            argv.append("-t")
        if opts.stdin:
            argv.append("-i")
            if not opts.stdin_once:
                argv.append("--leave-stdin-open")
        os.makedirs(os.path.join(bundle, "exits"), exist_ok=True)
        env = dict(os.environ, _OCI_SYNCPIPE=str(wfd))
        try:
            await proc.run(argv, timeout=30, env=env, pass_fds=[wfd], cwd=bundle)  # conmon writes "oom" into its cwd
        finally:
            os.close(wfd)
        try:
            reply = await asyncio.wait_for(_read_all(rfd), 60)
        finally:
            os.close(rfd)
        pid = -1
        message = ""
        for line in reply.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            pid = int(doc.get("pid", doc.get("data", -1)))
            message = doc.get("message", "")
            break
        if pid <= 0:
            raise _start_error(message or reply.decode(errors="replace") or "the runtime failed to create the container")
        with open(os.path.join(bundle, "conmon.pid")) as f:
            monitor = int(f.read().strip())
        if self._fifo_start:
            self._created[cid] = pid
        return Started(monitor, pid)

    async def start(self, cid: str) -> None:
        init_pid = self._created.pop(cid, 0)
        if init_pid > 0:
            fifo = os.path.join(self.state_root, cid, EXEC_FIFO)
            if await start_by_fifo(fifo, init_pid, START_TIMEOUT):
                return
        try:
            await proc.run(self._argv("start", cid), timeout=30)
        except CommandFailed as exc:
            raise _start_error(exc.stderr) from exc

    async def kill(self, cid: str, signal: int) -> None:
        try:
            await proc.run(self._argv("kill", cid, str(signal)), timeout=10)
        except CommandFailed as exc:
            if "not running" in exc.stderr or "does not exist" in exc.stderr or "process already finished" in exc.stderr:
                raise Conflict(f"container {cid[:12]} is not running") from exc
            raise

    async def pause(self, cid: str) -> None:
        await proc.run(self._argv("pause", cid), timeout=10)

    async def resume(self, cid: str) -> None:
        await proc.run(self._argv("resume", cid), timeout=10)

    async def wait(self, cid: str, bundle: str, monitor_pid: int) -> Exit:
        if monitor_pid > 0 and _is_monitor(monitor_pid, cid):
            await proc.wait_pid_exit(monitor_pid)
        exit_file = os.path.join(bundle, "exit")
        code, error = 255, ""
        for _ in range(50):  # conmon writes the file just before it exits
            try:
                with open(exit_file) as f:
                    text = f.read().strip()
                if text:
                    code = int(text)
                    break
            except FileNotFoundError:
                pass
            await asyncio.sleep(0.02)
        else:
            error = "the container's monitor exited without recording an exit code"
        oom = os.path.exists(os.path.join(bundle, "oom")) or _cgroup_oom(cid)
        return Exit(code, oom, error)

    async def update(self, cid: str, resources: dict[str, Any]) -> None:
        await proc.run(self._argv("update", "--resources", "-", cid), timeout=10,
                       input=json.dumps(resources).encode())

    async def status(self, cid: str) -> str | None:
        """The runtime's view: "created", "running", "paused", "stopped", or None if it has no such container."""
        res = await proc.run(self._argv("state", cid), timeout=10, check=False)
        if res.returncode != 0:
            return None
        try:
            return str(json.loads(res.stdout).get("status"))
        except ValueError:
            return None

    async def load(self, cid: str, bundle: str) -> Loaded | None:
        if not os.path.exists(os.path.join(bundle, "conmon.pid")) or os.path.exists(os.path.join(bundle, "exit")):
            return None  # never handed to conmon, or its exit is already known
        status = await self.status(cid)
        if status is None:
            return None
        return Loaded(status, _read_int(os.path.join(bundle, "conmon.pid")), _read_int(os.path.join(bundle, "pid")))

    async def delete(self, cid: str) -> None:
        self._created.pop(cid, None)
        await proc.run_beside(self._argv("delete", "--force", cid), timeout=30)
        _unlink_link(os.path.join(self.socket_dir, cid[:16]))  # conmon's short link to the bundle

    def tidy(self) -> list[str]:
        """conmon's links (`<socket dir>/<id prefix>`) whose bundle is gone: a removal the daemon did not
        live to finish. Only dangling symbolic links go; whatever else is there is not conmon's."""
        removed = []
        try:
            entries = os.listdir(self.socket_dir)
        except FileNotFoundError:
            return []
        for entry in entries:
            path = os.path.join(self.socket_dir, entry)
            if os.path.islink(path) and not os.path.exists(path):
                _unlink_link(path)
                removed.append(path)
        return removed

    def held(self) -> list[str]:
        try:
            return held_ids(os.listdir(self.state_root))
        except FileNotFoundError:
            return []

    async def top(self, cid: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
        if self.name == "runsc":  # its ps lists the sandbox's own processes and takes no ps options
            if ps_args and ps_args != ["-ef"]:
                raise InvalidArgument("gVisor (runsc) containers list their processes one way only: "
                                      f"docker top takes no ps options for them (got {' '.join(ps_args)!r})")
            res = await proc.run(self._argv("ps", cid), timeout=10)
        else:
            res = await proc.run(self._argv("ps", cid, *(ps_args or ["-ef"])), timeout=10)
        return monitor.parse_ps(res.stdout.decode(errors="replace"))

    def attach_socket(self, cid: str, bundle: str) -> str:
        return os.path.join(self.socket_dir, cid[:16], "attach")

    def resize(self, bundle: str, height: int, width: int) -> None:
        monitor.write_resize(bundle, height, width)

    def exec_argv(self, cid: str, process_json: str, pid_file: str) -> list[str]:
        if self.name == "runsc":  # its --pid-file is its own pid; kill_exec needs the sandbox's
            return self._argv("exec", "--process", process_json, "--pid-file", pid_file,
                              "--internal-pid-file", pid_file + ".internal", cid)
        return self._argv("exec", "--process", process_json, "--pid-file", pid_file, cid)

    async def kill_exec(self, cid: str, pid_file: str, command_pid: int) -> None:
        if self.name == "runsc":  # the process lives in the sandbox, not under runsc exec
            pid = _read_pid(pid_file + ".internal")
            if pid > 0:
                await proc.run(self._argv("kill", "--pid", str(pid), cid, "KILL"), timeout=10, check=False)
            return
        pid = _read_pid(pid_file)  # runc: the host pid, a child of runc exec (a subreaper) while that runs
        if pid <= 0:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        try:  # with the pidfd held, the pid is this process: check it is runc exec's child before killing
            if _parent_pid(pid) == command_pid:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)

    def exec_monitored(self, cid: str, tty: bool) -> execmon.RuntimeCommand | None:
        """How conmon runs an exec session in this runtime (runtime.execmon); None when it cannot:
        runsc's exec has no --tty, which conmon passes for a terminal."""
        if tty and self.name == "runsc":
            return None
        return execmon.RuntimeCommand(self.binary, ("--root", self.state_root, *self.extra_args), self.socket_dir)


async def start_by_fifo(fifo: str, init_pid: int, timeout: float) -> bool:
    """Start a container runc created, as `runc start` does: read its init's byte from the exec fifo.

    runc's init opens the fifo for writing, writes one byte and execs the container's
    process (the fifo closes on exec); until a reader comes, it waits. The reader is
    opened non-blocking and waited on with the event loop: a fifo reader is told of a
    hang-up only once a writer has come and gone, so no byte and no hang-up means the
    init has not got there yet. Once the byte is read the fifo is removed (runc's
    `state` then says "running", as after its own start); a daemon killed before that
    leaves a "created" container, which recovery cleans away. The init's death before
    it wrote is watched through a pidfd. The start is answered once the init has
    exec'd (the fifo's end), as `runc start` answers.

    Returns:
        False when the fifo is not there as runc leaves it (no such file, not a fifo): the
        caller runs the runtime's own `start`, which says what is wrong in its words.

    Raises:
        StartFailed: the init died before it wrote, or did not come within *timeout*.
    """
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    pidfd = -1
    loop = asyncio.get_running_loop()
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        try:
            pidfd = os.pidfd_open(init_pid)
        except ProcessLookupError:
            pidfd = -1  # already gone: what it wrote, if anything, is in the fifo
        got = False
        deadline = loop.time() + timeout
        while True:
            if got or pidfd < 0:  # after the byte, b"" is the writer's end (before it, a writer not yet come)
                try:
                    data = os.read(fd, 64)
                except BlockingIOError:
                    data = None
                if data:
                    if not got:
                        got = True
                        _unlink(fifo)
                    continue
                if data == b"" or pidfd < 0:
                    break
            ready = await _readable(loop, fd, pidfd, deadline - loop.time())
            if ready is None:  # timed out
                if got:
                    break
                raise StartFailed(["runtime"], 1, "failed to start the container: its init did not start "
                                  f"within {timeout:g} s")
            if ready == pidfd:  # the init exited: one last look at the fifo
                os.close(pidfd)
                pidfd = -1
            elif not got:
                try:
                    data = os.read(fd, 64)
                except BlockingIOError:
                    continue  # woken for nothing
                if data:
                    got = True
                    _unlink(fifo)
                else:  # a writer came and went without a byte
                    break
        if not got:
            raise StartFailed(["runtime"], 1, "failed to start the container: container process is already dead")
        return True
    finally:
        os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int, pidfd: int, timeout: float) -> int | None:
    """Which of *fd* and *pidfd* (-1: none) becomes readable first, or None after *timeout* seconds."""
    done: asyncio.Future[int] = loop.create_future()
    fds = [f for f in (fd, pidfd) if f >= 0]

    def woken(f: int) -> None:
        if not done.done():
            done.set_result(f)
    for f in fds:
        loop.add_reader(f, woken, f)
    try:
        return await asyncio.wait_for(done, max(0.0, timeout))
    except asyncio.TimeoutError:
        return None
    finally:
        for f in fds:
            loop.remove_reader(f)


def _unlink_link(path: str) -> None:
    """Remove *path* if it is a symbolic link (never what a link points to, never anything else)."""
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _read_pid(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return int(f.read(32).strip() or 0)
    except (OSError, ValueError):
        return 0


def _parent_pid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def held_ids(entries: list[str]) -> list[str]:
    """Container ids from a runtime's state directory: runc keeps ID/, runsc SANDBOX_sandbox:ID.state and .lock."""
    ids = {name.rpartition(":")[2].partition(".")[0] for name in entries}
    return sorted(i for i in ids if len(i) == 64 and all(ch in "0123456789abcdef" for ch in i))


SYNC_LIMIT = 64 * 1024  # bytes of conmon's sync pipe read: its report is one short JSON line


async def _read_all(fd: int) -> bytes:
    """conmon's report on its sync pipe: up to the end of its first line (or of the pipe), at most SYNC_LIMIT
    bytes; read as it arrives, on the event loop (the pipe is non-blocking), without a thread's hand-off."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    size = 0
    while size < SYNC_LIMIT:
        try:
            data = os.read(fd, SYNC_LIMIT - size)
        except BlockingIOError:
            if await _readable(loop, fd, -1, 60) is None:
                break  # the caller's own bound comes first
            continue
        if not data:
            break
        chunks.append(data)
        size += len(data)
        if b"\n" in data or b"}" in data:
            break
    return b"".join(chunks)


def _is_monitor(pid: int, cid: str) -> bool:
    argv = proc.cmdline(pid)
    return bool(argv) and os.path.basename(argv[0]) == "conmon" and cid in argv


def _cgroup_oom(cid: str) -> bool:
    try:
        with open(f"/sys/fs/cgroup/memory/berth/{cid}/memory.oom_control") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
    except (OSError, ValueError):
        pass
    return False


def _start_error(message: str) -> Exception:
    """The runtime's complaint as an error the docker CLI maps to 126/127."""
    text = " ".join(message.strip().split())
    m = re.search(r'msg="((?:[^"\\]|\\.)*)"', text)
    if m:
        text = m.group(1).replace('\\"', '"')
    for noise in ("runc create failed: ", "runc run failed: "):
        text = text.replace(noise, "")
    if "not found" in text or "no such file or directory" in text:  # runc's and runsc's words for it
        return CommandNotFound(f"failed to create task for container: {text}: unknown")
    if "permission denied" in text:
        return CannotExecute(f"failed to create task for container: {text}: unknown")
    return StartFailed(["runtime"], 1, f"failed to create task for container: {text}")


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
