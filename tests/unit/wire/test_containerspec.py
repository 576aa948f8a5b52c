"""The typed Config and HostConfig: read from a request or a stored record, shown as Docker's structs."""

from __future__ import annotations

import pytest

from berth.wire.containerspec import (
    ContainerConfig,
    HostConfig,
    LogConfig,
    RestartPolicy,
)


def test_host_config_reads_known_fields_and_keeps_the_rest() -> None:
    host = HostConfig.from_doc({"NetworkMode": "mynet", "Memory": 1 << 20, "RestartPolicy": {"Name": "always"},
                                "OomScoreAdj": 5, "Sysctls": {"net.ipv4.ip_forward": "1"}})
    assert host.network_mode == "mynet" and host.memory == 1 << 20
    assert host.restart_policy == RestartPolicy("always", 0)
    assert host.extra == {"OomScoreAdj": 5, "Sysctls": {"net.ipv4.ip_forward": "1"}}


@pytest.mark.parametrize(("given", "attr", "expected"), [
    ({}, "network_mode", "default"),
    ({"NetworkMode": None}, "network_mode", "default"),
    ({"Memory": None}, "memory", 0),
    ({}, "pids_limit", None),                     # a pointer in Docker's struct: null when not given
    ({"PidsLimit": 0}, "pids_limit", 0),
    ({}, "console_size", [0, 0]),
    ({"LogConfig": None}, "log_config", LogConfig()),
    ({"LogConfig": {"Type": "none"}}, "log_config", LogConfig("none", {})),
    ({"RestartPolicy": "nonsense"}, "restart_policy", RestartPolicy()),  # a stored oddity: the zero policy
])
def test_host_config_zero_values(given: dict[str, object], attr: str, expected: object) -> None:
    assert getattr(HostConfig.from_doc(given), attr) == expected


def test_host_config_shows_every_field_as_docker_does() -> None:
    doc = HostConfig.from_doc({"Memory": 5, "OomScoreAdj": 1}).to_doc()
    assert doc["Memory"] == 5 and doc["OomScoreAdj"] == 1
    assert doc["Binds"] is None and doc["PidsLimit"] is None and doc["Privileged"] is False
    assert doc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert doc["LogConfig"] == {"Type": "json-file", "Config": {}}


def test_host_config_round_trip() -> None:
    stored = {"Binds": ["/a:/b:ro"], "NetworkMode": "bridge", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]},
              "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}, "Isolation": "hyperv",
              "Runtime": "runc", "Tmpfs": {"/run": "size=1m"}, "Custom": [1, 2]}
    host = HostConfig.from_doc(stored)
    assert host.vm
    again = HostConfig.from_doc(host.to_doc())
    assert again == host
    assert {k: host.to_doc()[k] for k in stored} == stored


def test_container_config_omits_what_docker_omits() -> None:
    doc = ContainerConfig.from_doc({"Image": "busybox", "Cmd": ["true"]}).to_doc()
    assert doc["Image"] == "busybox" and doc["Cmd"] == ["true"] and doc["Env"] is None
    for key in ("ExposedPorts", "Healthcheck", "MacAddress", "StopSignal", "StopTimeout", "Shell", "NetworkDisabled"):
        assert key not in doc
    full = ContainerConfig.from_doc({"StopSignal": "SIGUSR1", "StopTimeout": 0, "Shell": ["/bin/sh"]}).to_doc()
    assert full["StopSignal"] == "SIGUSR1" and full["Shell"] == ["/bin/sh"] and full["StopTimeout"] == 0
    assert "StopTimeout" not in ContainerConfig.from_doc({"StopTimeout": None}).to_doc()


def test_container_config_ignores_the_request_s_other_objects() -> None:
    cfg = ContainerConfig.from_doc({"Image": "x", "HostConfig": {"Memory": 1}, "NetworkingConfig": {}, "Odd": 1})
    assert cfg.extra == {"Odd": 1}
