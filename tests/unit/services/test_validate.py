"""Tests for berth.services.validate: create-request checks, binds, signals, names."""

from __future__ import annotations

import copy
import signal

import pytest

from berth.errors import InvalidArgument
from berth.services.validate import (
    SecurityOptions,
    check_config,
    check_name,
    check_security_options,
    parse_bind,
    parse_signal,
    security_options,
)

MB = 1024 * 1024

# Roughly what `docker create -it -e A=1 -v /srv:/data:ro --memory 64m busybox sh` sends.
CLI_BODY = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": True, "AttachStdout": True,
    "AttachStderr": True, "Tty": True, "OpenStdin": True, "StdinOnce": True,
    "Env": ["A=1"], "Cmd": ["sh"], "Image": "busybox", "Volumes": {}, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "Labels": {"com.example": "x"},
    "HostConfig": {
        "Binds": ["/srv:/data:ro"], "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [24, 80], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 64 * MB, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "CpuPeriod": 0,
        "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "",
        "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
        "OomKillDisable": None, "PidsLimit": None, "Ulimits": [], "CpuCount": 0,
        "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None,
        "ReadonlyPaths": None, "Init": None,
    },
    "NetworkingConfig": {"EndpointsConfig": {}},
}


def body(**changes) -> dict:
    b = copy.deepcopy(CLI_BODY)
    for key, value in changes.items():
        if key.startswith("HC_"):
            b["HostConfig"][key[3:]] = value
        else:
            b[key] = value
    return b


def test_cli_shaped_body_is_accepted() -> None:
    check_config(copy.deepcopy(CLI_BODY))


@pytest.mark.parametrize("b", [
    {},
    {"Image": "busybox"},
    {"Image": "busybox", "Cmd": "echo hi", "Entrypoint": "/bin/sh"},
    {"Image": "busybox", "HostConfig": None, "Labels": None, "Env": None},
    {"Image": "busybox", "StopTimeout": 10, "StopSignal": "SIGUSR1"},
    {"Image": "busybox", "HostConfig": {"MemorySwap": -1, "Memory": 6 * MB}},
    {"Image": "busybox", "HostConfig": {"NanoCpus": 1_500_000_000}},
    {"Image": "busybox", "HostConfig": {"CpuQuota": 50000, "CpuPeriod": 100000}},
    {"Image": "busybox", "HostConfig": {"Binds": ["/a:/b", "/c:/d:rw,rshared"]}},
], ids=["empty", "image", "string-cmd", "nulls", "stop", "swap-unlimited", "nanocpus", "quota", "binds"])
def test_other_good_bodies(b: dict) -> None:
    check_config(b)


@pytest.mark.parametrize("changes", [
    {"Cmd": 5},
    {"Cmd": {"a": 1}},
    {"Entrypoint": 1.5},
    {"Tty": "yes"},
    {"Tty": 1},
    {"OpenStdin": "true"},
    {"HC_Memory": "1g"},
    {"HC_Memory": 1.5e9},
    {"HC_Memory": True},
    {"Env": [1]},
    {"Env": ["A=1", None]},
    {"Env": "A=1"},
    {"Cmd": ["sh", 2]},
    {"Entrypoint": [["sh"]]},
    {"Labels": ["a=b"]},
    {"Labels": {"a": 1}},
    {"StopTimeout": "10"},
    {"StopTimeout": False},
    {"HostConfig": []},
    {"HostConfig": "x"},
    {"HC_Binds": "/a:/b"},
    {"HC_Binds": [5]},
    {"HC_Privileged": "false"},
    {"HC_AutoRemove": 0},
    {"HC_CapAdd": "NET_ADMIN"},
    {"HC_NanoCpus": "1"},
    {"HC_PidsLimit": "100"},
    {"HC_NetworkMode": 1},
])
def test_wrong_types_refused(changes: dict) -> None:
    with pytest.raises(InvalidArgument):
        check_config(body(**changes))


def test_wrong_type_message_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="Tty"):
        check_config(body(Tty="yes"))
    with pytest.raises(InvalidArgument, match="Memory"):
        check_config(body(HC_Memory="1g"))


@pytest.mark.parametrize("b", [None, [], "x", 5])
def test_body_must_be_an_object(b) -> None:
    with pytest.raises(InvalidArgument):
        check_config(b)


@pytest.mark.parametrize("key", ["Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod"])
def test_negative_values_refused(key: str) -> None:
    changes = {"HC_" + key: -2}
    if key == "Memory":
        changes = {"HC_Memory": -1}
    with pytest.raises(InvalidArgument, match=key):
        check_config(body(**changes))


@pytest.mark.parametrize("memory", [1, 4 * MB, 6 * MB - 1])
def test_memory_below_6mb_refused(memory: int) -> None:
    with pytest.raises(InvalidArgument, match="6MB"):
        check_config(body(HC_Memory=memory))


