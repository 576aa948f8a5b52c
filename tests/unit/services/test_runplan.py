"""The run plan as a table of cases: request and host in, isolation/driver/network out, or the refusal."""

from __future__ import annotations

import pytest

from berth.errors import FailedPrecondition, InvalidArgument, NotImplemented_
from berth.services.runplan import HostOffer, plan
from berth.wire.containerspec import HostConfig

ALL = HostOffer(frozenset({"runc", "runsc", "vm"}), "runc", 24 * 1024)
NO_QEMU = HostOffer(frozenset({"runc", "runsc"}), "runc", 24 * 1024)
SMALL = HostOffer(frozenset({"runc", "vm"}), "runc", 512)


@pytest.mark.parametrize(("host", "offer", "want"), [
    ({}, ALL, ("process", "process", "runc", "default", False)),
    ({"Isolation": "default"}, ALL, ("process", "default", "runc", "default", False)),
    ({"Isolation": "Process"}, ALL, ("process", "process", "runc", "default", False)),
    ({"Isolation": "hyperv"}, ALL, ("hyperv", "hyperv", "runc", "default", False)),
    ({"Isolation": "vm", "NetworkMode": "none"}, ALL, ("hyperv", "hyperv", "runc", "none", False)),
    ({"Isolation": "vm", "Runtime": "runc"}, ALL, ("hyperv", "hyperv", "runc", "default", False)),
    ({"Runtime": "runsc", "NetworkMode": "none"}, ALL, ("process", "process", "runsc", "none", True)),
    ({"Runtime": "runsc"}, ALL, ("process", "process", "runsc", "default", True)),
    ({"NetworkMode": "host", "PidMode": "host", "IpcMode": "shareable"}, ALL,
     ("process", "process", "runc", "host", False)),
    ({"PidMode": "container:web", "IpcMode": "container:web"}, ALL, ("process", "process", "runc", "default", False)),
])
def test_what_the_plan_decides(host, offer, want):
    p = plan(HostConfig.from_doc(host), "busybox", "linux/amd64", True, offer)
    assert (p.isolation, p.isolation_field, p.runtime, p.network, p.sandboxed) == want
    assert p.vm is (want[0] == "hyperv")


@pytest.mark.parametrize(("host", "native", "offer", "error", "words"), [
    ({"Isolation": "windows"}, True, ALL, InvalidArgument, "invalid isolation 'windows'"),
    ({"Isolation": "hyperv"}, False, ALL, NotImplemented_, "foreign-architecture"),
    ({"Isolation": "hyperv"}, True, NO_QEMU, FailedPrecondition, "needs QEMU"),
    ({"Isolation": "hyperv", "Memory": 4 << 30}, True, SMALL, InvalidArgument, "only 512 MiB"),
    ({"Isolation": "hyperv", "Runtime": "runsc"}, True, ALL, InvalidArgument, "cannot be combined"),
    ({"Runtime": "crun"}, True, ALL, InvalidArgument, "available: runc, runsc"),
    ({"Runtime": "vm"}, True, ALL, InvalidArgument, "unknown or invalid runtime name: vm"),
    ({"Isolation": "hyperv", "NetworkMode": "host"}, True, ALL, InvalidArgument, "own kernel and network stack"),
    ({"Isolation": "vm", "NetworkMode": "container:x"}, True, ALL, InvalidArgument, "cannot be used with VM"),
    ({"Runtime": "runsc", "NetworkMode": "mynet"}, True, ALL, NotImplemented_, "loopback only"),
    ({"Runtime": "runsc", "PortBindings": {"80/tcp": [{}]}}, True, ALL, NotImplemented_, "loopback only"),
    ({"PidMode": "private-ish"}, True, ALL, InvalidArgument, "invalid PidMode"),
    ({"UTSMode": "container:x"}, True, ALL, InvalidArgument, "invalid UTSMode"),
    ({"IpcMode": 5}, True, ALL, InvalidArgument, "invalid IpcMode"),
])
def test_what_the_plan_refuses(host, native, offer, error, words):
    with pytest.raises(error, match=words):
        plan(HostConfig.from_doc(host), "busybox", "linux/arm64", native, offer)


def test_a_foreign_image_runs_in_process_isolation():
    assert plan(HostConfig(), "busybox", "linux/arm64", False, ALL).isolation == "process"
