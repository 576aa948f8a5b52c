"""berth.services.createtypes and the create-time checks of validate that name Docker's fields and words."""

from __future__ import annotations

import copy

import pytest

from berth.errors import InvalidArgument
from berth.services import createtypes, validate

GOOD = {
    "Image": "busybox", "Cmd": ["sh"], "Env": ["A=1"], "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}},
    "Volumes": {"/data": {}}, "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 3},
    "HostConfig": {
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}},
        "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "81/tcp": None},
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "ShmSize": 67108864,
        "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}], "Sysctls": {"net.ipv4.ip_forward": "1"},
        "Tmpfs": {"/run": "rw"}, "Devices": [], "ConsoleSize": [24, 80], "OomKillDisable": None, "Init": True,
        "BlkioDeviceReadBps": [{"Path": "/dev/sda", "Rate": 1024}],
    },
    "NetworkingConfig": {"EndpointsConfig": {"bridge": {}}},
}


def with_change(path: str, value: object) -> dict:
    body = copy.deepcopy(GOOD)
    where = body
    *parents, last = path.split(".")
    for key in parents:
        where = where[key]
    where[last] = value
    return body


def test_a_good_body_passes() -> None:
    createtypes.check_config(copy.deepcopy(GOOD))
    validate.check_config(copy.deepcopy(GOOD))


# (field, wrong value, the field's name as the message gives it)
WRONG = [
    ("HostConfig.LogConfig.Config", "x", "HostConfig.LogConfig.Config"),
    ("HostConfig.LogConfig.Config", {"max-size": 10}, "HostConfig.LogConfig.Config['max-size']"),
    ("HostConfig.LogConfig", "json-file", "HostConfig.LogConfig"),
    ("HostConfig.Ulimits", 5, "HostConfig.Ulimits"),
    ("HostConfig.Ulimits", [{"Name": "nofile", "Soft": "many"}], "HostConfig.Ulimits[0].Soft"),
    ("HostConfig.PortBindings", "x", "HostConfig.PortBindings"),
    ("HostConfig.PortBindings", {"80/tcp": {"HostPort": "1"}}, "HostConfig.PortBindings['80/tcp']"),
    ("HostConfig.PortBindings", {"80/tcp": [{"HostPort": 8080}]}, "HostConfig.PortBindings['80/tcp'][0].HostPort"),
    ("HostConfig.ShmSize", "lots", "HostConfig.ShmSize"),
    ("HostConfig.ShmSize", 1.5, "HostConfig.ShmSize"),
    ("HostConfig.ShmSize", True, "HostConfig.ShmSize"),
    ("HostConfig.RestartPolicy", "always", "HostConfig.RestartPolicy"),
    ("HostConfig.RestartPolicy", {"Name": "on-failure", "MaximumRetryCount": "3"},
     "HostConfig.RestartPolicy.MaximumRetryCount"),
    ("HostConfig.Sysctls", ["a=b"], "HostConfig.Sysctls"),
    ("HostConfig.Tmpfs", {"/run": 1}, "HostConfig.Tmpfs['/run']"),
    ("HostConfig.Devices", [{"PathOnHost": 1}], "HostConfig.Devices[0].PathOnHost"),
    ("HostConfig.ConsoleSize", "24x80", "HostConfig.ConsoleSize"),
    ("HostConfig.Dns", "8.8.8.8", "HostConfig.Dns"),
    ("HostConfig.OomScoreAdj", "high", "HostConfig.OomScoreAdj"),
    ("HostConfig.PublishAllPorts", "yes", "HostConfig.PublishAllPorts"),
    ("HostConfig.Init", 1, "HostConfig.Init"),
    ("HostConfig.BlkioDeviceReadBps", [{"Path": "/dev/sda", "Rate": "1k"}], "HostConfig.BlkioDeviceReadBps[0].Rate"),
    ("Healthcheck", "CMD true", "Healthcheck"),
    ("Healthcheck.Interval", "1s", "Healthcheck.Interval"),
    ("Healthcheck.Test", [1], "Healthcheck.Test"),
    ("ExposedPorts", ["80/tcp"], "ExposedPorts"),
    ("Labels", {"a": ["b"]}, "Labels['a']"),
    ("OnBuild", "RUN x", "OnBuild"),
    ("StopTimeout", "10", "StopTimeout"),
    ("NetworkingConfig", "x", "NetworkingConfig"),
    ("NetworkingConfig.EndpointsConfig", [], "NetworkingConfig.EndpointsConfig"),
]