def test_memory_6mb_and_zero_accepted() -> None:
    check_config(body(HC_Memory=6 * MB))
    check_config(body(HC_Memory=0))


@pytest.mark.parametrize("other", [{"HC_CpuQuota": 50000}, {"HC_CpuPeriod": 100000}])
def test_nanocpus_with_quota_or_period_refused(other: dict) -> None:
    with pytest.raises(InvalidArgument, match="Nano CPUs"):
        check_config(body(HC_NanoCpus=1_000_000_000, **other))


def test_bad_bind_in_body_refused() -> None:
    with pytest.raises(InvalidArgument):
        check_config(body(HC_Binds=["./relative:/b"]))


# --------------------------------------------------------------------------- #
# parse_bind


@pytest.mark.parametrize("bind,want", [
    ("/a:/b", ("/a", "/b", False, ())),
    ("/a:/b:ro", ("/a", "/b", True, ())),
    ("/a:/b:rw", ("/a", "/b", False, ())),
    ("/a:/b:rw,rshared", ("/a", "/b", False, ("rshared",))),
    ("/a:/b:ro,rslave", ("/a", "/b", True, ("rslave",))),
    ("/a:/b:z", ("/a", "/b", False, ())),
    ("/a:/b:Z,ro", ("/a", "/b", True, ())),
    ("/a:/b:nocopy", ("/a", "/b", False, ())),
    ("/srv/data dir:/mnt/with space", ("/srv/data dir", "/mnt/with space", False, ())),
    ("/:/host", ("/", "/host", False, ())),
])
def test_parse_bind_forms(bind: str, want: tuple) -> None:
    assert parse_bind(bind) == want


@pytest.mark.parametrize("bind,what", [
    ("rel:/b", "absolute"),
    ("./rel:/b", "absolute"),
    ("named-volume:/data", "absolute"),
    ("/a:rel", "absolute"),
    ("/a:b/c", "absolute"),
    ("/a:/", "'/'"),
    ("/a:/b:bogus", "bogus"),
    ("/a:/b:ro,wat", "wat"),
    ("/a", "specification"),
    ("/a:/b:ro:extra", "specification"),
    ("", "specification"),
])
def test_parse_bind_refused(bind: str, what: str) -> None:
    with pytest.raises(InvalidArgument, match=what):
        parse_bind(bind)


@pytest.mark.parametrize("bind", [None, 5, ["/a:/b"], b"/a:/b"])
def test_parse_bind_non_string(bind) -> None:
    with pytest.raises(InvalidArgument):
        parse_bind(bind)


# --------------------------------------------------------------------------- #
# parse_signal


@pytest.mark.parametrize("value,num", [
    ("KILL", 9), ("SIGKILL", 9), ("sigkill", 9), ("kill", 9), ("sigusr1", signal.SIGUSR1),
    ("USR2", signal.SIGUSR2), ("TERM", 15), ("HUP", 1), ("9", 9), (9, 9), (" 15 ", 15),
    ("1", 1), ("64", 64), ("RTMIN", signal.SIGRTMIN), ("RTMIN+3", int(signal.SIGRTMIN) + 3),
    ("SIGRTMIN+3", int(signal.SIGRTMIN) + 3), ("rtmin+1", int(signal.SIGRTMIN) + 1),
    ("RTMAX", signal.SIGRTMAX), ("WINCH", signal.SIGWINCH),
])
def test_parse_signal(value, num: int) -> None:
    assert parse_signal(value) == int(num)


@pytest.mark.parametrize("value", [None, ""])
def test_parse_signal_default(value) -> None:
    assert parse_signal(value) == signal.SIGTERM
    assert parse_signal(value, default=signal.SIGINT) == signal.SIGINT


@pytest.mark.parametrize("value", ["NOPE", "SIGNOPE", "0", 0, "65", 65, "-9", "SIG", "9x", "RTMIN+99",
                                   "RTMIN-1", "1.5", "SIG_DFL", "KILL KILL"])
def test_parse_signal_refused(value) -> None:
    with pytest.raises(InvalidArgument):
        parse_signal(value)


