"""Fixtures for berth's end-to-end tests.

Theory of operation
-------------------
Every end-to-end test talks to a real daemon over a real unix socket, with the
real ``docker`` CLI or the real Docker SDK for Python. By default the daemon is
berthd (the ``berthd`` beside the running Python, or ``$BERTHD``), started per session on
a fresh root under /tmp. With ``BERTH_TEST_TARGET=dockerd`` the same tests run
against Debian's dockerd instead, started in its own network namespace (Debian's
dockerd would otherwise rewrite the host's bridges), so that the tests
themselves can be checked against what Docker really does.

Public API (used by the test modules):

    berthd                 session fixture -> Daemon(.sock, .host, .root, .env, .log_path, .kind)
    berthd_factory         function fixture: factory(live_restore=False, extra_args=()) -> Daemon; extra
                           daemons, each with .kill9() and .restart() (crash tests);
                           live_restore matters only for dockerd (berthd always keeps
                           containers across its restarts)
    docker(d, *args, input=None, timeout=60, check=True) -> CompletedProcess
    cli_name               function fixture parametrised over CLIS: "berth", "docker" (each CLI test
                           runs with both clients); cli_run(which, d, *args, ...) is docker() with
                           the client CLIS[which], popen_cli(which, d, *args) is popen_docker()'s twin
    each_cli               function fixture parametrised like cli_name that makes docker(),
                           popen_docker() and active_cli() use that client for the whole test; a
                           module opts in with `pytestmark = pytest.mark.usefixtures("each_cli")`.
                           BERTH_TEST_CLI=berth makes berth's CLI the client of every test.
    active_cli()           the path of the client docker() runs now (the docker CLI by default)
    popen_docker(d, *args), finish(proc, timeout)   background CLI (logs -f, attach) and its end
    rootfs_tar             session fixture -> Path of a busybox rootfs tarball
    image                  session fixture -> "busybox:latest", imported with `docker import`
    client                 docker.DockerClient on the session daemon, API 1.47
    names                  function fixture: names() -> unique container name, removed
                           (docker rm -f) when the test ends
    network                function fixture: network(*create_args) -> a new network's name,
                           removed when the test ends
    unique_name(prefix)    a unique name, for things other than containers
    API_VERSION            "1.47" (berthd) or "1.41" (reference dockerd)
    RUN_NET                extra `docker run` args: ["--network", "none"] for dockerd, else []
    is_dockerd(d)          True when the target is the reference dockerd
    wait_until(fn, timeout, what)   poll fn() until truthy; fail naming *what*
    assert_responsive(d, within=1.0)  /_ping answers within a second (end of every hostile test)
    LineReader(stream)     background reader of a subprocess pipe: .wait_for(pred), .lines

The helpers are importable from test modules as ``from berth_e2e_conftest import ...``
(pytest runs with --import-mode=importlib, so ``conftest`` itself is not on sys.path).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

BERTHD = os.environ.get("BERTHD", os.path.join(os.path.dirname(sys.executable), "berthd"))
DOCKER = os.environ.get("DOCKER_CLI", shutil.which("docker") or "/usr/bin/docker")
BERTH_CLI = os.environ.get("BERTH_CLI", os.path.join(os.path.dirname(sys.executable), "berth"))
CLIS = {"docker": DOCKER, "berth": BERTH_CLI}  # the clients `cli_name` runs each CLI test with
_ACTIVE = {"cli": os.environ.get("BERTH_TEST_CLI", "docker")}  # the client docker() runs; see each_cli
TARGET = os.environ.get("BERTH_TEST_TARGET", "berthd")
VM_DIR = os.environ.get("BERTH_TEST_VM_DIR", "/var/cache/berth-test-vm")
START_TIMEOUT = 20.0

# With dockerd, containers get a network namespace of their own with no network;
# berthd's default is what berthd does.
RUN_NET: list[str] = ["--network", "none"] if TARGET == "dockerd" else []

# The API version the daemon under test speaks: berthd serves 1.47; the reference
# dockerd (Debian's 20.10) tops out at 1.41, so version-specific checks follow it.
API_VERSION = "1.41" if TARGET == "dockerd" else "1.47"


def is_dockerd(d: "Daemon | None" = None) -> bool:
    """True when the tests target the reference dockerd rather than berthd."""
    return (d.kind if d is not None else TARGET) == "dockerd"


# --------------------------------------------------------------------------- #
# Raw HTTP over a unix socket (no requests, no SDK): used for readiness checks
# here and for the low-level API tests.

def ping(sock: str, timeout: float = 2.0) -> bool:
    """Return True if GET /_ping on *sock* answers 200 with body OK."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
    except OSError:
        return False


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<no log: {e}>"
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------- #
# Cleanup helpers


