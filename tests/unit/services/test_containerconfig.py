"""The pure parts of a container's record: Config merged from request and image, defaults, restart rule."""

from __future__ import annotations

import json

import pytest

from berth.oci.imageconfig import RuntimeConfig
from berth.services import containerconfig as cc
from berth.services import containerrows
from berth.services.records import ContainerRecord
from berth.services.runplan import HostOffer, plan
from berth.wire.containerspec import (
    ContainerConfig,
    HostConfig,
    LogConfig,
    RestartPolicy,
)

IMAGE = RuntimeConfig.from_doc({
    "Entrypoint": ["/entry"], "Cmd": ["serve"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv", "User": "app",
    "Labels": {"from": "image", "both": "image"}, "StopSignal": "SIGQUIT", "Volumes": {"/data": {}}})


@pytest.mark.parametrize(("request_", "want"), [
    ({}, {"Entrypoint": ["/entry"], "Cmd": ["serve"]}),
    ({"Cmd": ["other"]}, {"Entrypoint": ["/entry"], "Cmd": ["other"]}),
    ({"Entrypoint": ["/x"]}, {"Entrypoint": ["/x"], "Cmd": None}),  # a new entrypoint drops the image's Cmd
    ({"Entrypoint": [""]}, {"Entrypoint": None, "Cmd": None}),      # [""] clears it
    ({"Entrypoint": None}, {"Entrypoint": ["/entry"], "Cmd": ["serve"]}),
])
def test_command_merge(request_, want):
    cfg = cc.merge_image_config(ContainerConfig.from_doc(request_), IMAGE)
    assert {"Entrypoint": cfg.entrypoint, "Cmd": cfg.cmd} == want


def test_env_labels_and_defaults_merge():
    cfg = cc.merge_image_config(ContainerConfig.from_doc({"Env": ["A=2", "B=3"], "Labels": {"both": "request"},
                                                          "Tty": True, "Volumes": {"/mine": {}}}), IMAGE)
    assert cfg.env == ["PATH=/bin", "A=2", "B=3"]
    assert cfg.labels == {"from": "image", "both": "request"}
    assert (cfg.working_dir, cfg.user, cfg.stop_signal) == ("/srv", "app", "SIGQUIT")
    assert cfg.tty is True and cfg.open_stdin is False
    assert cfg.volumes == {"/data": {}, "/mine": {}}  # the image's VOLUMEs join the request's
    doc = cfg.to_doc()
    assert (doc["Hostname"], doc["Domainname"], doc["OnBuild"]) == ("", "", None)


def test_settled_host_config_records_the_plan_and_docker_defaults():
    run = plan(HostConfig(isolation="hyperv"), "busybox", "linux/amd64", True,
               HostOffer(frozenset({"runc", "vm"}), "runc", 24 * 1024))
    host = cc.settled_host_config(HostConfig(isolation="hyperv", memory_swappiness=-1), run)
    assert (host.runtime, host.isolation, host.network_mode) == ("runc", "hyperv", "default")
    assert host.memory_swappiness is None
    assert host.log_config == LogConfig("json-file", {})
    assert host.restart_policy == RestartPolicy("no", 0)
    run = plan(HostConfig(network_mode="none"), "busybox", "linux/amd64", True,
               HostOffer(frozenset({"runc"}), "runc", 24 * 1024))
    kept = cc.settled_host_config(HostConfig.from_doc({"NetworkMode": "none", "LogConfig": {"Type": "none"},
                                                       "RestartPolicy": {"Name": "always"}}), run)
    assert (kept.network_mode, kept.log_config.type, kept.restart_policy) == ("none", "none", RestartPolicy("always"))


def test_new_record_is_a_created_container():
    record = cc.new_record("c" * 64, "web", ContainerConfig(entrypoint=["/e"], cmd=["a", "b"]), HostConfig(),
                           "sha256:i", "linux", [], {})
    assert (record.name, record.path, record.args) == ("web", "/e", ["a", "b"])
    assert record.state.status == "created" and not record.state.running
    doc = json.loads(containerrows.encode(record))
    assert (doc["Name"], doc["State"]["Status"], doc["EndpointsListed"]) == ("/web", "created", True)
    assert containerrows.decode(json.dumps(doc)) == record


@pytest.mark.parametrize(("update", "want"), [
    (cc.ResourceUpdate(memory=1 << 20), {"memory": 1 << 20, "nano_cpus": 2_000_000_000}),
    (cc.ResourceUpdate(cpu_quota=50_000), {"cpu_quota": 50_000, "nano_cpus": 0}),  # one way of CPUs clears the other
    (cc.ResourceUpdate(nano_cpus=1_000_000_000), {"nano_cpus": 1_000_000_000, "cpu_quota": 0, "cpu_period": 0}),
    (cc.ResourceUpdate(memory=0, pids_limit=None), {"memory": 256 << 20}),  # zero and null: left as they are
    (cc.ResourceUpdate(restart_policy=RestartPolicy("", 0)), {"restart_policy": RestartPolicy("always")}),
    (cc.ResourceUpdate(restart_policy=RestartPolicy("on-failure", 2)), {"restart_policy": RestartPolicy("on-failure", 2)}),
])
def test_update(update, want):
    host = HostConfig(memory=256 << 20, nano_cpus=2_000_000_000, cpu_period=100_000,
                      restart_policy=RestartPolicy("always"))
    got = cc.updated_host(host, update)
    assert {name: getattr(got, name) for name in want} == want


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
    record = ContainerRecord("c" * 64, "c", "", "/e", [], "sha256:i", ContainerConfig(),
                             HostConfig.from_doc({"RestartPolicy": policy}),
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
