"""The guest agent, compiled and run on the host over a socketpair (no VM, no chroot).

It is not PID 1 there, so it skips its boot mounts and module loading; everything
after READY is the code that runs in the guest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.wire import agentproto as ap

SOURCE = Path(__file__).resolve().parents[3] / "src" / "berth" / "vm" / "agent" / "agent.c"

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists(),
                       reason="needs gcc and libc6-dev to build the agent"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the agent calls setgroups/setuid: needs root"),
    pytest.mark.timeout(60),
]


@pytest.fixture(scope="module")
def agent_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agent") / "agent"
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(SOURCE)], check=True)
    return out


class Agent:
    def __init__(self, binary: Path) -> None:
        self.sock, child = socket.socketpair()
        self.proc = subprocess.Popen([str(binary)], pass_fds=[child.fileno()],
                                     env={"BERTH_AGENT_FD": str(child.fileno()), "PATH": "/usr/bin:/bin"})
        child.close()
        self.dec = ap.Decoder()
        self.backlog: list[ap.Frame] = []
        self.sock.settimeout(20)

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def next(self) -> ap.Frame:
        while not self.backlog:
            data = self.sock.recv(65536)
            assert data, "agent closed the channel"
            self.backlog += self.dec.feed(data)
        return self.backlog.pop(0)

    def collect(self, id_: int) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        while True:
            f = self.next()
            assert f.id == id_, f
            if f.type == ap.T.STDOUT:
                out += f.payload
            elif f.type == ap.T.STDERR:
                err += f.payload
            elif f.type == ap.T.EXIT:
                return ap.decode_exit(f.payload), bytes(out), bytes(err)
            else:
                raise AssertionError(f)

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agent(agent_bin: Path) -> Iterator[Agent]:
    a = Agent(agent_bin)
    ready = a.next()
    assert ready.type == ap.T.READY and ap.decode_ready(ready.payload) == os.uname().release
    yield a
    a.close()
    assert a.proc.returncode == 0


def test_exec_streams_and_exit_code(agent: Agent) -> None:
    agent.send(ap.exec_frame(1, ["sh", "-c", "echo out; echo err >&2; exit 3"], env=["PATH=/usr/bin:/bin"]))
    started = agent.next()
    assert started.type == ap.T.STARTED and ap.decode_started(started.payload) > 1
    agent.send(ap.encode_stdin_eof(1))
    assert agent.collect(1) == (3, b"out\n", b"err\n")


def test_stdin_env_cwd_and_user(agent: Agent, tmp_path: Path) -> None:
    agent.send(ap.exec_frame(2, ["sh", "-c", 'cat; echo "$FOO $(pwd) $(id -u):$(id -g)"'],
                             env=["PATH=/usr/bin:/bin", "FOO=bar"], cwd=str(tmp_path), uid=65534, gid=65534))
    assert agent.next().type == ap.T.STARTED
    agent.send(*ap.encode_stdin(2, b"hello\n"), ap.encode_stdin_eof(2))
    assert agent.collect(2) == (0, f"hello\nbar {tmp_path} 65534:65534\n".encode(), b"")


def test_missing_program_is_an_error(agent: Agent) -> None:
    agent.send(ap.exec_frame(3, ["/nonexistent/prog"]))
    f = agent.next()
    assert f.type == ap.T.ERROR and "No such file" in ap.decode_error(f.payload)


def test_signal_and_big_output_and_concurrency(agent: Agent) -> None:
    agent.send(ap.exec_frame(4, ["sleep", "30"], env=["PATH=/usr/bin:/bin"]))
    assert agent.next().type == ap.T.STARTED
    # a second process with lots of output runs to completion while the first sleeps
    agent.send(ap.exec_frame(5, ["head", "-c", "300000", "/dev/zero"], env=["PATH=/usr/bin:/bin"]))
    assert agent.next().type == ap.T.STARTED
    agent.send(ap.encode_stdin_eof(5))
    code, out, _ = agent.collect(5)
    assert code == 0 and out == b"\0" * 300000
    agent.send(ap.encode_signal(4, signal.SIGTERM))
    assert agent.collect(4) == (128 + signal.SIGTERM, b"", b"")


def test_stalled_stdin_does_not_block_others(agent: Agent) -> None:
    # process 6 never reads its stdin; 1 MiB queued for it must not stall process 7
    agent.send(ap.exec_frame(6, ["sleep", "30"], env=["PATH=/usr/bin:/bin"]))
    assert agent.next().type == ap.T.STARTED
    agent.send(*ap.encode_stdin(6, b"x" * (1 << 20)))
    agent.send(ap.exec_frame(7, ["echo", "fine"], env=["PATH=/usr/bin:/bin"]))
    assert agent.next().type == ap.T.STARTED
    assert agent.collect(7) == (0, b"fine\n", b"")
    agent.send(ap.encode_signal(6, signal.SIGKILL))
    assert agent.collect(6) == (128 + signal.SIGKILL, b"", b"")


def test_tty_and_resize(agent: Agent) -> None:
    agent.send(ap.exec_frame(8, ["sh", "-c", "stty size; tty >/dev/null && echo isatty; read x; stty size"],
                             env=["PATH=/usr/bin:/bin"], tty=True, rows=24, cols=80))
    assert agent.next().type == ap.T.STARTED
    time.sleep(0.3)
    agent.send(ap.encode_resize(8, 50, 132), *ap.encode_stdin(8, b"go\n"))
    code, out, err = agent.collect(8)
    text = out.replace(b"\r\n", b"\n")
    assert code == 0 and err == b""
    assert b"24 80\nisatty\n" in text and text.endswith(b"50 132\n")


def test_unknown_type_and_requests_for_gone_processes(agent: Agent) -> None:
    agent.send(ap.frame(ap.T.READY, 9))  # a guest->host type sent to the guest
    f = agent.next()
    assert f.type == ap.T.ERROR and f.id == 9
    agent.send(ap.encode_signal(12345, 9), *ap.encode_stdin(12345, b"x"))  # dropped quietly
    agent.send(ap.exec_frame(10, ["true"], env=["PATH=/usr/bin:/bin"]))
    assert agent.next().type == ap.T.STARTED
    assert agent.collect(10) == (0, b"", b"")
