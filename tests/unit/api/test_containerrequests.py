"""Create and update bodies parsed into typed requests, refused in Docker's words when malformed."""

from __future__ import annotations

import pytest

from berth.api.containerrequests import create_request, update_request
from berth.errors import InvalidArgument
from berth.wire.containerspec import RestartPolicy


@pytest.mark.parametrize(("body", "entrypoint", "cmd"), [
    ({"Image": "busybox", "Cmd": ["true"]}, None, ["true"]),
    ({"Image": "busybox", "Cmd": "echo hi"}, None, ["/bin/sh", "-c", "echo hi"]),  # a string runs under sh -c
    ({"Image": "busybox", "Entrypoint": "/y"}, ["/y"], None),
    ({"Image": "busybox", "Entrypoint": [""]}, [""], None),  # kept: the merge with the image clears it
])
def test_create_commands(body: dict, entrypoint: list | None, cmd: list | None) -> None:
    request = create_request(body)
    assert (request.config.entrypoint, request.config.cmd) == (entrypoint, cmd)


def test_create_splits_config_host_and_networks() -> None:
    request = create_request({"Image": "busybox", "Tty": True, "HostConfig": {"Memory": 64 << 20, "NetworkMode": "n"},
                              "NetworkingConfig": {"EndpointsConfig": {"n": {"Aliases": ["a"]}}}})
    assert request.config.image == "busybox" and request.config.tty
    assert (request.host.memory, request.host.network_mode) == (64 << 20, "n")
    assert list(request.networks) == ["n"] and request.networks["n"].aliases == ("a",)
    assert request.config.extra == {}


@pytest.mark.parametrize("body", [[], "x", {"Image": "busybox", "Cmd": [1]}, {"HostConfig": {"Memory": -1}}])
def test_create_refused(body: object) -> None:
    with pytest.raises(InvalidArgument):
        create_request(body)


def test_update_takes_what_is_given() -> None:
    update = update_request({"Memory": 64 << 20, "CpuShares": 0, "RestartPolicy": {"Name": "always"}, "Odd": 1})
    assert update.memory == 64 << 20 and update.cpu_shares is None
    assert update.restart_policy == RestartPolicy("always", 0)
    assert update_request({}).restart_policy is None


@pytest.mark.parametrize("body", [[], {"Memory": -5}, {"RestartPolicy": {"Name": "sometimes"}}])
def test_update_refused(body: object) -> None:
    with pytest.raises(InvalidArgument):
        update_request(body)
