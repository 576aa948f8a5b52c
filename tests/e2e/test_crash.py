"""End-to-end: the daemon dies with SIGKILL and comes back; containers don't notice.

Containers are owned by their monitors, not by the daemon: a `kill -9` of the
daemon must leave them running, keep their logs whole, and record the exit of
one that ends while the daemon is down. A new daemon on the same root and
socket picks everything up again.

With BERTH_TEST_TARGET=dockerd this runs against dockerd with live-restore,
which is Docker's way of keeping containers across a daemon restart.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from berth_e2e_conftest import active_cli, RUN_NET, LineReader, docker, wait_until

pytestmark = pytest.mark.timeout(240)

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.2; done"


def _state(d, name):
    return json.loads(docker(d, "inspect", "--format", "{{json .State}}", name).stdout)


def _numbers(d, name):
    return [int(x) for x in docker(d, "logs", name).stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        pid = int(next(line.split()[1] for line in status.splitlines()
                       if line.startswith("PPid:")))
        chain.append(pid)
    return chain


def _popen(d, *args):
    return subprocess.Popen([active_cli(), *args], env=d.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_daemon_kill9_and_restart(berthd_factory, rootfs_tar):
    d = berthd_factory(live_restore=True)
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    counter, sleeper, short = "crash-counter", "crash-sleeper", "crash-short"
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in ((counter, COUNTER), (sleeper, "sleep 1000"),
                          (short, "sleep 3; exit 4")):
            docker(d, "run", "-d", *RUN_NET, "--name", name, "busybox:latest", "sh", "-c", cmd)
        pids = {n: _state(d, n)["Pid"] for n in (counter, sleeper, short)}
        assert all(p > 0 for p in pids.values()), pids

        follow = _popen(d, "logs", "-f", counter)
        procs.append(follow)
        reader = LineReader(follow.stdout)
        reader.wait_line("3")

        daemon_pid = d.proc.pid
        for name, pid in pids.items():
            assert daemon_pid not in _ancestors(pid), (name, pid, _ancestors(pid))

        d.kill9()
        # the follower loses its daemon and ends; the containers do not
        reader.wait_eof(timeout=60)
        assert _alive(pids[counter]) and _alive(pids[sleeper])
        wait_until(lambda: not _alive(pids[short]), 60, "the short container to exit")
        assert _alive(pids[counter]) and _alive(pids[sleeper])

        d.restart()

        # survivors run on, same processes
        ps = docker(d, "ps", "--format", "{{.Names}}").stdout.split()
        assert counter in ps and sleeper in ps and short not in ps, ps
        for name in (counter, sleeper):
            st = _state(d, name)
            assert st["Running"] is True and st["Pid"] == pids[name], (name, st)
        # the one that ended while the daemon was down has its real exit code
        st = wait_until(lambda: (s := _state(d, short))["Status"] == "exited" and s, 30,
                        "short container reported exited")
        assert st["ExitCode"] == 4, st
        status = docker(d, "ps", "-a", "--filter", f"name=^{short}$",
                        "--format", "{{.Status}}").stdout
        assert status.startswith("Exited (4)"), status

        # the counter's log has every number, before, during and after the outage
        before = max(int(x) for x in reader.lines if x.strip().isdigit())
        nums = wait_until(lambda: (n := _numbers(d, counter)) and n[-1] > before + 10 and n,
                          60, "the counter to go on after the restart")
        assert nums == list(range(len(nums))), f"gap or repeat in {nums}"

        # logs -f streams again
        follow2 = _popen(d, "logs", "-f", "--tail", "1", counter)
        procs.append(follow2)
        reader2 = LineReader(follow2.stdout)
        last = nums[-1]
        reader2.wait_for(lambda ls: any(x.isdigit() and int(x) > last + 2 for x in ls), 30,
                         "new counter lines from logs -f")

        # attach sees live output
        att = _popen(d, "attach", "--sig-proxy=false", counter)
        procs.append(att)
        reader3 = LineReader(att.stdout)
        reader3.wait_for(lambda ls: sum(x.isdigit() for x in ls) >= 2, 30,
                         "counter lines through attach")
        _end(att)

        assert docker(d, "exec", sleeper, "echo", "still-here").stdout == "still-here\n"

        # stop and wait work on reconnected containers
        docker(d, "stop", "-t", "1", counter, timeout=60)
        assert docker(d, "wait", counter).stdout == "137\n"
        reader2.wait_eof(timeout=30)
        waiter = _popen(d, "wait", sleeper)
        procs.append(waiter)
        docker(d, "kill", sleeper)
        assert waiter.wait(60) == 0
        assert waiter.stdout.read().strip() == "137"
        assert not _alive(pids[counter]) and not _alive(pids[sleeper])
        st = _state(d, counter)
        assert st["Status"] == "exited" and st["ExitCode"] == 137
    finally:
        for p in procs:
            _end(p)
        if d.proc is not None and d.proc.poll() is None:
            docker(d, "rm", "-f", counter, sleeper, short, check=False, timeout=120)


def test_runtime_state_of_a_removed_container_is_swept_at_restart(berthd_factory, rootfs_tar, tmp_path):
    """The runtime's clean-up after an exit runs beside the removal: a daemon killed before it finished
    leaves runc state (and cgroups) for an id that has no record. The next daemon deletes it."""
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's runtime state directory")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    docker(d, "run", "--rm", *RUN_NET, "busybox:latest", "true")  # the common path still ends clean
    state_root = Path(d.root) / "runtime" / "runc"
    # run --rm answers once the exit is recorded; runc's own delete finishes beside it, moments later
    wait_until(lambda: os.listdir(state_root) == [], 30, "runc state of the removed container to go")
    d.kill9()
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(rootfs_tar), "-C", str(bundle / "rootfs")], check=True)
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"].update(terminal=False, args=["sleep", "1000"])
    (bundle / "config.json").write_text(json.dumps(spec))
    orphan = "ab" * 32
    subprocess.run(["runc", "--root", str(state_root), "create", "--bundle", str(bundle), orphan],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    assert orphan in os.listdir(state_root)
    d.restart()
    assert orphan not in os.listdir(state_root)
    listed = subprocess.run(["runc", "--root", str(state_root), "list", "-q"], capture_output=True, text=True)
    assert orphan not in listed.stdout


@pytest.mark.parametrize("isolation", ["process", "hyperv"])
def test_a_start_the_daemon_did_not_live_to_record_is_adopted(berthd_factory, rootfs_tar, isolation):
    """berthd killed after the runtime started the container and before the record said "running"
    (crash point start:after-runtime-start): the next daemon asks the runtime (Runtime.load, each
    driver reading its own monitor's files) and adopts the container, VM-isolated ones too."""
    if isolation == "hyperv" and not Path("/usr/bin/qemu-system-x86_64").exists():
        pytest.skip("needs QEMU")
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's crash points")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    docker(d, "create", "--name", "late", "--isolation", isolation, *RUN_NET, "busybox:latest",
           "sh", "-c", "echo up; exec sleep 1000", timeout=120)
    d.kill9()
    d.daemon_env = {"BERTHD_CRASH_AT": "start:after-runtime-start"}
    d.restart()
    cp = docker(d, "start", "late", check=False, timeout=180)
    assert cp.returncode != 0  # the daemon died under the request
    d.proc.wait(30)
    d.daemon_env = {}
    d.restart()
    st = _state(d, "late")
    assert st["Status"] == "running" and st["Running"], st
    assert docker(d, "exec", "late", "echo", "inside", timeout=120).stdout == "inside\n"
    docker(d, "stop", "-t", "1", "late", timeout=120)
    st = _state(d, "late")
    assert st["Status"] == "exited" and not st["Running"], st
    docker(d, "rm", "late", timeout=120)


def test_a_removed_container_s_directory_is_swept_at_restart(berthd_factory, rootfs_tar):
    """rm answers once the record is gone; the directory is deleted beside the answer. A daemon killed
    before that finished leaves a directory no record claims: the next daemon deletes it."""
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's storage layout")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    cid = docker(d, "run", "-d", *RUN_NET, "busybox:latest", "true").stdout.strip()
    docker(d, "wait", cid, timeout=60)
    docker(d, "rm", cid, timeout=60)
    containers = Path(d.root) / "containers"
    wait_until(lambda: cid not in os.listdir(containers), 30, "the removed container's directory to go")
    d.kill9()
    orphan = containers / ("cd" * 32)  # what a removal cut short leaves: no record claims it
    (orphan / "upper" / "deep").mkdir(parents=True)
    (orphan / "upper" / "deep" / "file").write_text("left")
    d.restart()
    assert not orphan.exists()
