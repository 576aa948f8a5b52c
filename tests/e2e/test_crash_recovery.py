"""End-to-end: berthd killed at a chosen moment of a multi-step operation; the next daemon tells no lie and
leaves no litter.

Each test stops the daemon with a crash point (BERTHD_CRASH_AT, see berth.host.crashpoint: the
daemon SIGKILLs itself there, exactly as a kill from outside would land) or with a plain kill -9,
restarts it on the same root, and checks the records against the runtime and the files on disk,
and that the recovery report in the daemon's log names what was fixed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from berth_e2e_conftest import RUN_NET, docker, wait_until

pytestmark = pytest.mark.timeout(300)


def _daemon(berthd_factory, rootfs_tar):
    d = berthd_factory()
    if d.kind != "berthd":
        pytest.skip("berth's crash points and recovery report")
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    return d


def _crash_during(d, point: str, *args: str, timeout: float = 120) -> None:
    """Run `docker *args*` on a daemon that dies at *point*; then start a daemon without the crash point."""
    d.kill9()
    d.daemon_env = {"BERTHD_CRASH_AT": point}
    d.restart()
    cp = docker(d, *args, check=False, timeout=timeout)
    assert cp.returncode != 0, f"the daemon did not die at {point}: {cp.stdout} {cp.stderr}"
    d.proc.wait(30)
    d.daemon_env = {}
    d.restart()


def _report(d) -> str:
    """The recovery lines of the daemon's last start."""
    text = Path(d.log_path).read_text(errors="replace")
    last = text.rsplit("=== start #", 1)[-1]
    return "\n".join(line for line in last.splitlines() if "recovery:" in line)


def _state(d, name):
    return json.loads(docker(d, "inspect", "--format", "{{json .State}}", name).stdout)


def _runc_status(d, cid: str) -> str:
    res = subprocess.run(["runc", "--root", str(Path(d.root) / "runtime" / "runc"), "state", cid],
                         capture_output=True, text=True, timeout=30)
    return json.loads(res.stdout)["status"] if res.returncode == 0 else "gone"


def _freezer(cid: str) -> str:
    try:
        return Path(f"/sys/fs/cgroup/freezer/berth/{cid}/freezer.state").read_text().strip()
    except OSError:
        return "none"


@pytest.mark.parametrize("isolation,intent", [("process", "commit"), ("process", "pause"), ("hyperv", "commit")])
def test_a_pause_cut_short_is_settled_with_the_runtime(berthd_factory, rootfs_tar, isolation, intent):
    """Killed after the runtime paused the container and before the record said so. A commit's hold is
    thawed (no operation holds it any more; the next commit works); a user's pause is believed. A VM's
    monitor says whether its VM is stopped."""
    if isolation == "hyperv" and not Path("/usr/bin/qemu-system-x86_64").exists():
        pytest.skip("needs QEMU")
    d = _daemon(berthd_factory, rootfs_tar)
    cid = docker(d, "run", "-d", *RUN_NET, "--isolation", isolation, "--name", "held", "busybox:latest",
                 "sleep", "1000", timeout=180).stdout.strip()
    args = ("commit", "held", "held:snap") if intent == "commit" else ("pause", "held")
    _crash_during(d, "pause:after-runtime-pause", *args)
    st = _state(d, "held")
    assert st["Running"], st
    if intent == "commit":
        assert not st["Paused"] and st["Status"] == "running", st
        if isolation == "process":
            assert _runc_status(d, cid) == "running" and _freezer(cid) == "THAWED"
        assert "held paused by a commit" in _report(d), _report(d)
        docker(d, "commit", "held", "held:again", timeout=180)
        assert _state(d, "held")["Status"] == "running"
    else:
        assert st["Paused"] and st["Status"] == "paused", st
        assert _runc_status(d, cid) == "paused" and _freezer(cid) == "FROZEN"
        assert "record corrected" in _report(d), _report(d)
        docker(d, "unpause", "held")
        assert _runc_status(d, cid) == "running"
    assert docker(d, "exec", "held", "echo", "ok", timeout=60).stdout == "ok\n"
    docker(d, "rm", "-f", "held", timeout=120)


