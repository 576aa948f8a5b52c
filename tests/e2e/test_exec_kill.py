"""End-to-end: kill, exec, attach and commit as Docker clients expect them (issue 11).

`docker kill` (SIGKILL) answers once the exit is recorded; an exec's terminal comes from its
create request and its output framing from its start request; a terminal's output has the pty's
ONLCR; the detach keys end attach and exec streams (over the API, as docker-py sends them, and
from the CLI); exec sessions outlive a `kill -9` of berthd and their exit codes are recorded;
`POST /commit` of a container exiting at that moment never answers 500; `--group-add` reaches
the process and its execs. With the real docker CLI and the Docker SDK.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import docker as docker_sdk
import pexpect
import pytest
from berth_e2e_conftest import (
    API_VERSION,
    active_cli,
    RUN_NET,
    assert_responsive,
    docker,
    is_dockerd,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

NET = {"network_mode": "none"} if RUN_NET else {}
SCRIPT = 'sh -c "echo hello out; sleep 1; echo hello err >&2"'  # docker-py's ExecDemuxTest, whole seconds


def run_d(d, name, image, *cmd, extra=()):
    docker(d, "run", "-d", *RUN_NET, "--name", name, *extra, image, *cmd)
    return name


def state(d, name):
    return json.loads(docker(d, "inspect", name).stdout)[0]["State"]


def spawn(d, *args, timeout=30):
    return pexpect.spawn(active_cli(), list(args), env=d.env, encoding="utf-8", timeout=timeout, dimensions=(24, 120))


def raw_out(d, *args) -> bytes:
    cp = subprocess.run([active_cli(), *args], env=d.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp
    return cp.stdout


def detached(sock, keys: list[bytes]) -> bool:
    """docker-py's assert_cat_socket_detached_with_keys: the keys typed one at a time end the stream."""
    sock = getattr(sock, "_sock", sock)
    for key in keys:
        sock.sendall(key)
        time.sleep(0.5)
    try:
        sock.sendall(b"make sure the socket is closed\n")
    except OSError:
        return True
    sock.settimeout(10)
    data = sock.recv(128)
    return data == b"" or data.startswith(b"exec attach failed: error on attach stdin: read escape sequence")


# --------------------------------------------------------------------------- #
# kill, stop, restart


def test_kill_answers_once_the_container_is_dead(berthd, image, names):
    for _ in range(3):  # each round a fresh race between the answer and the exit
        name = run_d(berthd, names(), image, "sleep", "1000")
        docker(berthd, "kill", name)
        st = state(berthd, name)
        assert (st["Running"], st["Status"], st["ExitCode"]) == (False, "exited", 137), st
        docker(berthd, "rm", name)  # not forced: it is stopped already


def test_kill_with_the_sdk_then_remove(client, image, names):
    api = client.api
    for _ in range(3):  # docker-py's KillTest::test_kill
        c = api.create_container(image, ["sleep", "9999"], name=names(), host_config=api.create_host_config(**NET))
        api.start(c)
        api.kill(c)
        st = api.inspect_container(c)["State"]
        assert st["Running"] is False and st["ExitCode"] == 137 and st["Pid"] == 0, st
        api.remove_container(c)


