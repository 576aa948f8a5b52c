"""Restart policies (`docker run --restart`), with the real docker CLI."""

from __future__ import annotations

import json

import pytest
from berth_e2e_conftest import RUN_NET, docker, wait_until

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's


def state(d, name: str) -> dict:
    return json.loads(docker(d, "inspect", name).stdout)[0]


def test_on_failure_stops_after_max_retries(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--restart", "on-failure:2", image,
           "sh", "-c", "echo ran; exit 3")
    wait_until(lambda: state(berthd, name)["RestartCount"] == 2 and not state(berthd, name)["State"]["Running"]
               and state(berthd, name)["State"]["Status"] == "exited", 30, "two restarts, then exited")
    assert docker(berthd, "logs", name).stdout.count("ran") == 3
    assert state(berthd, name)["State"]["ExitCode"] == 3


def test_always_restarts_until_stopped(berthd, image, names):
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "--restart", "always", image, "sh", "-c", "sleep 0.2")
    wait_until(lambda: state(berthd, name)["RestartCount"] >= 2, 30, "restarted at least twice")
    docker(berthd, "stop", "-t", "1", name)
    count = state(berthd, name)["RestartCount"]
    wait_until(lambda: state(berthd, name)["State"]["Status"] == "exited", 10, "exited after stop")
    assert state(berthd, name)["RestartCount"] <= count + 1


def test_success_is_not_restarted_on_failure_policy(berthd, image, names):
    name = names()
    docker(berthd, "run", *RUN_NET, "--name", name, "--restart", "on-failure", image, "true")
    assert state(berthd, name)["RestartCount"] == 0


def test_bad_policy_refused(berthd, image):
    cp = docker(berthd, "run", *RUN_NET, "--restart", "sometimes", image, "true", check=False)
    assert cp.returncode == 125
    assert "restart policy" in cp.stderr