def test_an_auto_remove_container_its_client_never_started_is_removed(berthd_factory, rootfs_tar):
    """`docker run --rm` cut between create and start leaves a created auto-remove container: as Docker's
    restore does, the next daemon removes it (and its directory)."""
    d = _daemon(berthd_factory, rootfs_tar)
    cid = docker(d, "create", "--rm", *RUN_NET, "busybox:latest", "true").stdout.strip()
    keep = docker(d, "create", *RUN_NET, "--name", "kept", "busybox:latest", "true").stdout.strip()
    d.kill9()
    d.restart()
    ids = docker(d, "ps", "-aq", "--no-trunc").stdout.split()
    assert cid not in ids and keep in ids, ids
    assert "auto-remove container left created: removed" in _report(d), _report(d)
    wait_until(lambda: not (Path(d.root) / "containers" / cid).exists(), 30, "its directory to go")


def test_a_build_cut_short_leaves_no_step_container(berthd_factory, rootfs_tar, tmp_path):
    """The daemon dies while a RUN step's container runs: the next daemon removes that container (the
    build that would have removed it is gone), its runtime state and its link with it."""
    d = _daemon(berthd_factory, rootfs_tar)
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN sleep 2 && echo done > /f\n")
    before = set(os.listdir(Path(d.root) / "s"))
    _crash_during(d, "build:step-started", "build", "-q", "-t", "cut:short", str(tmp_path), timeout=180)
    assert docker(d, "ps", "-aq").stdout.split() == []
    assert "RUN-step container" in _report(d), _report(d)
    state = Path(d.root) / "runtime" / "runc"
    wait_until(lambda: os.listdir(state) == [], 30, "runc state of the step container to go")
    assert set(os.listdir(Path(d.root) / "s")) <= before
    # and a build that is not interrupted leaves nothing either
    docker(d, "build", "-q", "-t", "whole:build", str(tmp_path), timeout=180)
    assert docker(d, "ps", "-aq").stdout.split() == []


def test_a_volume_removal_cut_short_leaves_no_directory(berthd_factory, rootfs_tar):
    """Killed after the volume's record went and before its directory did: the next daemon deletes the
    directory, and a new volume of the same name starts empty (never the old data)."""
    d = _daemon(berthd_factory, rootfs_tar)
    docker(d, "volume", "create", "data")
    docker(d, "run", "--rm", *RUN_NET, "-v", "data:/d", "busybox:latest", "sh", "-c", "echo secret > /d/f")
    _crash_during(d, "volume:after-record", "volume", "rm", "data")
    assert docker(d, "volume", "ls", "-q").stdout.split() == []
    assert os.listdir(Path(d.root) / "volumes") == []
    assert "volume directory data" in _report(d), _report(d)
    docker(d, "volume", "create", "data")
    out = docker(d, "run", "--rm", *RUN_NET, "-v", "data:/d", "busybox:latest", "ls", "-A", "/d").stdout
    assert out == ""


def test_removed_containers_leave_no_links(berthd_factory, rootfs_tar):
    """conmon's short link to each bundle (`<root>/s/<id prefix>`) goes with the container; links a
    killed daemon left pointing at removed containers are swept at the next start."""
    d = _daemon(berthd_factory, rootfs_tar)
    sockets = Path(d.root) / "s"
    before = set(os.listdir(sockets))
    for _ in range(3):
        docker(d, "run", "--rm", *RUN_NET, "busybox:latest", "true")
    cid = docker(d, "run", "-d", *RUN_NET, "busybox:latest", "true").stdout.strip()
    docker(d, "wait", cid)
    docker(d, "rm", cid)
    wait_until(lambda: set(os.listdir(sockets)) <= before, 30, "the containers' links to go")
    d.kill9()
    dangling = sockets / ("ef" * 8)
    dangling.symlink_to(Path(d.root) / "containers" / ("ef" * 32))
    d.restart()
    assert not dangling.is_symlink()
    assert "points to a removed container" in _report(d), _report(d)
