"""The C VM monitor on the host, talking to the real guest agent over a socketpair (no VM).

Both programs are compiled from the source tree. The agent, not being PID 1,
runs its processes as plain host processes (no chroot), so a guest pid is a
host pid here; a `sleep` stands in for QEMU (the monitor watches it through a
pidfd and kills it when the container ends). Pause and resume need QEMU's QMP
and are covered by tests/e2e/test_vm_isolation.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from berth.vm.execclient import EXEC_OP, process_frame
from berth.vm.prepare import MONITOR_GCC_FLAGS
from berth.vm.shim import Handover
from berth.wire import agentproto as ap
from berth.wire.k8slog import Parser

VM_SRC = Path(__file__).resolve().parents[3] / "src" / "berth" / "vm"
PATH = "PATH=/usr/bin:/bin"
LOG_LINE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+00:00 (stdout|stderr) [FP] .*")

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists(),
                       reason="needs gcc and libc6-dev to build the agent and the monitor"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent calls setgroups/setuid: needs root"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("bin")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out / "agent"), str(VM_SRC / "agent" / "agent.c")],
                   check=True)
    subprocess.run(["gcc", *MONITOR_GCC_FLAGS, "-Werror", "-o", str(out / "monitor"),
                    str(VM_SRC / "monitor" / "monitor.c")], check=True)
    return out / "agent", out / "monitor"


def _listen(path: Path, kind: socket.SocketKind) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(str(path))
    s.listen(16)
    return s


class Box:
    """One container: the agent, a stand-in QEMU, and the monitor holding what the shim would hand over."""

    def __init__(self, binaries: tuple[Path, Path], tmp: Path, argv: Sequence[str], *, tty: bool = False,
                 stdin: bool = False, stdin_once: bool = False, probe: str = "echo oom_kill 0",
                 console: str = "", log_size_max: int = 0) -> None:
        agent_bin, monitor_bin = binaries
        self.bundle, self.workdir, self.cgroup = tmp / "bundle", tmp / "wd", tmp / "cgroup"
        for d in (self.bundle, self.workdir, self.cgroup):
            d.mkdir()
        (self.workdir / "console.log").write_text(console)
        (self.workdir / "main.exec").write_bytes(
            process_frame({"args": list(argv), "env": [PATH], "terminal": tty}, chroot=""))
        (self.workdir / "probe.exec").write_bytes(process_frame({"args": ["sh", "-c", probe], "env": [PATH]},
                                                                chroot=""))
        host, guest = socket.socketpair()
        self.agent = subprocess.Popen([str(agent_bin)], pass_fds=[guest.fileno()],
                                      env={"BERTH_AGENT_FD": str(guest.fileno()), "PATH": "/usr/bin:/bin"})
        guest.close()
        host.settimeout(10)
        (ready,) = ap.Decoder().feed(host.recv(4096))  # the shim has seen READY before the hand-over
        assert ready.type == ap.T.READY
        self.qemu = subprocess.Popen(["sleep", "1000"])
        self.attach_path, self.control_path = tmp / "a.sock", tmp / "c.sock"
        attach = _listen(self.attach_path, socket.SOCK_SEQPACKET)
        control = _listen(self.control_path, socket.SOCK_STREAM)
        os.mkfifo(self.bundle / "ctl")
        ctl = os.open(self.bundle / "ctl", os.O_RDWR | os.O_NONBLOCK)
        log = os.open(self.bundle / "container.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sync_r, sync_w = os.pipe()
        h = Handover(cid="c0ffee" * 10 + "c0ff", bundle=str(self.bundle), workdir=str(self.workdir),
                     attach=str(self.attach_path), control=str(self.control_path), qemu_pid=self.qemu.pid,
                     agent_fd=host.fileno(), attach_fd=attach.fileno(), control_fd=control.fileno(), ctl_fd=ctl,
                     log_fd=log, main_exec=str(self.workdir / "main.exec"),
                     probe_exec=str(self.workdir / "probe.exec"), sync_fd=sync_w, stdin=stdin,
                     stdin_once=stdin_once, cgroups=(str(self.cgroup),), log_size_max=log_size_max)
        with open(self.bundle / "shim.log", "ab") as shim_log:
            self.monitor = subprocess.Popen(h.argv(str(monitor_bin)), pass_fds=h.fds(), stdout=shim_log,
                                            stderr=subprocess.STDOUT)
        for fd in (ctl, log, sync_w):
            os.close(fd)
        for s in (host, attach, control):
            s.close()
        with os.fdopen(sync_r, "rb") as f:
            assert json.loads(f.readline()) == {"pid": self.qemu.pid}

    def op(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(20)
            s.connect(str(self.control_path))
            s.sendall(line.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                assert chunk, f"no answer to {line!r}"
                answer += chunk
        return answer.decode().rstrip("\n")

    def exec(self, argv: Sequence[str], *frames: bytes) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(20)
        s.connect(str(self.control_path))
        s.sendall(EXEC_OP + process_frame({"args": list(argv), "env": [PATH]}, chroot="") + b"".join(frames))
        return s

    def attach(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(20)
        s.connect(str(self.attach_path))
        return s

    def resize(self, rows: int, cols: int) -> None:
        fd = os.open(self.bundle / "ctl", os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, f"1 {rows} {cols}\n".encode())
        os.close(fd)

    def finished(self) -> str:
        """Wait for the monitor to end; return the exit file."""
        assert self.monitor.wait(30) == 0
        return (self.bundle / "exit").read_text()

    def log(self) -> list[tuple[str, bytes]]:
        raw = (self.bundle / "container.log").read_bytes()
        assert all(LOG_LINE.fullmatch(line) for line in raw.splitlines()), raw
        return [(e.stream, e.data) for e in Parser().feed(raw)]

    def close(self) -> None:
        for p in (self.monitor, self.qemu, self.agent):
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def box(binaries: tuple[Path, Path], tmp_path: Path) -> Iterator[Callable[..., Box]]:
    made: list[Box] = []

    def make(argv: Sequence[str], **kw: object) -> Box:
        b = Box(binaries, tmp_path, argv, **kw)  # type: ignore[arg-type]
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def _frames(sock: socket.socket) -> list[ap.Frame]:
    """Every frame until the monitor closes the connection."""
    dec, out = ap.Decoder(), []
    while data := sock.recv(65536):
        out += dec.feed(data)
    sock.close()
    return out


def _packets(sock: socket.socket) -> list[bytes]:
    out = []
    while packet := sock.recv(65536):
        out.append(packet)
    sock.close()
    return out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _until(cond: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_output_goes_to_the_log_and_attach_then_everything_is_cleaned(box: Callable[..., Box]) -> None:
    b = box(["sh", "-c", "echo out; echo err >&2; sleep 0.2; printf partial; exit 3"])
    client = b.attach()
    assert b.op("kill 9") == "error not running"
    assert b.op("start") == "ok"
    packets = _packets(client)
    assert b.finished() == "3"
    got = {(stream, data) for stream, data in b.log()}
    assert got == {("stdout", b"out\n"), ("stderr", b"err\n"), ("stdout", b"partial")}
    assert b"".join(p[1:] for p in packets if p[0] == 2) == b"out\npartial"
    assert b"".join(p[1:] for p in packets if p[0] == 3) == b"err\n"
    assert _gone(b.qemu.pid) or b.qemu.wait(5) == -signal.SIGKILL
    assert not b.workdir.exists() and not b.cgroup.exists()
    assert not b.attach_path.exists() and not b.control_path.exists()
    assert not (b.bundle / "oom").exists() and not (b.bundle / "error").exists()


def test_requests_it_does_not_know_are_refused(box: Callable[..., Box]) -> None:
    b = box(["sleep", "30"])
    assert b.op("bogus") == "error unknown operation bogus"
    assert b.op("kill 99").startswith("error invalid signal")
    assert b.op("start") == "ok"
    assert b.op("start").startswith("error")
    assert b.op("kill 15") == "ok"
    assert b.finished() == str(128 + signal.SIGTERM)


def test_a_program_that_cannot_start_can_be_told_so(box: Callable[..., Box]) -> None:
    b = box(["/nonexistent/prog"])
    answer = b.op("start")
    assert answer.startswith("error ") and "No such file" in answer
    b.monitor.send_signal(signal.SIGTERM)  # what VmRuntime.delete does then
    assert b.finished() == "255"
    assert not b.workdir.exists()


def test_stdin_once_from_attach_and_resize_before_start(box: Callable[..., Box]) -> None:
    b = box(["sh", "-c", "stty size; cat"], tty=True, stdin=True, stdin_once=True)
    b.resize(33, 77)
    client = b.attach()
    client.send(b"typed\n")  # before the start: held until the process runs
    assert b.op("start") == "ok"
    _until(lambda: b"typed" in (b.bundle / "container.log").read_bytes(), "the typed line echoed back")
    client.shutdown(socket.SHUT_WR)  # stdin-once: the client's EOF is the process's
    output = b"".join(p[1:] for p in _packets(client))
    assert b.finished() == "0"
    assert b"33 77" in output and b"typed" in output


def test_execs_are_routed_and_a_sigkill_asks_for_the_oom_count(box: Callable[..., Box]) -> None:
    b = box(["sleep", "30"], probe="echo pgfault 7; echo oom_kill 2")
    assert b.op("start") == "ok"
    one = b.exec(["sh", "-c", "echo one; exit 4"], ap.encode_stdin_eof(0))
    two = b.exec(["cat"], *ap.encode_stdin(0, b"via stdin"), ap.encode_stdin_eof(0))
    for sock, out, code in ((one, b"one\n", 4), (two, b"via stdin", 0)):
        frames = _frames(sock)
        assert {f.id for f in frames} == {0}
        assert frames[0].type == ap.T.STARTED and frames[-1] == ap.Frame(ap.T.EXIT, 0, ap.encode_exit(0, code)[9:])
        assert b"".join(f.payload for f in frames if f.type == ap.T.STDOUT) == out
    bad = _frames(b.exec(["/nonexistent/prog"]))
    assert [f.type for f in bad] == [ap.T.ERROR] and "No such file" in ap.decode_error(bad[0].payload)
    assert b.op("kill 9") == "ok"
    assert b.finished() == "137"
    assert (b.bundle / "oom").read_text() == "1"


def test_an_exec_whose_client_leaves_is_killed(box: Callable[..., Box]) -> None:
    b = box(["sleep", "30"])
    assert b.op("start") == "ok"
    sock = b.exec(["sleep", "300"])
    dec = ap.Decoder()
    (started,) = dec.feed(sock.recv(4096))
    pid = ap.decode_started(started.payload)
    assert not _gone(pid)
    sock.close()
    _until(lambda: _gone(pid), "the exec'd process killed")
    assert b.op("kill 9") == "ok"
    assert b.finished() == "137"
    assert not (b.bundle / "oom").exists()  # the probe found no OOM kill


def test_qemu_going_away_is_a_guest_panic(box: Callable[..., Box]) -> None:
    console = "[    5.1] Kernel panic - not syncing: sysrq triggered crash\r\n[    5.2] ---[ end ]---\r\n"
    b = box(["sh", "-c", "echo before; sleep 30"], console=console)
    client = b.attach()
    assert b.op("start") == "ok"
    _until(lambda: b"before" in (b.bundle / "container.log").read_bytes(), "output")
    b.qemu.kill()
    packets = _packets(client)
    reason = "the utility VM stopped: guest kernel panic: sysrq triggered crash"
    assert b.finished() == "255"
    assert (b.bundle / "error").read_text() == reason
    assert ("stderr", f"berth: {reason}\n".encode()) in b.log()
    assert packets[-1] == b"\3" + f"berth: {reason}\n".encode()


def test_log_size_max_rotates_the_log_as_conmon_does(box: Callable[..., Box]) -> None:
    b = box(["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"], log_size_max=1024)
    assert b.op("start") == "ok"
    assert b.finished() == "0"
    size = (b.bundle / "container.log").stat().st_size
    assert 0 < size <= 1024, size
    lines = [data for _, data in b.log()]
    assert lines[-1] == b"line-299\n" and len(lines) < 300
    assert not (b.bundle / ".container.log.new").exists()
