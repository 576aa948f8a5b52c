"""End-to-end: more of what a demanding Docker user does, checked against Docker's behaviour.

These tests complement test_docker_cli.py and test_sdk.py: interactive
attach/detach, large and binary streams, log time windows, lifecycle corners
(paused, created, stopped containers), ps filters, run options, resource
knobs, events, a daemon restart under a follower, and many containers at once.

Every test passes against the reference dockerd (BERTH_TEST_TARGET=dockerd)
and against berthd.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pexpect
import pytest
from berth_e2e_conftest import (
    API_VERSION,
    active_cli,
    RUN_NET,
    LineReader,
    docker,
    finish,
    is_dockerd,
    popen_docker,
    unique_name,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

NET = {"network_mode": "none"} if RUN_NET else {}



# --------------------------------------------------------------------------- #
# helpers


def run(d, *args, **kw):
    return docker(d, "run", *RUN_NET, *args, **kw)


def run_d(d, name, image, *cmd, extra=()):
    docker(d, "run", "-d", *RUN_NET, "--name", name, *extra, image, *cmd)
    return name


def inspect(d, name, *flags):
    return json.loads(docker(d, "inspect", *flags, name).stdout)[0]


def state(d, name):
    return inspect(d, name)["State"]


def fmt(d, template, name):
    return docker(d, "inspect", "--format", template, name).stdout.rstrip("\n")


def wait_log(d, name, text, timeout=30):
    def seen():
        cp = docker(d, "logs", name)
        return text in (cp.stdout + cp.stderr).splitlines()
    wait_until(seen, timeout, f"{text!r} in logs of {name}")


def wait_status(d, name, status, timeout=60):
    wait_until(lambda: state(d, name)["Status"] == status, timeout, f"{name} to be {status}")


def spawn(d, *args, timeout=30):
    return pexpect.spawn(active_cli(), list(args), env=d.env, encoding="utf-8", timeout=timeout,
                         dimensions=(24, 120))




def run_bytes(d, *args, input: bytes | None = None, timeout=120):
    """`docker run` with binary stdin/stdout."""
    return subprocess.run([active_cli(), "run", *RUN_NET, *args], env=d.env, input=input,
                          capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def log_times(d, name):
    """[(datetime, text)] from `docker logs -t`."""
    out = []
    for line in docker(d, "logs", "-t", name).stdout.splitlines():
        stamp, text = line.split(" ", 1)
        out.append((parse_rfc3339(stamp), text))
    return out


def parse_rfc3339(s: str) -> datetime:
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", s)
    assert m, s
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


def cid_of(d, name):
    return fmt(d, "{{.Id}}", name)


def cgroup_v1() -> bool:
    return Path("/sys/fs/cgroup/memory").is_dir()


# --------------------------------------------------------------------------- #
# interactive: start -ai, attach and detach


def test_start_ai_stopped_interactive_container(berthd, image, names):
    name = names()
    docker(berthd, "create", "-it", *RUN_NET, "--name", name, image, "sh")
    for n, code in ((1, 4), (2, 5)):  # a stopped interactive container starts again, attached
        child = spawn(berthd, "start", "-ai", name)
        try:
            child.expect(r"# ")
            child.sendline(f"echo round-$(({n}*10))")
            child.expect(f"round-{n * 10}")
            child.sendline(f"exit {code}")
            child.expect(pexpect.EOF)
        finally:
            child.close()
        assert child.exitstatus == code, (child.exitstatus, child.before)
        st = state(berthd, name)
        assert (st["Status"], st["ExitCode"]) == ("exited", code), st


def test_attach_then_detach_with_ctrl_p_ctrl_q(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", extra=("-it",))
    wait_until(lambda: state(berthd, name)["Running"], 30, "running")
    child = spawn(berthd, "attach", name)
    try:
        child.sendline("echo attached-$((3*3))")
        child.expect("attached-9")
        child.send("\x10\x11")  # ctrl-p ctrl-q
        child.expect(pexpect.EOF)
        assert "read escape sequence" in child.before, child.before
    finally:
        child.close()
    assert state(berthd, name)["Running"] is True  # detaching leaves it running
    # attach again: the same shell is still there, and exiting it ends the container
    child = spawn(berthd, "attach", name)
    try:
        child.sendline("echo again-$((4*4))")
        child.expect("again-16")
        child.sendline("exit 6")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 6, (child.exitstatus, child.before)
    wait_status(berthd, name, "exited")
    assert state(berthd, name)["ExitCode"] == 6


def test_run_it_detach_keeps_running(berthd, image, names):
    name = names()
    child = spawn(berthd, "run", "-it", *RUN_NET, "--name", name, image, "sh")
    try:
        child.expect(r"# ")
        child.sendline("touch /tmp/marker")
        child.expect(r"# ")
        child.send("\x10\x11")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.before)
    assert state(berthd, name)["Running"] is True
    assert docker(berthd, "exec", name, "ls", "/tmp/marker").stdout == "/tmp/marker\n"


def test_runsc_interactive_typing(berthd, image, names):
    runtimes = json.loads(docker(berthd, "info", "--format", "{{json .Runtimes}}").stdout)
    if "runsc" not in (runtimes or {}):
        pytest.skip("no runsc runtime")
    child = spawn(berthd, "run", "--rm", "-it", *RUN_NET, "--runtime", "runsc", "--name", names(),
                  image, "sh", timeout=60)
    try:
        child.expect(r"# ")
        child.sendline("echo typed-$((40+2))")
        child.expect("typed-42")
        child.sendline("stty size")
        child.expect(r"(\d+) (\d+)")
        assert child.match.groups() == ("24", "120")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 3


# --------------------------------------------------------------------------- #
# big and binary streams


def test_run_stdin_large_md5(berthd, image):
    data = os.urandom(3 * 1024 * 1024 + 123)
    cp = run_bytes(berthd, "--rm", "-i", image, "md5sum", input=data)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split()[0].decode() == hashlib.md5(data).hexdigest()
    cp = run_bytes(berthd, "--rm", "-i", image, "wc", "-c", input=data)
    assert int(cp.stdout) == len(data)


def test_exec_stdin_large_md5(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    data = os.urandom(2 * 1024 * 1024 + 7)
    cp = subprocess.run([active_cli(), "exec", "-i", name, "md5sum"], env=berthd.env, input=data,
                        capture_output=True, timeout=120)
    assert cp.stdout.split()[0].decode() == hashlib.md5(data).hexdigest(), cp


def test_binary_output_passthrough(berthd, image):
    # every byte value, many times over, through the multiplexed (non-tty) stream
    cp = run_bytes(berthd, "--rm", image, "sh", "-c",
                   "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); "
                   "done > /b; for j in 1 2 3 4 5 6 7 8; do cat /b /b /b /b; done; "
                   "md5sum /b >&2")
    assert cp.returncode == 0, cp.stderr
    block = bytes(range(256))
    assert cp.stdout == block * 32
    assert cp.stderr.split()[0].decode() == hashlib.md5(block).hexdigest()


def test_logs_long_lines_and_no_trailing_newline(berthd, image, names):
    name = names()
    script = ("head -c 150000 /dev/zero | tr '\\0' x; echo; echo mid; "
              "head -c 70000 /dev/zero | tr '\\0' y")  # the last line has no newline
    cp = run(berthd, "--name", name, image, "sh", "-c", script)
    expected = "x" * 150000 + "\nmid\n" + "y" * 70000
    assert cp.stdout == expected
    assert docker(berthd, "logs", name).stdout == expected


def test_logs_no_trailing_newline_tty_and_plain(berthd, image, names):
    plain, tty = names("plain"), names("tty")
    run(berthd, "--name", plain, image, "printf", "a\\nb-no-newline")
    run(berthd, "--name", tty, "-t", image, "printf", "a\\nb-no-newline")
    assert docker(berthd, "logs", plain).stdout == "a\nb-no-newline"
    raw = subprocess.run([active_cli(), "logs", tty], env=berthd.env, capture_output=True, timeout=60)
    assert raw.stdout == b"a\r\nb-no-newline"  # the terminal's \r\n, kept as written
    stamped = docker(berthd, "logs", "-t", plain).stdout
    lines = stamped.split("\n")
    assert [line.split(" ", 1)[1] for line in lines] == ["a", "b-no-newline"], stamped


# --------------------------------------------------------------------------- #
# logs: time windows


def test_logs_since_until_rfc3339_and_relative(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", "-c",
                 "echo one; while [ ! -e /tmp/a ]; do sleep 0.05; done; echo two; "
                 "while [ ! -e /tmp/b ]; do sleep 0.05; done; echo three; sleep 1000")
    wait_log(berthd, name, "one")
    time.sleep(0.3)
    docker(berthd, "exec", name, "touch", "/tmp/a")
    wait_log(berthd, name, "two")
    time.sleep(0.3)
    docker(berthd, "exec", name, "touch", "/tmp/b")
    wait_log(berthd, name, "three")
    (t1, _), (t2, _), (t3, _) = log_times(berthd, name)
    assert t1 < t2 < t3
    mid12, mid23 = t1 + (t2 - t1) / 2, t2 + (t3 - t2) / 2

    def z(t):  # RFC 3339, UTC, nanosecond-style fraction
        return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"

    def plus1(t):  # RFC 3339 with a +01:00 offset
        return t.astimezone(timezone(timedelta(hours=1))).strftime("%Y-%m-%dT%H:%M:%S.%f+01:00")

    def logs(*args):
        return docker(berthd, "logs", *args, name).stdout

    assert logs("--since", z(mid12)) == "two\nthree\n"
    assert logs("--until", z(mid12)) == "one\n"
    assert logs("--since", z(mid12), "--until", z(mid23)) == "two\n"
    assert logs("--since", plus1(mid12), "--until", plus1(mid23)) == "two\n"
    assert logs("--since", f"{mid23.timestamp():.6f}") == "three\n"  # unix seconds
    # relative values count back from now
    assert logs("--since", "10m") == "one\ntwo\nthree\n"
    assert logs("--until", "10m") == ""
    assert logs("--since", "1h", "--until", "30m") == ""
    assert logs("--since", z(mid12), "--tail", "1") == "three\n"
    cp = docker(berthd, "logs", "--since", "bogus", name, check=False)
    assert cp.returncode != 0 and "since" in cp.stderr, cp


def test_logs_details_shows_log_opt_labels(berthd, image, names):
    name = names()
    run(berthd, "--name", name, "--label", "team=red", "--log-opt", "labels=team", image,
        "echo", "hello")
    assert docker(berthd, "logs", "--details", name).stdout == "team=red hello\n"


# --------------------------------------------------------------------------- #
# lifecycle corners


def test_wait_several_containers(berthd, image, names):
    a, b, c = names("a"), names("b"), names("c")
    run_d(berthd, a, image, "sh", "-c", "sleep 1; exit 1")
    run_d(berthd, b, image, "sh", "-c", "sleep 2; exit 2")
    run_d(berthd, c, image, "sh", "-c", "exit 3")
    assert docker(berthd, "wait", a, b, c, timeout=60).stdout == "1\n2\n3\n"
    cp = docker(berthd, "wait", c, "no-such-" + unique_name(), check=False)
    assert cp.returncode == 1
    assert cp.stdout == "3\n"
    assert "No such container" in cp.stderr, cp.stderr


def test_restart_stopped_container(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", "-c", "echo boot; sleep 1000")
    docker(berthd, "stop", "-t", "0", name)
    assert state(berthd, name)["Status"] == "exited"
    docker(berthd, "restart", "-t", "1", name)
    st = state(berthd, name)
    assert st["Running"] is True and st["Status"] == "running", st
    wait_until(lambda: docker(berthd, "logs", name).stdout.count("boot") == 2, 30, "2nd boot")


def test_stop_paused_container(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    docker(berthd, "pause", name)
    docker(berthd, "stop", "-t", "1", name, timeout=60)
    st = state(berthd, name)
    assert st["Status"] == "exited" and st["Paused"] is False and st["Running"] is False, st
    assert st["ExitCode"] in (137, 143), st
    # and it can be started again
    docker(berthd, "start", name)
    assert state(berthd, name)["Running"] is True


def test_rm_force_paused_container(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    cid = cid_of(berthd, name)
    pid = state(berthd, name)["Pid"]
    docker(berthd, "pause", name)
    cp = docker(berthd, "rm", name, check=False)
    assert cp.returncode != 0  # without -f: refused
    docker(berthd, "rm", "-f", name, timeout=60)
    assert docker(berthd, "inspect", name, check=False).returncode != 0
    assert cid[:12] not in docker(berthd, "ps", "-aq").stdout
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the paused process to be gone")


def test_exec_into_paused_or_stopped_container(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    docker(berthd, "pause", name)
    cp = docker(berthd, "exec", name, "true", check=False)
    assert cp.returncode != 0
    assert "is paused" in cp.stderr and "unpause" in cp.stderr, cp.stderr
    docker(berthd, "unpause", name)
    docker(berthd, "stop", "-t", "0", name)
    cp = docker(berthd, "exec", name, "true", check=False)
    assert cp.returncode != 0
    assert "is not running" in cp.stderr, cp.stderr


def test_kill_created_container_error(berthd, image, names):
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, image, "sleep", "10")
    cp = docker(berthd, "kill", name, check=False)
    assert cp.returncode == 1
    assert "Cannot kill container" in cp.stderr and "is not running" in cp.stderr, cp.stderr
    assert state(berthd, name)["Status"] == "created"


def test_rename_running_container(berthd, image, names):
    old, new = names("old"), names("new")
    run_d(berthd, old, image, "sleep", "1000")
    pid = state(berthd, old)["Pid"]
    docker(berthd, "rename", old, new)
    st = state(berthd, new)
    assert st["Running"] is True and st["Pid"] == pid  # same process, not restarted
    assert docker(berthd, "exec", new, "echo", "ok").stdout == "ok\n"
    assert new in docker(berthd, "ps", "--format", "{{.Names}}").stdout.split()
    # the old name is free again
    run_d(berthd, old, image, "sleep", "1000")


def test_top_with_ps_options(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    pid = state(berthd, name)["Pid"]
    out = docker(berthd, "top", name, "-o", "pid,comm").stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"], out
    assert [str(pid), "sleep"] in [r.split() for r in out[1:]], out
    out = docker(berthd, "top", name, "-eo", "pid,user,args").stdout.splitlines()
    assert out[0].split() == ["PID", "USER", "COMMAND"], out
    assert [str(pid), "root", "sleep", "1000"] in [r.split() for r in out[1:]], out


def test_container_prune_with_label_filter(berthd, image, names):
    label = f"prune={unique_name('p')}"
    done, alive, other = names("done"), names("alive"), names("other")
    run(berthd, "--name", done, "--label", label, image, "true")
    run_d(berthd, alive, image, "sleep", "1000", extra=("--label", label))
    run(berthd, "--name", other, image, "true")
    done_id = cid_of(berthd, done)
    out = docker(berthd, "container", "prune", "-f", "--filter", f"label={label}").stdout
    assert "Deleted Containers:" in out, out
    assert done_id in out.split(), out
    assert docker(berthd, "inspect", done, check=False).returncode != 0
    assert state(berthd, alive)["Running"] is True
    assert state(berthd, other)["Status"] == "exited"
    assert "Total reclaimed space" in out, out


# --------------------------------------------------------------------------- #
# ps and inspect


def test_ps_filters_ancestor_exited_name(berthd, image, names):
    tag = unique_name("psn")
    ok, bad, up = names(f"{tag}-ok"), names(f"{tag}-bad"), names(f"{tag}-up")
    run(berthd, "--name", ok, image, "true")
    run(berthd, "--name", bad, image, "sh", "-c", "exit 3", check=False)
    run_d(berthd, up, image, "sleep", "1000")

    def ps(*args):
        return set(docker(berthd, "ps", "-a", *args, "--format", "{{.Names}}").stdout.split())

    mine = {ok, bad, up}
    assert mine <= ps("--filter", f"ancestor={image}")
    assert mine <= ps("--filter", "ancestor=busybox")
    assert ps("--filter", "exited=0") & mine == {ok}
    assert ps("--filter", "exited=3") & mine == {bad}
    assert ps("--filter", f"name={tag}") == mine
    assert ps("--filter", f"name={tag}", "--filter", "status=running") == {up}
    assert ps("--filter", f"name={tag}", "--filter", "status=exited") == {ok, bad}


def test_ps_last_includes_stopped(berthd, image, names):
    up, last = names("up"), names("last")
    run_d(berthd, up, image, "sleep", "1000")
    run(berthd, "--name", last, image, "true")
    assert docker(berthd, "ps", "--last", "1", "--format", "{{.Names}}").stdout.split() == [last]
    assert docker(berthd, "ps", "-l", "--format", "{{.Names}}").stdout.split() == [last]
    assert docker(berthd, "ps", "-n", "2", "--format", "{{.Names}}").stdout.split() == [last, up]


def test_ps_size_and_inspect_size(berthd, image, names):
    name = names()
    run(berthd, "--name", name, image, "sh", "-c", "head -c 1048576 /dev/zero > /big")
    size = docker(berthd, "ps", "-a", "--size", "--filter", f"name=^{name}$",
                  "--format", "{{.Size}}").stdout.strip()
    assert re.match(r"1\.0\dMB \(virtual \d", size), size
    info = inspect(berthd, name, "--size")
    assert 1048576 <= info["SizeRw"] < 1200000, info.get("SizeRw")
    assert info["SizeRootFs"] > info["SizeRw"], info.get("SizeRootFs")


def test_inspect_fields_cli_templates_use(berthd, image, names, tmp_path):
    name = names()
    (tmp_path / "d").mkdir()
    run_d(berthd, name, image, "sleep", "1000",
          extra=("-m", "48m", "-e", "K=V", "-v", f"{tmp_path / 'd'}:/data:ro"))
    assert fmt(berthd, "{{json .State.Health}}", name) == "null"
    ip = fmt(berthd, "{{.NetworkSettings.IPAddress}}", name)
    assert ip == "" if is_dockerd(berthd) else ip.startswith(berthd.bip.rsplit(".", 1)[0] + "."), ip
    assert fmt(berthd, "{{.HostConfig.Memory}}", name) == str(48 * 1024 * 1024)
    assert "K=V" in json.loads(fmt(berthd, "{{json .Config.Env}}", name))
    mounts = fmt(berthd, "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}}"
                 "{{end}}", name)
    assert mounts == f"bind {tmp_path / 'd'} /data false"
    assert fmt(berthd, "{{.State.Status}} {{.RestartCount}} {{.Platform}}", name) == \
        "running 0 linux"
    assert fmt(berthd, "{{.Path}} {{json .Args}}", name) == 'sleep ["1000"]'
    assert fmt(berthd, "{{.HostConfig.RestartPolicy.Name}}", name) == "no"
    assert fmt(berthd, "{{.Config.Image}}", name) == image.split(":")[0] or \
        fmt(berthd, "{{.Config.Image}}", name) == image
    assert fmt(berthd, "{{.Image}}", name).startswith("sha256:")


def test_inspect_log_config_type(berthd, image, names):
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, image, "true")
    assert fmt(berthd, "{{.HostConfig.LogConfig.Type}}", name) != ""


# --------------------------------------------------------------------------- #
# stats


def test_stats_no_stream(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000", extra=("-m", "32m"))
    out = docker(berthd, "stats", "--no-stream", "--format",
                 "{{.Name}}|{{.MemUsage}}|{{.PIDs}}", name).stdout.strip()
    got_name, mem, pids = out.split("|")
    assert got_name == name
    assert mem.endswith("/ 32MiB"), mem
    assert pids == "1"


def test_sdk_stats_one_shot(client, image, names):
    c = client.containers.run(image, ["sleep", "1000"], detach=True, name=names(),
                              mem_limit="32m", **NET)
    s = c.stats(stream=False)
    assert s["name"] in ("/" + c.name, c.name)
    assert s["id"] == c.id
    assert s["memory_stats"]["limit"] == 32 * 1024 * 1024
    assert s["memory_stats"]["usage"] > 0
    assert s["pids_stats"]["current"] >= 1
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0


# --------------------------------------------------------------------------- #
# run options


def test_env_file_and_label_file(berthd, image, names, tmp_path):
    envf = tmp_path / "env"
    envf.write_text("A=1\n# a comment\nB=two words\nFROM_CLIENT\n\n")
    labf = tmp_path / "labels"
    labf.write_text("l1=a\nl2=b c\n")
    d = dict(berthd.env, FROM_CLIENT="passed")
    cp = subprocess.run([active_cli(), "run", *RUN_NET, "--rm", "--env-file", str(envf), image,
                         "sh", "-c", 'echo "$A|$B|$FROM_CLIENT"'], env=d, capture_output=True,
                        text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert cp.stdout == "1|two words|passed\n", cp
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, "--label-file", str(labf), image, "true")
    assert json.loads(fmt(berthd, "{{json .Config.Labels}}", name)) == {"l1": "a", "l2": "b c"}


def test_env_from_client_environment(berthd, image):
    env = dict(berthd.env, SET_HERE="yes")
    env.pop("NOT_SET_ANYWHERE", None)
    cp = subprocess.run([active_cli(), "run", *RUN_NET, "--rm", "-e", "SET_HERE", "-e",
                         "NOT_SET_ANYWHERE", image, "sh", "-c",
                         'echo "[$SET_HERE]"; env | grep -c NOT_SET_ANYWHERE'],
                        env=env, capture_output=True, text=True, timeout=60,
                        stdin=subprocess.DEVNULL)
    assert cp.stdout == "[yes]\n0\n", cp


def test_workdir_missing_is_created_for_user(berthd, image):
    out = run(berthd, "--rm", "-w", "/not/in/image", "-u", "1000", image, "sh", "-c",
              "pwd; test -d /not/in/image && echo isdir").stdout
    assert out == "/not/in/image\nisdir\n", out


def test_user_with_bind_mount(berthd, image, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    host.chmod(0o777)
    out = run(berthd, "--rm", "--user", "1000:1000", "-v", f"{host}:/data", image, "sh", "-c",
              "id -u; id -g; echo hi > /data/f").stdout
    assert out == "1000\n1000\n"
    st = (host / "f").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert (host / "f").read_text() == "hi\n"


def test_supplementary_groups_include_primary_gid(berthd, image):
    def groups(*user):
        out = run(berthd, "--rm", *user, image, "grep", "^Groups:", "/proc/self/status").stdout
        return sorted(int(g) for g in out.split()[1:])

    assert groups() == [0]
    assert groups("-u", "1000:1000") == [1000]
    assert groups("-u", "1000:10") == [10]
    assert groups("-u", "bob") == [10, 1000]


def test_read_only_with_tmpfs(berthd, image):
    cp = run(berthd, "--rm", "--read-only", "--tmpfs", "/tmp", image, "sh", "-c",
             "echo x > /tmp/f && cat /tmp/f; grep ' /tmp ' /proc/mounts")
    lines = cp.stdout.splitlines()
    assert lines[0] == "x"
    assert lines[1].split()[2] == "tmpfs", lines
    cp = run(berthd, "--rm", "--read-only", "--tmpfs", "/tmp", image, "touch", "/x",
             check=False)
    assert cp.returncode != 0 and "Read-only file system" in cp.stderr


def test_stop_signal_and_stop_timeout(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", "-c",
                 "trap 'echo got-usr1; exit 4' USR1; echo armed; while true; do sleep 0.2; done",
                 extra=("--stop-signal", "USR1", "--stop-timeout", "30"))
    assert fmt(berthd, "{{.Config.StopSignal}} {{.Config.StopTimeout}}", name) == "USR1 30"
    wait_log(berthd, name, "armed")
    docker(berthd, "stop", name, timeout=60)
    st = state(berthd, name)
    assert st["ExitCode"] == 4, st
    assert "got-usr1" in docker(berthd, "logs", name).stdout
    # a --stop-timeout of 1 escalates to SIGKILL when the signal is ignored
    stubborn = run_d(berthd, names("stubborn"), image, "sh", "-c",
                     "trap '' TERM; echo armed; while true; do sleep 0.2; done",
                     extra=("--stop-timeout", "1"))
    wait_log(berthd, stubborn, "armed")
    docker(berthd, "stop", stubborn, timeout=60)
    assert state(berthd, stubborn)["ExitCode"] == 137


@pytest.mark.skipif(not cgroup_v1(), reason="cgroup v1 paths")
def test_cpu_quota_shares_and_swap(berthd, image):
    out = run(berthd, "--rm", "--cpus", "0.5", "--cpu-shares", "512", "-m", "64m",
              "--memory-swap", "128m", image, "sh", "-c",
              "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us "
              "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo na"
              ).stdout.split()
    assert out[:4] == ["50000", "100000", "512", str(64 << 20)], out
    assert out[4] in (str(128 << 20), "na"), out


@pytest.mark.skipif(not cgroup_v1(), reason="cgroup v1 paths")
def test_oom_kill_disable_applied(berthd, image):
    out = run(berthd, "--rm", "-m", "64m", "--oom-kill-disable", image,
              "cat", "/sys/fs/cgroup/memory/memory.oom_control").stdout
    assert "oom_kill_disable 1" in out.splitlines(), out


def test_no_new_privileges_and_cap_drop_all(berthd, image):
    def nnp(*opts):
        out = run(berthd, "--rm", *opts, image, "grep", "NoNewPrivs", "/proc/self/status").stdout
        return out.split()[1]

    assert nnp() == "0"
    assert nnp("--security-opt", "no-new-privileges") == "1"
    assert nnp("--security-opt", "no-new-privileges:true") == "1"
    cp = run(berthd, "--rm", "--cap-drop", "ALL", image, "ping", "-c", "1", "127.0.0.1",
             check=False)
    assert cp.returncode != 0
    assert "permission denied" in (cp.stdout + cp.stderr).lower(), cp


def test_isolation_refused_clearly(berthd, image):
    for iso in ("bogus",):  # hyperv is VM isolation, which berthd has (tests/e2e/test_vm_isolation.py)
        cp = run(berthd, "--rm", "--isolation", iso, image, "true", check=False)
        assert cp.returncode == 125, cp
        assert "isolation" in cp.stderr.lower() and iso in cp.stderr, cp.stderr


def test_log_driver_unknown_refused(berthd, image):
    cp = run(berthd, "--rm", "--log-driver", "no-such-driver", image, "true", check=False)
    assert cp.returncode == 125, cp
    assert "no-such-driver" in cp.stderr, cp.stderr


def test_log_driver_none_not_readable(berthd, image, names):
    name = names()
    cp = run(berthd, "--name", name, "--log-driver", "none", image, "echo", "hi")
    assert cp.stdout == "hi\n"  # attach still works
    cp = docker(berthd, "logs", name, check=False)
    assert cp.returncode != 0 and "does not support reading" in cp.stderr, cp


# --------------------------------------------------------------------------- #
# exec


def test_exec_user_workdir_env(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    out = docker(berthd, "exec", "-u", "bob", "-w", "/tmp", "-e", "Q=1", "-e", "R=two words",
                 name, "sh", "-c", 'id -un; pwd; echo "$Q|$R"').stdout
    assert out == "bob\n/tmp\n1|two words\n"
    cp = docker(berthd, "exec", "-w", "/does/not/exist", name, "pwd", check=False)
    assert cp.returncode == 126, cp


def test_exec_unknown_user_fails(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    cp = docker(berthd, "exec", "-u", "nosuchuser", name, "sh", "-c", "echo ran; exit 3",
                check=False)
    assert cp.returncode == 126, cp
    assert "nosuchuser" in cp.stdout + cp.stderr, cp
    assert "ran" not in cp.stdout


# --------------------------------------------------------------------------- #
# events


def test_events_die_json_live(berthd, image, names):
    name = names()
    proc = popen_docker(berthd, "events", "--filter", f"container={name}", "--filter",
                        "event=die", "--format", "{{json .}}")
    try:
        reader = LineReader(proc.stdout)
        time.sleep(0.5)  # let the subscription settle (no event before it counts)
        run(berthd, "--name", name, image, "sh", "-c", "exit 2", check=False)
        line = reader.wait_for(lambda ls: next((x for x in ls if x.startswith("{")), None),
                               30, "a die event")
        ev = json.loads(line)
        assert ev["Type"] == "container" and ev["Action"] == "die"
        assert ev["status"] == "die"
        assert ev["Actor"]["ID"] == cid_of(berthd, name)
        assert ev["Actor"]["Attributes"]["name"] == name
        assert ev["Actor"]["Attributes"]["exitCode"] == "2"
        assert ev["Actor"]["Attributes"]["image"] in (image, image.split(":")[0])
        assert ev["scope"] == "local"
        assert abs(ev["timeNano"] / 1e9 - time.time()) < 600
    finally:
        proc.terminate()
        finish(proc, 10)


def test_exec_events(berthd, image, names):
    name = run_d(berthd, names(), image, "sleep", "1000")
    since = str(int(time.time()) - 1)
    docker(berthd, "exec", name, "sh", "-c", "exit 3", check=False)
    time.sleep(1.1)
    until = str(int(time.time()) + 1)
    actions = docker(berthd, "events", "--since", since, "--until", until, "--filter",
                     f"container={name}", "--format", "{{.Action}}").stdout.splitlines()
    assert any(a.startswith("exec_create") for a in actions), actions
    assert any(a.startswith("exec_start") for a in actions), actions
    assert "exec_die" in actions, actions


def test_events_container_filter_prefix_match(berthd, image, names):
    # Docker matches the container filter of events as a prefix of the name or the ID
    # (a renamed container is still matched when its new name shares the prefix).
    base = names("pfx")
    longer = base + "-long"
    since = str(int(time.time()) - 1)
    try:
        run(berthd, "--name", longer, image, "true")
        cid = cid_of(berthd, longer)
        time.sleep(1.1)
        until = str(int(time.time()) + 1)

        def actions(value):
            return docker(berthd, "events", "--since", since, "--until", until, "--filter",
                          f"container={value}", "--format", "{{.Action}}").stdout.split()

        assert {"create", "start", "die"} <= set(actions(longer)), actions(longer)
        assert {"create", "start", "die"} <= set(actions(cid[:10])), actions(cid[:10])
        assert {"create", "start", "die"} <= set(actions(base)), actions(base)
        assert actions(longer[1:]) == []  # a prefix, not a substring
    finally:
        docker(berthd, "rm", "-f", longer, check=False)


# --------------------------------------------------------------------------- #
# SDK


def test_sdk_run_detach_logs_since_until(client, image, names):
    c = client.containers.run(image, ["sh", "-c",
                                      "echo a; while [ ! -e /tmp/g ]; do sleep 0.05; done; "
                                      "echo b; sleep 1000"], detach=True, name=names(), **NET)
    assert c.status == "created"  # the SDK's object is from before the start
    c.reload()
    assert c.status == "running"
    wait_until(lambda: c.logs() == b"a\n", 30, "a")
    time.sleep(0.3)
    c.exec_run("touch /tmp/g")
    wait_until(lambda: c.logs() == b"a\nb\n", 30, "b")
    stamps = [parse_rfc3339(line.split(b" ")[0].decode())
              for line in c.logs(timestamps=True).splitlines()]
    mid = (stamps[0] + (stamps[1] - stamps[0]) / 2).timestamp()
    # floats are fractional epoch seconds; datetimes and ints are truncated to whole seconds
    assert c.logs(since=mid) == b"b\n"
    assert c.logs(until=mid) == b"a\n"
    assert c.logs(since=int(mid) - 60) == b"a\nb\n"
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    assert c.logs(since=hour_ago) == b"a\nb\n"
    assert c.logs(until=hour_ago) == b""


def test_sdk_exec_run_stream_demux(client, image, names):
    c = client.containers.run(image, ["sleep", "1000"], detach=True, name=names(), **NET)
    r = c.exec_run(["sh", "-c", "echo o1; sleep 0.2; echo e1 >&2; sleep 0.2; echo o2"],
                   stream=True, demux=True)
    chunks = list(r.output)
    out = b"".join(o for o, _ in chunks if o)
    err = b"".join(e for _, e in chunks if e)
    assert (out, err) == (b"o1\no2\n", b"e1\n")
    assert all((o is None) != (e is None) for o, e in chunks), chunks


def test_sdk_attach_socket_large_stdin(client, image, names):
    c = client.containers.create(image, ["md5sum"], stdin_open=True, name=names(), **NET)
    s = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = s._sock
    c.start()
    data = os.urandom(1_000_000)
    raw.sendall(data)
    raw.shutdown(socket.SHUT_WR)
    raw.settimeout(60)
    buf = b""
    while True:
        chunk = raw.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    # one multiplexed frame (or several) on stdout
    payload, i = b"", 0
    while i + 8 <= len(buf):
        size = int.from_bytes(buf[i + 4:i + 8], "big")
        payload += buf[i + 8:i + 8 + size]
        i += 8 + size
    assert payload.split()[0].decode() == hashlib.md5(data).hexdigest()


def test_sdk_events_in_thread(client, image, names):
    name = names()
    seen: list[str] = []
    stream = client.events(decode=True, filters={"container": name})

    def pump():
        for ev in stream:
            seen.append(ev["Action"])
            if ev["Action"] == "destroy":
                return

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        client.containers.run(image, ["true"], name=name, remove=True, **NET)
        t.join(30)
        assert not t.is_alive(), seen
    finally:
        stream.close()
    it = iter(seen)
    assert all(a in it for a in ("create", "start", "die", "destroy")), seen


def test_sdk_image_inspect_history_info_version(client, image):
    ii = client.api.inspect_image(image)
    assert ii["Id"].startswith("sha256:")
    assert image in ii["RepoTags"]
    assert ii["Os"] == "linux" and ii["Architecture"] == "amd64"
    assert ii["RootFS"]["Type"] == "layers" and len(ii["RootFS"]["Layers"]) == 1
    assert ii["Size"] > 1_000_000
    assert ii["Comment"] == "Imported from -" or ii["Comment"].startswith("Imported from")
    hist = client.images.get(image).history()
    assert len(hist) == 1, hist
    assert hist[0]["Id"] == ii["Id"] and image in hist[0]["Tags"]
    assert hist[0]["Size"] == ii["Size"]
    info = client.info()
    assert "runc" in info["Runtimes"]
    assert info["DefaultRuntime"] == "runc"
    assert info["OSType"] == "linux"
    v = client.version()
    assert v["ApiVersion"] == API_VERSION
    assert v["Os"] == "linux" and v["Arch"] == "amd64"
    assert "Engine" in [comp["Name"] for comp in v["Components"]]


# --------------------------------------------------------------------------- #
# daemon restart and many containers (own daemons, run one at a time)


def _sigterm_daemon(d) -> None:
    pid = d.proc.pid
    if is_dockerd(d):
        pid = int(Path(d.tmp, "pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    d.proc.wait(60)


def test_daemon_restart_with_logs_follow(berthd_factory, rootfs_tar):
    d = berthd_factory(live_restore=True)
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    name = unique_name("survivor")
    run_d(d, name, "busybox:latest", "sh", "-c",
          "i=0; while true; do echo n$i; i=$((i+1)); sleep 0.2; done")
    proc = popen_docker(d, "logs", "-f", name)
    try:
        reader = LineReader(proc.stdout)
        reader.wait_line("n3")
        _sigterm_daemon(d)
        # the follower ends when its daemon goes away (it does not hang)
        reader.wait_eof(timeout=30)
        finish(proc, 30)
        time.sleep(1.0)  # the container keeps logging while no daemon runs
        d.restart()
        st = state(d, name)
        assert st["Running"] is True, st
        numbers = [int(x[1:]) for x in docker(d, "logs", name).stdout.split()]
        assert numbers == list(range(len(numbers))), numbers[:50]  # nothing lost
        last = numbers[-1]
        # following works again on the restarted daemon, and picks up new lines
        proc2 = popen_docker(d, "logs", "-f", "--tail", "1", name)
        r2 = LineReader(proc2.stdout)
        r2.wait_for(lambda ls: any(x.startswith("n") and int(x[1:]) > last + 2 for x in ls),
                    30, "new lines after restart")
        proc2.terminate()
        finish(proc2, 10)
    finally:
        finish(proc, 5)
        docker(d, "rm", "-f", name, check=False)


def _mounts_under(root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4]
        if mp == root or mp.startswith(prefix):
            out.append(mp)
    return sorted(out)


def _pids_mentioning_any(ids: list[str]) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if any(i.encode() in raw for i in ids):
            found.append(int(entry))
    return found


def test_many_containers_then_rm_all(berthd_factory, rootfs_tar):
    d = berthd_factory()
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    before = _mounts_under(d.root)
    made = []
    for i in range(20):
        name = unique_name(f"many{i}")
        run_d(d, name, "busybox:latest", "sleep", "60")
        made.append(name)
    listed = docker(d, "ps", "--format", "{{.Names}}").stdout.split()
    assert sorted(listed) == sorted(made)
    ids = docker(d, "ps", "-aq", "--no-trunc").stdout.split()
    assert len(ids) == 20
    docker(d, "rm", "-f", *docker(d, "ps", "-aq").stdout.split(), timeout=180)
    assert docker(d, "ps", "-aq").stdout.strip() == ""
    wait_until(lambda: _mounts_under(d.root) == before, 30, "container mounts to be gone")
    wait_until(lambda: not _pids_mentioning_any(ids), 30, "monitors/shims to be gone")
    # nothing is left in the daemon's container bookkeeping either
    assert json.loads(docker(d, "info", "--format", "{{json .Containers}}").stdout) == 0


# --------------------------------------------------------------------------- #
# restart policies, host namespaces


def test_restart_policy_on_failure(berthd, image, names):
    name = run_d(berthd, names(), image, "sh", "-c", "echo try; exit 1",
                 extra=("--restart", "on-failure:2"))
    wait_until(lambda: fmt(berthd, "{{.RestartCount}} {{.State.Status}}", name) == "2 exited"
               and docker(berthd, "logs", name).stdout.count("try") == 3, 60,
               "two restarts, then exited")
    assert fmt(berthd, "{{.HostConfig.RestartPolicy.Name}} "
                       "{{.HostConfig.RestartPolicy.MaximumRetryCount}}", name) == "on-failure 2"
    assert state(berthd, name)["ExitCode"] == 1


def test_restart_policy_bogus_refused(berthd, image, names):
    cp = run(berthd, "-d", "--name", names(), "--restart", "bogus", image, "true", check=False)
    assert cp.returncode == 125, cp
    assert "restart policy" in cp.stderr, cp.stderr


def test_host_pid_ipc_uts_namespaces(berthd, image):
    host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("ipc", "pid", "uts")}
    out = run(berthd, "--rm", "--pid", "host", "--ipc", "host", "--uts", "host", image, "sh",
              "-c", "for n in ipc pid uts; do readlink /proc/self/ns/$n; done; hostname").stdout
    *links, hostname = out.split()
    assert links == [host["ipc"], host["pid"], host["uts"]], (links, host)
    assert hostname == socket.gethostname()
    # and without them, the container has its own
    own = run(berthd, "--rm", image, "readlink", "/proc/self/ns/pid").stdout.strip()
    assert own != host["pid"]