def _pids_mentioning(text: str, names: tuple[str, ...]) -> list[int]:
    """PIDs of processes whose argv[0] basename is in *names* and whose command line mentions *text*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        argv = raw.split(b"\0")
        if not argv or not argv[0]:
            continue
        base = os.path.basename(argv[0].decode(errors="replace"))
        if base in names and text.encode() in raw:
            found.append(int(entry))
    return found


_LEFTOVER_NAMES = ("conmon", "runc", "runsc", "runsc-gofer", "runsc-sandbox", "containerd",
                   "containerd-shim-runc-v2", "dockerd", "berthd", "python3", "python", "qemu-system-x86_64")


def _pids_rooted_under(path: str) -> list[int]:
    """PIDs of processes whose root directory (a container's rootfs) lies under *path*."""
    prefix = path.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if root.startswith(prefix):
            found.append(int(entry))
    return found


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _unmount_under(root: str) -> None:
    """Lazily unmount every mount point under *root*, deepest first."""
    prefix = root.rstrip("/") + "/"
    points = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == root or mp.startswith(prefix):
                points.append(mp)
    except OSError:
        return
    for mp in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def _stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


# --------------------------------------------------------------------------- #
# The daemon


@dataclass
class Daemon:
    """A running daemon under test and everything needed to talk to it."""

    kind: str            # "berthd" or "dockerd"
    tmp: Path            # private temp dir holding everything below
    sock: str
    host: str            # "unix://" + sock
    root: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    live_restore: bool = False   # dockerd only: keep containers across daemon restarts
    bridge: str = ""             # berthd only: its default bridge and subnet
    bip: str = ""
    extra_args: tuple[str, ...] = ()  # berthd only: more command-line arguments
    daemon_env: dict[str, str] = field(default_factory=dict)  # added to the daemon's environment
    _log_files: list = field(default_factory=list)

    # -- lifecycle ---------------------------------------------------------

    def argv(self) -> list[str]:
        if self.kind == "dockerd":
            inner = (
                "ip link set lo up; exec dockerd --bridge none --iptables=false "
                f"--data-root {self.root} --exec-root {self.tmp}/exec "
                f"--pidfile {self.tmp}/pid -H {self.host} --config-file {self.tmp}/daemon.json"
            )
            return ["unshare", "--net", "--fork", "sh", "-c", inner]
        # The utility VM's kernel and initramfs are prepared once per machine, not per daemon;
        # each daemon gets its own default bridge and subnet, so several can run side by side.
        return [BERTHD, "--root", self.root, "--host", self.host, "--vm-dir", VM_DIR,
                "--bridge", self.bridge, "--bip", self.bip, *self.extra_args]

    def start(self) -> None:
        """Start the daemon and wait for /_ping; fail with the log's tail otherwise."""
        if self.kind == "dockerd":
            # gVisor refuses to set up networking itself in this sandbox; containers
            # here run with --network none anyway.
            cfg = {"runtimes": {"runsc": {"path": "/usr/bin/runsc",
                                          "runtimeArgs": ["--network=none"]}}}
            if self.live_restore:
                cfg["live-restore"] = True
            Path(self.tmp, "daemon.json").write_text(json.dumps(cfg))
        log = open(self.log_path, "ab")
        self._log_files.append(log)
        log.write(f"\n=== start #{self.restarts}: {' '.join(self.argv())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **self.daemon_env},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} exited with {self.proc.returncode} before answering "
                            f"/_ping; log tail:\n{_tail(self.log_path)}", pytrace=False)
            if ping(self.sock, timeout=1.0):
                return
            time.sleep(0.1)
        _stop_process(self.proc)
        pytest.fail(f"{self.kind} did not answer GET /_ping within {START_TIMEOUT:.0f}s; "
                    f"log tail:\n{_tail(self.log_path)}", pytrace=False)

    def kill9(self) -> None:
        """SIGKILL the daemon process itself (only it: not its process group)."""
        assert self.proc is not None
        pid = self.proc.pid
        if self.kind == "dockerd":
            # `unshare --fork` sits between us and dockerd; kill dockerd itself.
            try:
                pid = int(Path(self.tmp, "pid").read_text().strip())
            except (OSError, ValueError):
                pass
        os.kill(pid, signal.SIGKILL)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass

    def restart(self) -> None:
        """Start the daemon again on the same root and socket."""
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        """SIGTERM then SIGKILL the daemon, then remove everything it left behind."""
        if self.kind == "berthd" and self.proc is not None and self.proc.poll() is None:
            subprocess.run([DOCKER, "network", "prune", "-f"], env=self.env, capture_output=True, timeout=60)
        if self.proc is not None:
            _stop_process(self.proc)
        if self.kind == "berthd":  # its default bridge and nftables table
            from berth.api.wiring import nft_table
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
            for family in ("ip", "ip6"):
                subprocess.run(["nft", "delete", "table", family, nft_table(self.root)], capture_output=True,
                               timeout=30)
        # Anything left that mentions our root: monitors, runtimes, shims.
        marker = str(self.tmp)
        for _ in range(3):
            pids = _pids_mentioning(marker, _LEFTOVER_NAMES)
            pids += _pids_rooted_under(marker)
            if not pids:
                break
            _kill_pids(pids)
            time.sleep(0.2)
        # Runtime state dirs may also live under the root; ask runc to clean up
        # containers whose state is there.
        for state in (Path(self.root) / "runc", Path(self.tmp) / "exec"):
            if state.is_dir():
                for sub in state.rglob("state.json"):
                    subprocess.run(["runc", "--root", str(sub.parent.parent), "delete", "-f",
                                    sub.parent.name], capture_output=True, timeout=30)
        _unmount_under(str(self.tmp))
        for f in self._log_files:
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if Path(self.tmp).exists():  # something still mounted or busy: try once more
            time.sleep(0.5)
            _unmount_under(str(self.tmp))
            shutil.rmtree(self.tmp, ignore_errors=True)


def _new_daemon(kind: str, keep_log_dir: Path) -> Daemon:
    tmp = Path(tempfile.mkdtemp(prefix="t-dk-" if kind == "dockerd" else "bt-", dir="/tmp"))
    cfg = tmp / "cfg"
    cfg.mkdir()
    sock = str(tmp / ("docker.sock" if kind == "dockerd" else "berth.sock"))
    assert len(sock.encode()) <= 107, sock
    env = dict(os.environ)
    env["DOCKER_HOST"] = "unix://" + sock
    env["DOCKER_CONFIG"] = str(cfg)
    for var in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"):
        env.pop(var, None)
    # The log outlives the temp dir so a failure can still be read afterwards.
    log_path = keep_log_dir / f"{tmp.name}.log"
    tag = uuid.uuid4().hex
    return Daemon(kind=kind, tmp=tmp, sock=sock, host="unix://" + sock, root=str(tmp / "root"),
                  env=env, log_path=log_path, bridge=f"bt{tag[:8]}",
                  bip=f"172.28.{int(tag[8:10], 16)}.1/24")


@pytest.fixture(scope="session")
def _log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("daemon-logs")


@pytest.fixture(scope="session")
def berthd(_log_dir: Path) -> Iterator[Daemon]:
    """The session's daemon (berthd, or dockerd with BERTH_TEST_TARGET=dockerd)."""
    if TARGET == "berthd" and not os.access(BERTHD, os.X_OK):
        pytest.fail(f"no berthd at {BERTHD}", pytrace=False)
    d = _new_daemon(TARGET, _log_dir)
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture
def berthd_factory(_log_dir: Path) -> Iterator[Callable[[], Daemon]]:
    """Start extra daemons, each on its own root and socket; all stopped at teardown."""
    made: list[Daemon] = []

    def factory(live_restore: bool = False, extra_args: tuple[str, ...] = ()) -> Daemon:
        d = _new_daemon(TARGET, _log_dir)
        d.live_restore = live_restore
        d.extra_args = tuple(extra_args)
        made.append(d)
        d.start()
        return d

    try:
        yield factory
    finally:
        for d in made:
            d.stop()


# --------------------------------------------------------------------------- #
# The docker CLI



def active_cli() -> str:
    """The client docker() and popen_docker() run: the docker CLI, or berth's under each_cli."""
    return CLIS[_ACTIVE["cli"]]


def popen_docker(d, *args, stdin=subprocess.DEVNULL, text=True):
    """Start the client in the background (stdout and stderr together), for streams like logs -f."""
    return subprocess.Popen([active_cli(), *args], env=d.env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=text, start_new_session=True)


def finish(proc, timeout=30):
    """Wait for *proc*; kill it if it outlives *timeout*. Returns its exit status (None if killed)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None

def docker(d: Daemon, *args: str, input: str | None = None, timeout: float = 60,
           check: bool = True) -> subprocess.CompletedProcess:
    """Run the real docker CLI (or the test's client, see each_cli) against daemon *d*.

    With check=True a non-zero exit fails the test."""
    return cli_run(_ACTIVE["cli"], d, *args, input=input, timeout=timeout, check=check)


def cli_run(which: str, d: Daemon, *args: str, input: str | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
    """Like docker(), with the client CLIS[which] ("docker" or "berth")."""
    try:
        cp = subprocess.run([CLIS[which], *args], env=d.env, input=input, text=True, capture_output=True,
                            timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{which} {' '.join(args)}` did not finish in {timeout}s; "
                    f"stdout={e.stdout!r} stderr={e.stderr!r}", pytrace=False)
    if check and cp.returncode != 0:
        pytest.fail(f"`{which} {' '.join(args)}` exited {cp.returncode}\nstdout: {cp.stdout}\n"
                    f"stderr: {cp.stderr}", pytrace=False)
    return cp


def popen_cli(which: str, d: Daemon, *args: str, stdin=subprocess.DEVNULL, text=True):
    """Like popen_docker(), with the client CLIS[which]."""
    return subprocess.Popen([CLIS[which], *args], env=d.env, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=text, start_new_session=True)


@pytest.fixture(params=sorted(CLIS))
def cli_name(request: pytest.FixtureRequest) -> str:
    """Runs the test once with each client: "berth" (berth's own CLI) and "docker"; use with cli_run."""
    return request.param


@pytest.fixture(params=sorted(CLIS))
def each_cli(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test once with each client, as the client of docker(), popen_docker() and active_cli()."""
    before = _ACTIVE["cli"]
    _ACTIVE["cli"] = request.param
    yield request.param
    _ACTIVE["cli"] = before


# --------------------------------------------------------------------------- #
# Names

_counter = itertools.count()
_RUN_ID = uuid.uuid4().hex[:6]


def unique_name(prefix: str = "t") -> str:
    """A name unique across this run and earlier runs: prefix-<run>-<n>."""
    return f"{prefix}-{_RUN_ID}-{next(_counter)}"


@pytest.fixture
def names(berthd: Daemon, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """names(prefix="c") -> a fresh container name; every such container is force-removed at teardown."""
    made: list[str] = []
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:24]

    def new(prefix: str | None = None) -> str:
        n = unique_name(prefix or base)
        made.append(n)
        return n

    yield new
    if made:
        docker(berthd, "rm", "-f", *made, check=False, timeout=120)


# --------------------------------------------------------------------------- #
# Image and SDK client


@pytest.fixture()
def network(berthd: Daemon) -> Iterator[Callable[..., str]]:
    """network(*create_args) -> the name of a new network on the session daemon, removed when the test ends."""
    made: list[str] = []

    def make(*args: str) -> str:
        name = unique_name("net")
        docker(berthd, "network", "create", *args, name)
        made.append(name)
        return name
    yield make
    for name in made:
        docker(berthd, "network", "rm", name, check=False)


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs tarball, as `docker import` takes it."""
    from berth.testing.rootfs import write_rootfs_tar

    return write_rootfs_tar(tmp_path_factory.mktemp("rootfs") / "busybox-rootfs.tar")


@pytest.fixture(scope="session")
def image(berthd: Daemon, rootfs_tar: Path) -> str:
    """'busybox:latest', imported once per session with `docker import`."""
    docker(berthd, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    return "busybox:latest"


@pytest.fixture
def client(berthd: Daemon):
    import docker as docker_sdk

    c = docker_sdk.DockerClient(base_url=berthd.host, version=API_VERSION, timeout=60)
    try:
        yield c
    finally:
        c.close()


def wait_until(fn: Callable[[], object], timeout: float = 30, what: str = "condition",
               interval: float = 0.1):
    """Poll *fn* until it returns something truthy and return that; fail after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value {value!r}",
                        pytrace=False)
        time.sleep(interval)


def assert_responsive(d: "Daemon", within: float = 1.0) -> None:
    """Fail unless GET /_ping on *d* answers 200 within *within* seconds (hostile tests end with it)."""
    start = time.monotonic()
    ok = ping(d.sock, timeout=within)
    took = time.monotonic() - start
    assert ok and took <= within, f"the daemon did not answer /_ping within {within}s (took {took:.2f}s, ok={ok})"


class LineReader:
    """Read lines from a text pipe in a thread, so tests can wait for output without blocking."""

    def __init__(self, stream) -> None:
        import threading

        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for line in iter(stream.readline, ""):
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[list[str]], object], timeout: float = 30,
                 what: str = "output") -> object:
        """Wait until pred(lines) is truthy (returns it), or fail."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = pred(self.lines)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out after {timeout}s waiting for {what}; "
                                f"lines so far: {self.lines[-20:]!r} (eof={self.eof})",
                                pytrace=False)
                self._cond.wait(min(left, 0.5))

    def wait_line(self, text: str, timeout: float = 30) -> None:
        self.wait_for(lambda ls: text in ls, timeout, f"line {text!r}")

    def wait_eof(self, timeout: float = 30) -> None:
        self.wait_for(lambda ls: self.eof, timeout, "end of stream")


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, `timeout`, a kill of the run) becomes a
    # KeyboardInterrupt so that pytest still tears the daemons down.
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def pytest_report_header(config: pytest.Config) -> str:
    return f"berth e2e target: {TARGET} ({BERTHD if TARGET == 'berthd' else 'dockerd'})"


# Make the helpers importable from the test modules as `from conftest import ...`
# works only with rootdir on sys.path; under --import-mode=importlib it is not,
# so expose this module under a stable name.
sys.modules.setdefault("berth_e2e_conftest", sys.modules[__name__])