def test_kill_with_another_signal_answers_without_waiting(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", "-c", "trap 'echo got-usr1' USR1; while true; do sleep 1; done")
    docker(berthd, "kill", "-s", "USR1", name)
    wait_until(lambda: "got-usr1" in docker(berthd, "logs", name).stdout, 30, "the trap's output")
    assert state(berthd, name)["Running"] is True


def test_stop_and_restart_answer_after_the_exit(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    docker(berthd, "stop", "-t", "0", name)
    st = state(berthd, name)
    assert (st["Running"], st["ExitCode"]) == (False, 137), st
    docker(berthd, "rm", name)
    name = run_d(berthd, names(), image, "sleep", "1000")
    first = state(berthd, name)
    docker(berthd, "restart", "-t", "0", name)
    st = state(berthd, name)
    assert st["Running"] is True and st["Pid"] != first["Pid"] and st["StartedAt"] != first["StartedAt"], st


# --------------------------------------------------------------------------- #
# exec: terminal, framing, ONLCR


def test_exec_terminal_comes_from_the_create_request(client, image, names):
    c = client.containers.run(image, "cat", detach=True, stdin_open=True, name=names(), **NET)
    api = client.api
    e = api.exec_create(c.id, SCRIPT, tty=True)
    assert api.exec_start(e) == b"hello out\r\nhello err\r\n"  # start's Tty false: framed, with a terminal
    e = api.exec_create(c.id, SCRIPT, tty=True)
    assert api.exec_start(e, demux=True) == (b"hello out\r\nhello err\r\n", None)
    e = api.exec_create(c.id, SCRIPT)
    assert api.exec_start(e, demux=True) == (b"hello out\n", b"hello err\n")
    e = api.exec_create(c.id, "tty", tty=True)
    assert api.exec_start(e).startswith(b"/dev/pts/")
    e = api.exec_create(c.id, "tty")
    assert api.exec_start(e, tty=True) == b"not a tty\n"  # raw stream, no terminal
    assert api.exec_inspect(e["Id"])["ExitCode"] == 1


def test_terminal_output_has_onlcr(berthd, image, names):
    assert raw_out(berthd, "run", "--rm", "-t", *RUN_NET, image, "sh", "-c", "echo a; echo b") == b"a\r\nb\r\n"
    name = run_d(berthd, names(), image, "sleep", "1000")
    assert raw_out(berthd, "exec", "-t", name, "sh", "-c", "echo a; echo b") == b"a\r\nb\r\n"
    assert raw_out(berthd, "exec", name, "sh", "-c", "echo a; echo b") == b"a\nb\n"


def test_exec_it_size_and_exit_code(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    child = spawn(berthd, "exec", "-it", name, "sh")
    try:
        child.expect(r"# ")
        child.sendline("stty size")
        child.expect(r"(\d+) (\d+)")
        assert child.match.groups() == ("24", "120")
        child.sendline("exit 4")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 4, (child.exitstatus, child.before)


def test_exec_failures_are_126(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    cp = docker(berthd, "exec", name, "no-such-program", check=False)
    assert cp.returncode == 126, cp
    assert "executable file not found" in cp.stdout + cp.stderr, cp
    cp = docker(berthd, "exec", "-d", name, "sh", "-c", "exit 3")
    assert cp.returncode == 0, cp


# --------------------------------------------------------------------------- #
# detach keys


def test_detach_keys_end_an_attach_stream(client, image, names):
    api = client.api
    c = api.create_container(image, "cat", detach=True, stdin_open=True, tty=True, name=names(),
                             host_config=api.create_host_config(**NET))
    api.start(c)
    try:
        sock = api.attach_socket(c, {"stdin": True, "stream": True})  # AttachContainerTest::test_detach_with_default
        assert detached(sock, [b"\x10", b"\x11"])
        api._general_configs["detachKeys"] = "ctrl-p"  # ...::test_detach_with_config_file
        sock = api.attach_socket(c, {"stdin": True, "stream": True})
        assert detached(sock, [b"\x10"])
        sock = api.attach_socket(c, {"stdin": True, "stream": True, "detachKeys": "ctrl-x"})  # ...with_arg
        assert detached(sock, [b"\x18"])
    finally:
        api._general_configs.pop("detachKeys", None)
    assert api.inspect_container(c)["State"]["Running"] is True  # detaching leaves it running


def test_detach_keys_end_an_exec_stream(client, image, names):
    api = client.api
    c = api.create_container(image, "cat", detach=True, stdin_open=True, name=names(),
                             host_config=api.create_host_config(**NET))
    api.start(c)
    try:
        e = api.exec_create(c, "cat", stdin=True, tty=True, stdout=True)  # ExecTest::test_detach_with_default
        sock = api.exec_start(e, tty=True, socket=True)
        assert detached(sock, [b"\x10", b"\x11"])
        sock.close()
        assert api.exec_inspect(e["Id"])["Running"] is True  # the process goes on
        api._general_configs["detachKeys"] = "ctrl-p"  # ...::test_detach_with_config_file
        e = api.exec_create(c, "cat", stdin=True, tty=True, stdout=True)
        sock = api.exec_start(e, tty=True, socket=True)
        assert detached(sock, [b"\x10"])
        sock.close()
    finally:
        api._general_configs.pop("detachKeys", None)


def test_cli_exec_detach(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    child = spawn(berthd, "exec", "-it", name, "sh")
    try:
        child.expect(r"# ")
        child.sendline("echo typed-$((6*7))")
        child.expect("typed-42")
        child.send("\x10")
        time.sleep(0.3)
        child.send("\x11")
        child.expect(pexpect.EOF)
        assert "read escape sequence" in child.before, child.before
    finally:
        child.close()
    assert state(berthd, name)["Running"] is True


# --------------------------------------------------------------------------- #
# exec sessions and a daemon restart


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_exec_sessions_survive_a_daemon_kill(berthd_factory, rootfs_tar):
    d = berthd_factory()
    if is_dockerd(d):
        pytest.skip("dockerd forgets exec instances when it restarts")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    name = run_d(d, "survivor", "busybox:latest", "sleep", "1000")
    api = docker_sdk.APIClient(base_url=d.host, version=API_VERSION, timeout=60)
    try:
        long = api.exec_create(name, ["sleep", "1001"])["Id"]  # docker exec -d
        api.exec_start(long, detach=True)
        ends = api.exec_create(name, ["sh", "-c", "sleep 2; exit 9"])["Id"]  # ends while the daemon is down
        api.exec_start(ends, detach=True)
        gone = api.exec_create(name, ["sleep", "1002"])["Id"]  # its client went away
        sock = api.exec_start(gone, socket=True)
        wait_until(lambda: api.exec_inspect(gone)["Running"], 30, "the attached exec to run")
        getattr(sock, "_sock", sock).close()
        pids = {i: api.exec_inspect(i)["Pid"] for i in (long, ends, gone)}
        assert "sleep 1001" in _cmdline(pids[long]) and "sleep 1002" in _cmdline(pids[gone])
    finally:
        api.close()
    d.kill9()
    assert "sleep 1001" in _cmdline(pids[long]) and "sleep 1002" in _cmdline(pids[gone])  # not killed with it
    wait_until(lambda: not _cmdline(pids[ends]), 30, "the short exec to end while the daemon is down")
    d.restart()
    api = docker_sdk.APIClient(base_url=d.host, version=API_VERSION, timeout=60)
    try:
        assert api.exec_inspect(ends)["ExitCode"] == 9 and api.exec_inspect(ends)["Running"] is False
        for i in (long, gone):
            info = api.exec_inspect(i)
            assert info["Running"] is True and info["ExitCode"] is None and info["Pid"] == pids[i], info
        os.kill(pids[long], signal.SIGTERM)
        wait_until(lambda: api.exec_inspect(long)["ExitCode"] == 143, 30, "the exit code after the restart")
        assert docker(d, "exec", name, "echo", "after").stdout == "after\n"
        docker(d, "rm", "-f", name, timeout=120)
        wait_until(lambda: not _cmdline(pids[gone]), 30, "the session to end with its container")
    finally:
        api.close()
    assert_responsive(d)


def test_finished_exec_records_are_bounded(berthd, client, image, names):
    if is_dockerd(berthd):
        pytest.skip("berth's session records")
    c = client.containers.run(image, "sleep 1000", detach=True, name=names(), **NET)
    ids = []
    for _ in range(70):
        e = client.api.exec_create(c.id, "true")["Id"]
        client.api.exec_start(e)
        ids.append(e)
    assert client.api.exec_inspect(ids[-1])["ExitCode"] == 0
    with pytest.raises(docker_sdk.errors.NotFound):
        client.api.exec_inspect(ids[0])  # forgotten, as its files
    sessions = os.path.join(berthd.root, "containers", c.id, "execs")
    wait_until(lambda: len(os.listdir(sessions)) <= 65, 30, "old session directories to go")
    assert ids[0] not in os.listdir(sessions)
    c.remove(force=True)
    with pytest.raises(docker_sdk.errors.NotFound):
        client.api.exec_inspect(ids[-1])  # gone with its container


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed")
def test_vm_exec_sessions_survive_a_daemon_kill(berthd_factory, rootfs_tar):
    """VM-isolated: the exec client (the process's stand-in on the host) runs under conmon too."""
    d = berthd_factory()
    if is_dockerd(d):
        pytest.skip("VM isolation is berth's own")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    name = run_d(d, "vm-exec-survivor", "busybox:latest", "sleep", "1000", extra=("--isolation", "hyperv"))
    api = docker_sdk.APIClient(base_url=d.host, version=API_VERSION, timeout=60)
    try:
        long = api.exec_create(name, ["sleep", "1001"])["Id"]
        api.exec_start(long, detach=True)
        ends = api.exec_create(name, ["sh", "-c", "sleep 2; exit 9"])["Id"]
        api.exec_start(ends, detach=True)
        pids = {i: api.exec_inspect(i)["Pid"] for i in (long, ends)}
    finally:
        api.close()
    d.kill9()
    assert _cmdline(pids[long])  # its host side goes on
    wait_until(lambda: not _cmdline(pids[ends]), 60, "the short exec to end while the daemon is down")
    d.restart()
    api = docker_sdk.APIClient(base_url=d.host, version=API_VERSION, timeout=60)
    try:
        assert (api.exec_inspect(ends)["Running"], api.exec_inspect(ends)["ExitCode"]) == (False, 9)
        assert api.exec_inspect(long)["Running"] is True
        assert "sleep 1001" in docker(d, "exec", name, "ps").stdout
        docker(d, "rm", "-f", name, timeout=120)
    finally:
        api.close()
    assert_responsive(d)


# --------------------------------------------------------------------------- #
# commit


def test_commit_of_a_container_that_exits_meanwhile(client, image, names):
    api = client.api
    made = []
    try:
        for _ in range(5):  # docker-py's CommitTest::test_commit: pause defaults to true
            c = api.create_container(image, ["touch", "/test"], name=names(), host_config=api.create_host_config(**NET))
            api.start(c)
            made.append(api.commit(c["Id"])["Id"])
            assert made[-1].startswith("sha256:")
        c = api.create_container(image, ["sleep", "1000"], name=names(), host_config=api.create_host_config(**NET))
        api.start(c)
        made.append(api.commit(c["Id"])["Id"])  # a running one: paused for the commit, then running again
        st = api.inspect_container(c)["State"]
        assert st["Running"] is True and st["Paused"] is False
        api.pause(c)
        made.append(api.commit(c["Id"])["Id"])  # a paused one stays paused
        assert api.inspect_container(c)["State"]["Paused"] is True
        api.unpause(c)
    finally:
        for image_id in made:
            try:
                api.remove_image(image_id, force=True)
            except docker_sdk.errors.APIError:
                pass


# --------------------------------------------------------------------------- #
# --group-add


def _ids(text: str) -> tuple[int, list[int]]:
    """`id -G`: the primary gid, then the supplementary ones (the kernel keeps them sorted)."""
    gids = [int(g) for g in text.split()]
    return gids[0], sorted(set(gids[1:]) - {gids[0]})


def test_group_add_reaches_the_process_and_its_execs(berthd, image, names):
    out = docker(berthd, "run", "--rm", *RUN_NET, "--group-add", "wheel", "--group-add", "4242", image, "id", "-G")
    assert _ids(out.stdout) == (0, [10, 4242])
    out = docker(berthd, "run", "--rm", *RUN_NET, "-u", "bob", "--group-add", "daemon", image, "id", "-G")
    assert _ids(out.stdout) == (1000, [1, 10])
    name = run_d(berthd, names(), image, "sleep", "1000", extra=("--group-add", "wheel", "--group-add", "777"))
    assert _ids(docker(berthd, "exec", name, "id", "-G").stdout) == (0, [10, 777])
    assert _ids(docker(berthd, "exec", "-u", "nobody", name, "id", "-G").stdout) == (65534, [10, 777])


def test_group_add_unknown_name(berthd, image, names):
    cp = docker(berthd, "run", "--rm", *RUN_NET, "--name", names(), "--group-add", "no-such-group", image, "true",
                check=False)
    assert cp.returncode == 125, cp
    assert "Unable to find group no-such-group" in cp.stderr, cp.stderr


# --------------------------------------------------------------------------- #
# runsc


def test_runsc_exec(berthd, image, names):
    runtimes = json.loads(docker(berthd, "info", "--format", "{{json .Runtimes}}").stdout)
    if "runsc" not in (runtimes or {}):
        pytest.skip("no runsc runtime")
    name = run_d(berthd, names(), image, "sleep", "1000", extra=("--runtime", "runsc"))
    assert docker(berthd, "exec", name, "sh", "-c", "echo a; echo b >&2; exit 3", check=False).returncode == 3
    assert raw_out(berthd, "exec", name, "echo", "plain") == b"plain\n"
    cp = subprocess.run([active_cli(), "exec", "-t", name, "sh", "-c", "echo a; exit 4"], env=berthd.env,  # foreground
                        capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (cp.returncode, cp.stdout) == (4, b"a\r\n"), cp
    cp = docker(berthd, "exec", "-d", name, "sleep", "5")
    assert cp.returncode == 0, cp


def test_runsc_top(berthd, image, names):
    """`docker top` of a gVisor container: runsc ps (which takes no ps options) lists the sandbox's
    processes; ps options are refused with a reason instead of runsc's usage text."""
    runtimes = json.loads(docker(berthd, "info", "--format", "{{json .Runtimes}}").stdout)
    if "runsc" not in (runtimes or {}):
        pytest.skip("no runsc runtime")
    name = run_d(berthd, names(), image, "sleep", "1000", extra=("--runtime", "runsc"))
    out = docker(berthd, "top", name).stdout
    assert "PID" in out.splitlines()[0] and any(line.split()[-1] == "sleep" for line in out.splitlines()[1:]), out
    cp = docker(berthd, "top", name, "aux", check=False)
    assert cp.returncode != 0 and "ps options" in cp.stderr, cp.stderr
