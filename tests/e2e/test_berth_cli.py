"""End-to-end: berth's own CLI, and the docker CLI beside it, against the session's berthd.

Every test runs once with each client (`cli_name`: "berth", "docker"), through
the module's `berth(d, ...)` helper, and asserts the same things for both:
output, exit status, error words. What only berth's CLI does (`image bootstrap`,
its login file handling shared with docker's) is tested for berth alone.
The checks that docker's CLI was written against live in test_docker_cli.py.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from berth_e2e_conftest import CLIS, cli_run

NET = ["--network", "none"]
_CLIENT = {"name": "berth"}


@pytest.fixture(autouse=True)
def _client(cli_name: str):
    _CLIENT["name"] = cli_name
    yield cli_name
    _CLIENT["name"] = "berth"


@pytest.fixture
def host(berthd):
    """The session daemon (the tests' first argument, named as when this module ran its own)."""
    return berthd


def berth(d, *args: str, input: str | None = None, timeout: float = 60,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the test's client against *d* (exit status not checked); *env* adds to its environment."""
    if env:
        d = dataclasses.replace(d, env={**d.env, **env})
    return cli_run(_CLIENT["name"], d, *args, input=input, timeout=timeout, check=False)


def name() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def test_run_echo(host, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


def test_exit_code_and_streams(host, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"


def test_stdin_with_i(host, image: str) -> None:
    r = berth(host, "run", "--rm", "-i", *NET, image, "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n")


def test_start_failures(host, image: str) -> None:
    r = berth(host, "run", "--rm", *NET, image, "nonexistent-cmd")
    assert r.returncode == 127, r.stderr
    assert "Error response from daemon:" in r.stderr
    r = berth(host, "run", "--rm", *NET, image, "/etc/passwd")
    assert r.returncode == 126, r.stderr


def test_missing_image(host) -> None:
    r = berth(host, "run", "--rm", *NET, "no-such-image-here")
    assert r.returncode == 125
    assert "Unable to find image 'no-such-image-here:latest' locally" in r.stderr


def test_bad_flags(host) -> None:
    r = berth(host, "run", "--memory", "12x", "busybox")
    assert r.returncode == 125 and "invalid suffix" in r.stderr


def test_detach_logs_stop_rm(host, image: str) -> None:
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


def test_ps_format_and_inspect(host, image: str) -> None:
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


def test_exec(host, image: str) -> None:
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


def test_run_tty_under_pty(host, image: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(CLIS[_CLIENT["name"]], ["run", "-it", "--rm", *NET, image, "sh"], env=host.env,
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


def test_images_tag_rmi(host, image: str) -> None:
    tag = f"cli-tag-{uuid.uuid4().hex[:6]}:v1"
    assert berth(host, "tag", image, tag).returncode == 0
    r = berth(host, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert tag in r.stdout.split()
    r = berth(host, "images")
    assert r.stdout.splitlines()[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED",
                                                "SIZE"]
    r = berth(host, "rmi", tag)
    assert (r.returncode, r.stdout) == (0, f"Untagged: {tag}\n")


def test_version(host) -> None:
    r = berth(host, "version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Client:\n Version:")
    assert "\nServer:" in r.stdout and "minimum version" in r.stdout


def test_bootstrap_push_pull_save_load_login(host, tmp_path: Path, cli_name: str) -> None:
    """berth only: `image bootstrap` is berth's own; then push/pull/login/save/load with what it made."""
    if cli_name != "berth":
        pytest.skip("`image bootstrap` is berth's own verb (the rest is covered for docker elsewhere)")
    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry")
    from berth.testing.registry import LocalRegistry

    r = berth(host, "image", "bootstrap", "--name", "cliboot:latest", timeout=300)
    assert r.returncode == 0 and "Loaded image: cliboot:latest" in r.stdout, r.stderr
    env_cfg = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    (tmp_path / "reg").mkdir()
    with LocalRegistry(tmp_path / "reg", users={"bob": "pw"}) as reg:
        remote = f"{reg.address}/cli/boot:1"
        assert berth(host, "tag", "cliboot:latest", remote).returncode == 0
        run = berth(host, "push", remote, timeout=120, env=env_cfg)
        assert run.returncode != 0 and "login" in run.stderr, run.stderr
        login = berth(host, "login", reg.address, "-u", "bob", "--password-stdin", input="pw\n", env=env_cfg)
        assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
        push = berth(host, "push", remote, timeout=120, env=env_cfg)
        assert push.returncode == 0 and "digest: sha256:" in push.stdout, push.stderr
        assert berth(host, "rmi", remote).returncode == 0
        arm = berth(host, "run", "--rm", "--platform", "linux/arm64", remote, "uname", "-m", timeout=120,
                    env=env_cfg)
        assert arm.stdout == "aarch64\n" and "Unable to find image" in arm.stderr, arm.stderr
    archive = tmp_path / "boot.tar"
    assert berth(host, "save", "-o", str(archive), "cliboot:latest").returncode == 0
    assert berth(host, "rmi", "cliboot:latest").returncode == 0
    loaded = berth(host, "load", "-i", str(archive))
    assert loaded.returncode == 0 and "Loaded image: cliboot:latest" in loaded.stdout, loaded.stderr
    assert berth(host, "run", "--rm", *NET, "cliboot:latest", "uname", "-m").stdout == "x86_64\n"
