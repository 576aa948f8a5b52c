"""The pure parts of a container's record: Config merged from request and image, defaults, restart rule."""

from __future__ import annotations

import pytest

from berth.services import containerconfig as cc
from berth.services.records import ContainerRecord
from berth.services.runplan import HostOffer, plan

IMAGE = {"Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv",
         "User": "app", "Labels": {"from": "image", "both": "image"}, "StopSignal": "SIGQUIT"}


@pytest.mark.parametrize(("request_", "want"), [
    ({}, {"Entrypoint": ["/entry"], "Cmd": ["serve"]}),
    ({"Cmd": ["other"]}, {"Entrypoint": ["/entry"], "Cmd": ["other"]}),
    ({"Entrypoint": ["/x"]}, {"Entrypoint": ["/x"], "Cmd": None}),  # a new entrypoint drops the image's Cmd
    ({"Entrypoint": [""]}, {"Entrypoint": None, "Cmd": None}),      # [""] clears it
    ({"Entrypoint": None}, {"Entrypoint": ["/entry"], "Cmd": ["serve"]}),
    ({"Cmd": "echo hi"}, {"Entrypoint": ["/entry"], "Cmd": ["/bin/sh", "-c", "echo hi"]}),
    ({"Entrypoint": "/y"}, {"Entrypoint": ["/y"], "Cmd": None}),
])
def test_command_merge(request_, want):
    cfg = cc.merge_image_config(request_, IMAGE)
    assert {"Entrypoint": cfg["Entrypoint"], "Cmd": cfg.get("Cmd")} == want


def test_env_labels_and_defaults_merge():
    cfg = cc.merge_image_config({"Env": ["A=2", "B=3"], "Labels": {"both": "request"}, "Tty": 1,
                                 "HostConfig": {"Memory": 1}, "NetworkingConfig": {}}, IMAGE)
    assert cfg["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert cfg["Labels"] == {"from": "image", "both": "request"}
    assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/srv", "app", "SIGQUIT")
    assert cfg["Tty"] is True and cfg["OpenStdin"] is False
    assert "HostConfig" not in cfg and "NetworkingConfig" not in cfg
    assert (cfg["Hostname"], cfg["Domainname"], cfg["Volumes"], cfg["OnBuild"]) == ("", "", None, None)


def test_settled_host_config_records_the_plan_and_docker_defaults():
    run = plan({"Isolation": "hyperv"}, "busybox", "linux/amd64", True,
               HostOffer(frozenset({"runc", "vm"}), "runc", 24 * 1024))
    host = cc.settled_host_config({"Isolation": "hyperv", "MemorySwappiness": -1}, run)
    assert (host["Runtime"], host["Isolation"], host["NetworkMode"]) == ("runc", "hyperv", "default")
    assert host["MemorySwappiness"] is None
    assert host["LogConfig"] == {"Type": "json-file", "Config": {}}
    assert host["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    kept = cc.settled_host_config({"NetworkMode": "none", "LogConfig": {"Type": "none"},
                                   "RestartPolicy": {"Name": "always"}}, run)
    assert (kept["NetworkMode"], kept["LogConfig"]["Type"], kept["RestartPolicy"]) == \
        ("none", "none", {"Name": "always"})


def test_new_record_is_a_created_container():
    record = cc.new_record("c" * 64, "web", {"Entrypoint": ["/e"], "Cmd": ["a", "b"]}, {}, "sha256:i", "linux",
                           [], {})
    assert (record.name, record.path, record.args) == ("web", "/e", ["a", "b"])
    assert record.state.status == "created" and not record.state.running
    doc = record.to_doc()
    assert (doc["Name"], doc["State"]["Status"], doc["EndpointsListed"]) == ("/web", "created", True)


@pytest.mark.parametrize(("policy", "stopped", "count", "code", "want"), [
    ({"Name": "no"}, False, 0, 1, False),
    ({}, False, 0, 1, False),
    ({"Name": "always"}, False, 5, 0, True),
    ({"Name": "always"}, True, 0, 1, False),  # `docker stop` ends every policy
    ({"Name": "unless-stopped"}, False, 0, 0, True),
    ({"Name": "on-failure"}, False, 0, 0, False),
    ({"Name": "on-failure"}, False, 9, 2, True),
    ({"Name": "on-failure", "MaximumRetryCount": 3}, False, 2, 1, True),
    ({"Name": "on-failure", "MaximumRetryCount": 3}, False, 3, 1, False),
])
def test_restart_policy(policy, stopped, count, code, want):
    record = ContainerRecord("c" * 64, "c", "", "/e", [], "sha256:i", {}, {"RestartPolicy": policy},
                             manually_stopped=stopped, restart_count=count)
    assert cc.should_restart(record, code) is want


def test_restart_delay_doubles_to_a_minute():
    assert [cc.restart_delay(n) for n in (0, 1, 2)] == [0.1, 0.2, 0.4]
    assert cc.restart_delay(10) == 60.0 and cc.restart_delay(50) == 60.0


def test_generated_names_and_ids():
    taken = {"a", "b"}
    name = cc.generate_name(taken)
    assert name not in taken and "_" in name
    cid = cc.new_id(set())
    assert len(cid) == 64 and not cid[:12].isdigit()


@pytest.mark.parametrize(("spec", "want"), [("a", True), ("a=1", True), ("a=2", False), ("z", False)])
def test_label_filter(spec, want):
    assert cc.label_matches({"a": "1"}, spec) is want