@pytest.mark.parametrize("path, value, field", WRONG, ids=[f"{p}={v!r}" for p, v, _ in WRONG])
def test_a_wrong_type_is_refused_naming_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        createtypes.check_config(with_change(path, value))
    assert f"into {field}:" in str(caught.value)
    with pytest.raises(InvalidArgument):  # and so is it at create
        validate.check_config(with_change(path, value))


def test_the_message_uses_json_type_names() -> None:
    with pytest.raises(InvalidArgument, match=r"cannot unmarshal string into HostConfig.ShmSize: expected an integer"):
        createtypes.check_config(with_change("HostConfig.ShmSize", "lots"))
    with pytest.raises(InvalidArgument, match=r"cannot unmarshal number 1.5 into"):
        createtypes.check_config(with_change("HostConfig.ShmSize", 1.5))


@pytest.mark.parametrize("body", [None, {}, {"Cmd": ["sh"], "Env": ["A=1"]}, {"Labels": None}])
def test_commit_bodies_accepted(body: object) -> None:
    createtypes.check_commit_config(body)


@pytest.mark.parametrize("body", ["x", 5, [1], True, {"Cmd": 5}, {"Env": "A=1"}])
def test_commit_bodies_refused(body: object) -> None:
    with pytest.raises(InvalidArgument):
        createtypes.check_commit_config(body)


def test_nulls_are_accepted_everywhere() -> None:
    body = {k: None for k in createtypes.CONFIG}
    body["HostConfig"] = {k: None for k in createtypes.HOST_CONFIG}
    createtypes.check_config(body)


# --- values, in Docker's words (moby api/types/container.ValidateRestartPolicy, logger) -----------

@pytest.mark.parametrize("policy, message", [
    ({"Name": "always", "MaximumRetryCount": 3},
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ({"Name": "unless-stopped", "MaximumRetryCount": -1},
     "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative"),
    ({"Name": "no", "MaximumRetryCount": 1},
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ({"Name": "on-failure", "MaximumRetryCount": -2}, "invalid restart policy: maximum retry count cannot be negative"),
    ({"Name": "sometimes"}, "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
                            "'on-failure', or 'unless-stopped'"),
])
def test_restart_policy_refusals(policy: dict, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate.restart_policy(policy)
    assert str(caught.value) == message
    with pytest.raises(InvalidArgument):
        validate.check_config({"Image": "x", "HostConfig": {"RestartPolicy": policy}})


@pytest.mark.parametrize("policy, want", [
    (None, ("no", 0)), ({}, ("no", 0)), ({"Name": "", "MaximumRetryCount": 5}, ("no", 5)),
    ({"Name": "on-failure", "MaximumRetryCount": 5}, ("on-failure", 5)), ({"Name": "always"}, ("always", 0)),
])
def test_restart_policies_accepted(policy: dict | None, want: tuple) -> None:
    assert validate.restart_policy(policy) == want


def test_auto_remove_with_a_restart_policy() -> None:
    with pytest.raises(InvalidArgument, match="can't create 'AutoRemove' container with restart policy"):
        validate.check_config({"Image": "x", "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    validate.check_config({"Image": "x", "HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "no"}}})


def test_unknown_log_driver_in_dockers_words() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate.log_config({"Type": "asdf", "Config": {}})
    assert str(caught.value) == "logger: no log driver named 'asdf' is registered"  # docker-py compares it exactly
