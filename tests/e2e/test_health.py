"""Health checks (HEALTHCHECK, --health-*, --no-healthcheck) with the real docker CLI and the SDK.

Probes run every second here so the tests stay short; the waits are generous
(a probe is an exec: runc, runsc, or a VM's exec client under TCG), and no
test asserts on a duration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from berth_e2e_conftest import (
    active_cli,
    RUN_NET,
    assert_responsive,
    docker,
    is_dockerd,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

SECOND = 1_000_000_000
QUICK = ["--health-interval", "1s", "--health-timeout", "5s"]


def inspect(d, name: str) -> dict:
    return json.loads(docker(d, "inspect", name).stdout)[0]


def health(d, name: str) -> dict:
    return inspect(d, name)["State"].get("Health") or {}


def wait_status(d, name: str, status: str, timeout: float = 60) -> dict:
    return wait_until(lambda: (h := health(d, name)).get("Status") == status and h, timeout,
                      f"{name} to become {status}")


def ps_names(d, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    return docker(d, "ps", "-a", *args, "--format", "{{.Names}}").stdout.split()


def ps_status(d, name: str) -> str:
    return docker(d, "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.strip()


def probe_clients(marker: str = "berth-probe-") -> list[int]:
    """Host processes that are a probe's runtime command (their argv names our probe directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def events(d, name: str, since: float) -> list[str]:
    out = docker(d, "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                 "--filter", f"container={name}", "--format", "{{.Action}}").stdout
    return out.splitlines()


def test_healthy_status_ps_and_filters(berthd, image, names):
    name, plain = names(), names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, *QUICK, "--health-cmd", "echo probed; true",
           image, "sleep", "300")
    docker(berthd, "run", "-d", *RUN_NET, "--name", plain, image, "sleep", "300")
    h = wait_status(berthd, name, "healthy")
    assert h["FailingStreak"] == 0
    entry = h["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "probed\n"
    assert entry["Start"] <= entry["End"]
    cfg = inspect(berthd, name)["Config"]["Healthcheck"]
    assert cfg == {"Test": ["CMD-SHELL", "echo probed; true"], "Interval": SECOND, "Timeout": 5 * SECOND}
    assert ps_status(berthd, name).endswith("(healthy)") and ps_status(berthd, name).startswith("Up ")
    assert "(" not in ps_status(berthd, plain)  # no check: nothing said about health
    assert "Health" not in inspect(berthd, plain)["State"]
    assert name in ps_names(berthd, "health=healthy") and plain not in ps_names(berthd, "health=healthy")
    assert plain in ps_names(berthd, "health=none") and name not in ps_names(berthd, "health=none")
    assert name not in ps_names(berthd, "health=unhealthy") + ps_names(berthd, "health=starting")
    bad = docker(berthd, "ps", "--filter", "health=sick", check=False)
    assert bad.returncode != 0 and "Unrecognised filter value for health: sick" in bad.stderr
    wait_until(lambda: len(health(berthd, name)["Log"]) == 5, 60, "five log entries")
    time.sleep(2.5)
    assert len(health(berthd, name)["Log"]) == 5  # the last five, no more


def test_starting_until_the_first_probe(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--health-cmd", "true", image, "sleep", "300")
    # the first probe comes one interval (30 s by default) after the start
    assert health(berthd, name) == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert ps_status(berthd, name).endswith("(health: starting)")
    assert name in ps_names(berthd, "health=starting")


def test_unhealthy_after_retries_with_events(berthd, image, names):
    name = names()
    since = time.time()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, *QUICK, "--health-retries", "2",
           "--health-cmd", "echo failing >&2; exit 3", image, "sleep", "300")
    h = wait_status(berthd, name, "unhealthy")
    assert h["FailingStreak"] >= 2
    assert all(e["ExitCode"] == 3 and e["Output"] == "failing\n" for e in h["Log"])
    assert ps_status(berthd, name).endswith("(unhealthy)")
    assert name in ps_names(berthd, "health=unhealthy")
    actions = events(berthd, name, since)
    assert "health_status: unhealthy" in actions
    assert "health_status: healthy" not in actions
    assert "exec_create: /bin/sh -c echo failing >&2; exit 3" in actions
    assert "exec_start: /bin/sh -c echo failing >&2; exit 3" in actions
    assert "exec_die" in actions
    # Docker's fuzzy event filter: health_status matches "health_status: unhealthy"
    out = docker(berthd, "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                 "--filter", f"container={name}", "--filter", "event=health_status",
                 "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.splitlines()
    assert out and all(line == f"health_status: unhealthy {name}" for line in out), out


def test_hanging_probe_is_killed_at_its_timeout(berthd, image, names, client):
    name = names()
    c = client.api.create_container(image, ["sleep", "300"], name=name, healthcheck={
        "test": ["CMD", "sleep", "100"], "interval": SECOND, "timeout": SECOND, "retries": 1})
    client.api.start(c)
    h = wait_status(berthd, name, "unhealthy")
    entry = h["Log"][0]
    assert entry["ExitCode"] == -1 and entry["Output"] == "Health check exceeded timeout (1s)"
    # every probe was killed: at most the one under way is in the container, and no runc exec lingers
    wait_until(lambda: len(health(berthd, name)["Log"]) >= 3, 60, "three timed-out probes")
    top = client.api.top(name)
    sleepers = [p for p in top["Processes"] if "sleep 100" in " ".join(p)]
    assert len(sleepers) <= 1, top
    assert len(probe_clients()) <= 2  # one per probing container at most (other tests may be probing)
    assert_responsive(berthd)


def test_missing_probe_command_is_unhealthy_not_an_error(berthd, image, names, client):
    name = names()
    c = client.api.create_container(image, ["sleep", "300"], name=name, healthcheck={
        "test": ["CMD", "/no/such/probe"], "interval": SECOND, "retries": 1})
    client.api.start(c)
    h = wait_status(berthd, name, "unhealthy")
    entry = h["Log"][-1]
    assert entry["ExitCode"] == -1 and "/no/such/probe" in entry["Output"], entry
    assert inspect(berthd, name)["State"]["Running"] is True
    assert_responsive(berthd)


def test_probe_output_is_bounded(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, *QUICK,
           "--health-cmd", "head -c 1000000 /dev/zero | tr '\\0' x", image, "sleep", "300")
    h = wait_status(berthd, name, "healthy")
    output = h["Log"][-1]["Output"]
    assert output == "x" * 4096 + "...", len(output)
    assert_responsive(berthd)


def test_probe_leaving_a_process_holding_its_output_leaks_nothing(berthd, image, names):
    """A probe whose background child keeps its output open: runc's exec waits for that output to
    end, so the probe ends at its timeout; berthd keeps no descriptor or process for it after."""
    if is_dockerd(berthd):
        pytest.skip("looks at berthd's own descriptors")
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--health-interval", "1s", "--health-timeout", "1s",
           "--health-retries", "1000", "--health-cmd", "sleep 1000 & echo left one", image, "sleep", "300")
    wait_until(lambda: len(health(berthd, name)["Log"]) >= 1, 60, "a first probe")
    first = health(berthd, name)["Log"][0]
    assert first["Output"] in ("left one\n", "Health check exceeded timeout (1s): left one\n"), first
    fds = len(os.listdir(f"/proc/{berthd.proc.pid}/fd"))
    wait_until(lambda: len(health(berthd, name)["Log"]) == 5 and
               health(berthd, name)["Log"][0]["Start"] > first["Start"], 90, "five more probes")
    assert len(os.listdir(f"/proc/{berthd.proc.pid}/fd")) < fds + 3, "a descriptor kept per probe"
    assert len(probe_clients()) <= 1
    assert_responsive(berthd)


def test_image_healthcheck_from_build_and_no_healthcheck(berthd, image, names, tmp_path):
    if is_dockerd(berthd):
        pytest.skip("builds with berth's own classic builder")
    tag = f"health-built-{os.getpid()}:latest"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {image}\n"
        "HEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD test -e /tmp/ok || exit 1\n"
        'CMD ["sleep", "300"]\n')
    env = dict(berthd.env, DOCKER_BUILDKIT="0")
    cp = subprocess.run([active_cli(), "build", "-q", "-t", tag, str(tmp_path)], env=env, capture_output=True,
                        text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    name, off = names(), names()
    try:
        since = time.time()
        docker(berthd, "run", "-d", *RUN_NET, "--name", name, tag)
        docker(berthd, "run", "-d", *RUN_NET, "--name", off, "--no-healthcheck", tag)
        cfg = inspect(berthd, name)["Config"]["Healthcheck"]
        assert cfg["Test"] == ["CMD-SHELL", "test -e /tmp/ok || exit 1"] and cfg["Interval"] == SECOND
        wait_status(berthd, name, "unhealthy")
        docker(berthd, "exec", name, "touch", "/tmp/ok")
        wait_status(berthd, name, "healthy")
        actions = [a for a in events(berthd, name, since) if a.startswith("health_status")]
        assert actions[:2] == ["health_status: unhealthy", "health_status: healthy"], actions
        # --no-healthcheck: the image's check is off, and nothing runs
        assert inspect(berthd, off)["Config"]["Healthcheck"]["Test"] == ["NONE"]
        assert "Health" not in inspect(berthd, off)["State"]
        assert off in ps_names(berthd, "health=none")
        # a restarted container starts over at "starting", its log kept
        before = len(health(berthd, name)["Log"])
        docker(berthd, "restart", "-t", "0", name)
        h = health(berthd, name)
        assert h["Status"] in ("starting", "healthy") and len(h["Log"]) >= min(before, 5)
        wait_status(berthd, name, "healthy")
        # probing stops with the container
        docker(berthd, "stop", "-t", "0", name)
        count = [e["Start"] for e in health(berthd, name)["Log"]]
        time.sleep(2.5)
        assert [e["Start"] for e in health(berthd, name)["Log"]] == count
        assert ps_status(berthd, name).startswith("Exited") and "health" not in ps_status(berthd, name)
    finally:
        docker(berthd, "rm", "-f", name, off, check=False)
        docker(berthd, "rmi", tag, check=False)


@pytest.mark.parametrize("args, words", [
    (["--health-interval", "500us"], "Interval in Healthcheck cannot be less than 1ms"),
    (["--health-timeout", "10ns"], "Timeout in Healthcheck cannot be less than 1ms"),
    (["--health-start-period", "999us"], "StartPeriod in Healthcheck cannot be less than 1ms"),
])
def test_bad_durations_refused(berthd, image, args, words):
    cp = docker(berthd, "run", "--rm", *RUN_NET, *args, "--health-cmd", "true", image, "true", check=False)
    assert cp.returncode == 125 and words in cp.stderr, cp.stderr


def test_bad_healthcheck_body_is_400(berthd, image, client):
    import docker as sdk

    for hc, words in (({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
                      ({"Test": ["CMD", "true"], "Interval": "1s"}, "Healthcheck.Interval"),
                      ({"Test": ["PROBE", "x"]}, "Healthcheck.Test")):
        with pytest.raises(sdk.errors.APIError) as err:
            client.api.create_container(image, "true", healthcheck=hc)
        assert err.value.status_code == 400 and words in str(err.value.explanation), err.value.explanation
    assert_responsive(berthd)


def test_probing_resumes_after_daemon_restart(berthd_factory, rootfs_tar):
    d = berthd_factory(live_restore=True)
    docker(d, "import", str(rootfs_tar), "busybox:latest", timeout=120)
    name = "health-restart"
    docker(d, "run", "-d", *RUN_NET, "--name", name, *QUICK, "--health-cmd", "true", "busybox:latest",
           "sleep", "300")
    wait_status(d, name, "healthy")
    d.kill9()
    d.restart()
    h = health(d, name)
    assert h["Status"] in ("starting", "healthy") and h["Log"], h
    last = h["Log"][-1]["Start"]
    wait_until(lambda: (g := health(d, name))["Status"] == "healthy" and g["Log"][-1]["Start"] > last, 60,
               "a probe after the restart")
    assert_responsive(d)


def runtimes(d) -> dict:
    return json.loads(docker(d, "info", "--format", "{{json .Runtimes}}").stdout) or {}


def test_runsc_probe_and_timeout(berthd, image, names):
    if "runsc" not in runtimes(berthd):
        pytest.skip("no runsc runtime")
    good, hung = names(), names()
    docker(berthd, "run", "-d", "--runtime", "runsc", "--name", good, *QUICK, "--health-cmd", "true",
           image, "sleep", "300", timeout=120)
    docker(berthd, "run", "-d", "--runtime", "runsc", "--name", hung, "--health-interval", "1s",
           "--health-timeout", "1s", "--health-retries", "1", "--health-cmd", "sleep 100",
           image, "sleep", "300", timeout=120)
    wait_status(berthd, good, "healthy", timeout=120)
    h = wait_status(berthd, hung, "unhealthy", timeout=120)
    assert h["Log"][0]["Output"] == "Health check exceeded timeout (1s)"
    wait_until(lambda: len(health(berthd, hung)["Log"]) >= 3, 60, "three timed-out probes")
    ps = docker(berthd, "exec", hung, "ps").stdout  # (docker top: runsc ps takes no ps options)
    assert ps.count("sleep 100") <= 2, ps  # the probes past their timeout were killed in the sandbox
    assert_responsive(berthd)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 is not installed")
def test_vm_probe(berthd, image, names):
    if is_dockerd(berthd):
        pytest.skip("VM isolation is berth's own")
    name = names()
    docker(berthd, "run", "-d", "--isolation", "hyperv", "--name", name, "--health-interval", "1s",
           "--health-timeout", "20s", "--health-cmd", "test -d /proc/1", image, "sleep", "300", timeout=180)
    h = wait_status(berthd, name, "healthy", timeout=120)
    assert h["Log"][-1]["ExitCode"] == 0
    assert ps_status(berthd, name).endswith("(healthy)")
    hung = names()
    docker(berthd, "run", "-d", "--isolation", "hyperv", "--name", hung, "--health-interval", "1s",
           "--health-timeout", "2s", "--health-retries", "1", "--health-cmd", "sleep 100",
           image, "sleep", "300", timeout=180)
    h = wait_status(berthd, hung, "unhealthy", timeout=120)
    assert h["Log"][0]["Output"] == "Health check exceeded timeout (2s)"
    wait_until(lambda: len(health(berthd, hung)["Log"]) >= 3, 90, "three timed-out probes")
    ps = docker(berthd, "exec", hung, "ps").stdout
    assert ps.count("sleep 100") <= 2, ps  # the monitor killed each probe in the guest when its client went
    assert_responsive(berthd)