@pytest.mark.parametrize("value", ["\u0669", "\u00b2"])
def test_parse_signal_non_ascii_digits_refused(value: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_signal(value)


def test_parse_signal_rtmax_minus() -> None:
    assert parse_signal("RTMAX-1") == int(signal.SIGRTMAX) - 1


# --------------------------------------------------------------------------- #
# check_name


@pytest.mark.parametrize("name,want", [
    ("web", "web"), ("/web", "web"), ("my_app-1.2", "my_app-1.2"), ("A1", "A1"), ("0abc", "0abc"),
])
def test_check_name_good(name: str, want: str) -> None:
    assert check_name(name) == want


@pytest.mark.parametrize("name", ["", "a", "/", "//web", "-web", "_web", ".web", "web/x", "web app",
                                  "wéb", "web:1", "web!"])
def test_check_name_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid container name"):
        check_name(name)


def test_check_name_trailing_newline_refused() -> None:
    with pytest.raises(InvalidArgument):
        check_name("web\n")


# --- HostConfig.SecurityOpt ---

PROFILE = '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}'


@pytest.mark.parametrize(("opts", "want"), [
    (None, SecurityOptions()),
    ([], SecurityOptions()),
    (["no-new-privileges"], SecurityOptions(no_new_privileges=True)),
    (["no-new-privileges=true"], SecurityOptions(no_new_privileges=True)),
    (["no-new-privileges:true"], SecurityOptions(no_new_privileges=True)),
    (["no-new-privileges=1"], SecurityOptions(no_new_privileges=True)),
    (["no-new-privileges", "no-new-privileges=false"], SecurityOptions()),
    (["seccomp=unconfined"], SecurityOptions(seccomp="unconfined")),
    (["seccomp:unconfined"], SecurityOptions(seccomp="unconfined")),
    (["seccomp=builtin"], SecurityOptions(seccomp="builtin")),
    ([f"seccomp={PROFILE}"], SecurityOptions(seccomp=PROFILE)),
    (["seccomp=unconfined", "seccomp=builtin"], SecurityOptions(seccomp="builtin")),
    (["apparmor=unconfined"], SecurityOptions(apparmor="unconfined")),
    (["label=disable"], SecurityOptions(labels=("disable",))),
    (["label:disable", "disable"], SecurityOptions(labels=("disable", "disable"))),
    (["label=type:svirt_t"], SecurityOptions(labels=("type:svirt_t",))),
])
def test_security_options(opts: list[str] | None, want: SecurityOptions) -> None:
    assert security_options(opts) == want


@pytest.mark.parametrize(("opts", "words"), [
    ("seccomp=unconfined", "expected an array of strings"),
    ([1], "expected an array of strings"),
    (["bogus"], "invalid --security-opt: 'bogus'"),
    (["foo=bar"], "invalid --security-opt: 'foo=bar'"),
    (["writable-cgroups=true"], "invalid --security-opt"),
    (["no-new-privileges=maybe"], "no-new-privileges takes true or false"),
    (["seccomp=/etc/profile.json"], "the docker CLI reads seccomp=FILE"),
    (['seccomp={"defaultAction": "SCMP_ACT_NOPE"}'], "invalid seccomp profile: defaultAction"),
    (["seccomp={not json"], "Decoding seccomp profile failed"),
])
def test_security_options_errors(opts: object, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        security_options(opts)
    assert words in str(err.value)


def test_long_option_is_shortened_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as err:
        security_options(["x" * 10000 + "=1"])
    assert len(str(err.value)) < 300


def test_apparmor_and_label_need_the_host() -> None:
    check_security_options(security_options(["apparmor=unconfined", "label=disable"]), False, False)
    with pytest.raises(InvalidArgument, match="AppArmor is not enabled on this host"):
        check_security_options(security_options(["apparmor=docker-default"]), False, False)
    with pytest.raises(InvalidArgument, match="berth does not load AppArmor profiles"):
        check_security_options(security_options(["apparmor=docker-default"]), True, False)
    with pytest.raises(InvalidArgument, match="SELinux is not enabled on this host"):
        check_security_options(security_options(["label=type:svirt_t"]), False, False)


def test_check_config_checks_security_options() -> None:
    body = copy.deepcopy(CLI_BODY)
    body["HostConfig"]["SecurityOpt"] = ["seccomp=unconfined", "no-new-privileges=true", "label=disable"]
    check_config(body)
    body["HostConfig"]["SecurityOpt"] = ["seccomp={}x"]
    with pytest.raises(InvalidArgument, match="seccomp"):
        check_config(body)


@pytest.mark.parametrize("changes, words", [
    ({"MacAddress": "nope"}, "Config.MacAddress"),
    ({"NetworkingConfig": {"EndpointsConfig": {"net": {"MacAddress": "02:42:zz:00:00:01"}}}}, "on network net"),
    ({"NetworkingConfig": {"EndpointsConfig": {"net": {"IPAMConfig": {"IPv6Address": "10.0.0.1"}}}}},
     "--ip6.*on network net"),
])
def test_addresses_are_checked_at_create(changes, words):
    with pytest.raises(InvalidArgument, match=words):
        check_config(body(**changes))


def test_good_addresses_pass():
    check_config(body(MacAddress="02:42:ac:11:00:02", NetworkingConfig={"EndpointsConfig": {"net": {
        "MacAddress": "02:42:ac:11:00:03", "IPAMConfig": {"IPv6Address": "fd00::5"}}}}))
