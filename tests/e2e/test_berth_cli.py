"""End-to-end: the installed `berth` command against a real berthd.

The module starts its own berthd on a fresh root under /tmp (or, with
BERTH_CLI_E2E_HOST=unix:///..., uses that daemon instead -- e.g. a reference
dockerd, for checking the tests themselves), imports a busybox tarball with
`berth import`, and drives containers through the CLI only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
BERTH = str(VENV_BIN / "berth")
BERTHD = os.environ.get("BERTHD", str(VENV_BIN / "berthd"))
EXTERNAL = os.environ.get("BERTH_CLI_E2E_HOST", "")
NET = ["--network", "none"]
IMAGE = "berth-cli-e2e:latest"


def _ping(sock_path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    if EXTERNAL:
        yield EXTERNAL
        return
    if not os.path.exists(BERTHD):
        pytest.skip("berthd is not installed")
    base = Path(tempfile.mkdtemp(prefix="cli-berth-e2e-", dir="/tmp"))
    sock = base / "berth.sock"
    log = open(base / "berthd.log", "wb")
    proc = subprocess.Popen([BERTHD, "--root", str(base / "root"), "--host", f"unix://{sock}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 30
    while not _ping(str(sock)):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("berthd did not come up:\n" + (base / "berthd.log").read_text()[-3000:])
        time.sleep(0.1)
    url = f"unix://{sock}"
    try:
        yield url
    finally:
        ids = subprocess.run([BERTH, "-H", url, "ps", "-aq", "--no-trunc"], capture_output=True,
                             text=True, timeout=60).stdout.split()
        if ids:
            subprocess.run([BERTH, "-H", url, "rm", "-f", *ids], capture_output=True, timeout=120)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        _remove_daemon_leftovers(base)


def _remove_daemon_leftovers(base: Path) -> None:
    """What a stopped berthd leaves on the host: its netns directory's bind mount, its bridge, its tables."""
    from berth.api.wiring import nft_table
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(base) + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)
    for family in ("ip", "ip6"):
        subprocess.run(["nft", "delete", "table", family, nft_table(str(base / "root"))], capture_output=True,
                       timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def berth(host: str, *args: str, input: str | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BERTH, "-H", host, *args], input=input, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image(host: str) -> str:
    tar = Path(tempfile.mkdtemp(prefix="cli-bb-", dir="/tmp")) / "bb.tar"
    subprocess.run([str(VENV_BIN / "python"), "-m", "berth.testing.rootfs", str(tar)], check=True)
    r = berth(host, "import", str(tar), IMAGE)
    shutil.rmtree(tar.parent, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("sha256:")
    return IMAGE


def name() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def test_run_echo(host: str, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


def test_exit_code_and_streams(host: str, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_stdin_with_i(host: str, image: str) -> None:
    r = berth(host, "run", "--rm", "-i", *NET, image, "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n")


def test_start_failures(host: str, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "nonexistent-cmd")
    assert r.returncode == 127, r.stderr
    assert "Error response from daemon:" in r.stderr
    r = berth(host, "run", "--rm", *NET, image, "/etc/passwd")
    assert r.returncode == 126, r.stderr


def test_missing_image(host: str) -> None:
    r = berth(host, "run", "--rm", *NET, "no-such-image-here")
    assert r.returncode == 125
    assert "Unable to find image 'no-such-image-here:latest' locally" in r.stderr


def test_bad_flags(host: str) -> None:
    r = berth(host, "run", "--memory", "12x", "busybox")
    assert r.returncode == 125 and "invalid size" in r.stderr


def test_detach_logs_stop_rm(host: str, image: str) -> None:
    n = name()
    r = berth(host, "run", "-d", "--name", n, *NET, image,
              "sh", "-c", "echo started; echo oops >&2; exec sleep 300")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    deadline = time.time() + 20
    while True:
        logs = berth(host, "logs", n)
        if "started" in logs.stdout or time.time() > deadline:
            break
        time.sleep(0.2)
    assert logs.stdout == "started\n" and logs.stderr == "oops\n"
    ts = berth(host, "logs", "-t", "--tail", "1", n)
    assert ts.stderr.endswith("Z oops\n") or ts.stdout.endswith("Z started\n")
    ps = berth(host, "ps", "--format", "{{.Names}} {{.Status}}")
    assert any(line.startswith(f"{n} Up") for line in ps.stdout.splitlines()), ps.stdout
    r = berth(host, "stop", "-t", "1", n)
    assert (r.returncode, r.stdout) == (0, f"{n}\n")
    r = berth(host, "inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", n)
    assert r.stdout.strip() == "false 137"
    r = berth(host, "rm", n)
    assert (r.returncode, r.stdout) == (0, f"{n}\n")
    r = berth(host, "rm", n)
    assert r.returncode == 1 and "Error response from daemon:" in r.stderr


def test_ps_format_and_inspect(host: str, image: str) -> None:
    n = name()
    r = berth(host, "run", "--name", n, *NET, image, "sh", "-c", "exit 4")
    assert r.returncode == 4
    ps = berth(host, "ps", "-a", "--format", "{{.Names}}|{{.Image}}|{{.Command}}|{{.Status}}")
    line = next(ln for ln in ps.stdout.splitlines() if ln.startswith(n + "|"))
    assert line.startswith(f'{n}|{image.split(":")[0]}') or f"|{image}|" in line
    assert '|"sh -c' in line and "Exited (4)" in line
    r = berth(host, "inspect", "--format", "{{.State.ExitCode}}", n)
    assert (r.returncode, r.stdout) == (0, "4\n")
    r = berth(host, "inspect", n)
    assert r.stdout.startswith("[\n    {\n")
    r = berth(host, "ps", "-a", "-q", "--filter", f"name={n}")
    assert len(r.stdout.split()) == 1
    r = berth(host, "rm", n)
    assert r.returncode == 0


def test_exec(host: str, image: str) -> None:
    n = name()
    assert berth(host, "run", "-d", "--name", n, *NET, image, "sleep", "300").returncode == 0
    try:
        r = berth(host, "exec", "-e", "FOO=bar", "-w", "/tmp", n, "sh", "-c",
                  "echo $FOO $(pwd); echo e >&2; exit 7")
        assert (r.returncode, r.stdout, r.stderr) == (7, "bar /tmp\n", "e\n")
        r = berth(host, "exec", "-i", n, "cat", input="via-stdin\n")
        assert (r.returncode, r.stdout) == (0, "via-stdin\n")
    finally:
        berth(host, "rm", "-f", n)


def test_run_tty_under_pty(host: str, image: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(BERTH, ["-H", host, "run", "-it", "--rm", *NET, image, "sh"],
                          encoding="utf-8", timeout=30, dimensions=(30, 100))
    try:
        child.expect(r"[#$] ")
        child.sendline("stty size")
        child.expect("30 100")
        child.sendline("echo typed-$((1+2))")
        child.expect("typed-3")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


def test_images_tag_rmi(host: str, image: str) -> None:
    tag = f"cli-tag-{uuid.uuid4().hex[:6]}:v1"
    assert berth(host, "tag", image, tag).returncode == 0
    r = berth(host, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert tag in r.stdout.split()
    r = berth(host, "images")
    assert r.stdout.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED",
                                                "SIZE"]
    r = berth(host, "rmi", tag)
    assert (r.returncode, r.stdout) == (0, f"Untagged: {tag}\n")


def test_version(host: str) -> None:
    r = berth(host, "version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Client:\n Version:")
    assert "\nServer:" in r.stdout and "minimum version" in r.stdout


def test_bootstrap_push_pull_save_load_login(host: str, tmp_path: Path) -> None:
    if EXTERNAL or shutil.which("docker-registry") is None:
        pytest.skip("needs berth's own daemon and docker-registry")
    from berth.testing.registry import LocalRegistry

    r = berth(host, "image", "bootstrap", "--name", "cliboot:latest", timeout=300)
    assert r.returncode == 0 and "Loaded image: cliboot:latest" in r.stdout, r.stderr
    env_cfg = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    (tmp_path / "reg").mkdir()
    with LocalRegistry(tmp_path / "reg", users={"bob": "pw"}) as reg:
        remote = f"{reg.address}/cli/boot:1"
        assert berth(host, "tag", "cliboot:latest", remote).returncode == 0
        run = subprocess.run([BERTH, "-H", host, "push", remote], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env_cfg})
        assert run.returncode != 0 and "login" in run.stderr, run.stderr
        login = subprocess.run([BERTH, "-H", host, "login", reg.address, "-u", "bob", "--password-stdin"],
                               input="pw\n", capture_output=True, text=True, timeout=60, env={**os.environ, **env_cfg})
        assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
        push = subprocess.run([BERTH, "-H", host, "push", remote], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env_cfg})
        assert push.returncode == 0 and "digest: sha256:" in push.stdout, push.stderr
        assert berth(host, "rmi", remote).returncode == 0
        arm = subprocess.run([BERTH, "-H", host, "run", "--rm", "--platform", "linux/arm64", remote, "uname", "-m"],
                             capture_output=True, text=True, timeout=120, env={**os.environ, **env_cfg})
        assert arm.stdout == "aarch64\n" and "Unable to find image" in arm.stderr, arm.stderr
    archive = tmp_path / "boot.tar"
    assert berth(host, "save", "-o", str(archive), "cliboot:latest").returncode == 0
    assert berth(host, "rmi", "cliboot:latest").returncode == 0
    loaded = berth(host, "load", "-i", str(archive))
    assert loaded.returncode == 0 and "Loaded image: cliboot:latest" in loaded.stdout, loaded.stderr
    assert berth(host, "run", "--rm", *NET, "cliboot:latest", "uname", "-m").stdout == "x86_64\n"
