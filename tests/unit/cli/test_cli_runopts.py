from __future__ import annotations

from typing import Any

import pytest

from berth.cli.parser import Parser, UsageError
from berth.cli.runopts import add_create_flags, build_create, split_volumes
from berth.cli.session import start_error_code
from berth.errors import InvalidArgument


def create(argv: list[str], env: dict[str, str] | None = None, run: bool = True) -> Any:
    p = Parser("run" if run else "create", "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    add_create_flags(p, run=run)
    return build_create(p.parse(argv), environ=env or {})


def test_minimal_run() -> None:
    req = create(["busybox"])
    assert req.query == {}
    body = req.body
    assert body["Image"] == "busybox"
    assert body["Cmd"] is None
    assert body["AttachStdin"] is False and body["AttachStdout"] and body["AttachStderr"]
    assert body["OpenStdin"] is False and body["Tty"] is False
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["AutoRemove"] is False
    assert "NetworkingConfig" not in body


def test_command_after_image_is_not_parsed_as_flags() -> None:
    req = create(["--rm", "busybox", "sh", "-c", "echo -n hi", "--rm"])
    assert req.body["Cmd"] == ["sh", "-c", "echo -n hi", "--rm"]
    assert req.body["HostConfig"]["AutoRemove"] is True


def test_interactive_tty_detach() -> None:
    req = create(["-it", "busybox", "sh"])
    b = req.body
    assert b["Tty"] and b["OpenStdin"] and b["AttachStdin"] and b["StdinOnce"]
    req = create(["-dit", "busybox", "sh"])
    b = req.body
    assert b["Tty"] and b["OpenStdin"]
    assert not b["AttachStdin"] and not b["AttachStdout"] and not b["StdinOnce"]


def test_full_flag_mapping() -> None:
    argv = ["-e", "A=1", "--env", "B", "-e", "C", "-w", "/tmp", "-u", "1000:1000", "--name", "web",
            "-v", "/src:/dst:ro", "-v", "/anon", "-l", "k=v", "--label", "flag",
            "-m", "512m", "--cpus", "1.5", "--cpu-shares", "512", "--pids-limit", "-1",
            "--entrypoint", "/bin/sh", "--read-only", "--init", "--privileged",
            "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "-h", "box", "--network", "none",
            "--isolation", "gvisor", "--runtime", "runsc", "--platform", "linux/amd64",
            "--stop-signal", "SIGUSR1", "--stop-timeout", "7", "busybox", "true"]
    req = create(argv, env={"B": "from-env"})
    b, h = req.body, req.body["HostConfig"]
    assert req.query == {"name": "web", "platform": "linux/amd64"}
    assert b["Env"] == ["A=1", "B=from-env"]
    assert b["WorkingDir"] == "/tmp" and b["User"] == "1000:1000" and b["Hostname"] == "box"
    assert b["Labels"] == {"k": "v", "flag": ""}
    assert b["Volumes"] == {"/anon": {}}
    assert b["Entrypoint"] == ["/bin/sh"]
    assert b["StopSignal"] == "SIGUSR1" and b["StopTimeout"] == 7
    assert h["Binds"] == ["/src:/dst:ro"]
    assert h["Memory"] == 512 * 1024 * 1024
    assert h["NanoCpus"] == 1_500_000_000
    assert h["CpuShares"] == 512 and h["PidsLimit"] == -1
    assert h["ReadonlyRootfs"] and h["Init"] is True and h["Privileged"]
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["NetworkMode"] == "none" and h["Isolation"] == "gvisor" and h["Runtime"] == "runsc"


def test_empty_entrypoint_resets() -> None:
    assert create(["--entrypoint", "", "busybox"]).body["Entrypoint"] == [""]


def test_init_absent_is_not_sent() -> None:
    assert "Init" not in create(["busybox"]).body["HostConfig"]


def test_user_network_gets_endpoint() -> None:
    body = create(["--network", "mynet", "busybox"]).body
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"mynet": {}}}


def test_tty_console_size() -> None:
    p = Parser("run", "")
    add_create_flags(p, run=True)
    req = build_create(p.parse(["-t", "busybox"]), environ={}, console_size=(24, 80))
    assert req.body["HostConfig"]["ConsoleSize"] == [24, 80]


@pytest.mark.parametrize("argv,message", [
    (["-m", "1x", "busybox"], 'invalid argument "1x" for "-m, --memory" flag: invalid suffix: \'x\''),
    (["--cpus", "abc", "busybox"], 'invalid argument "abc" for "--cpus" flag'),
    (["--nope", "busybox"], "unknown flag: --nope"),
    (["--pids-limit", "x", "busybox"], 'invalid argument "x" for "--pids-limit" flag'),
])
def test_bad_flags(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        create(argv)
    assert message in str(info.value)
    assert info.value.code == 125


def test_volume_specs() -> None:
    assert split_volumes(["/a:/b", "vol:/data", "/c"]) == (["/a:/b", "vol:/data"], {"/c": {}})
    # as docker's CLI: what is wrong with a spec is the daemon's to say, in its words
    assert split_volumes(["relative", "/a:relative", "a:b:c:d"]) == (["/a:relative", "a:b:c:d"], {"relative": {}})
    with pytest.raises(InvalidArgument):
        split_volumes([""])


@pytest.mark.parametrize("message,code", [
    ('exec: "nonexist": executable file not found in $PATH', 127),
    ("stat /nope: no such file or directory", 127),
    ('exec: "/etc/passwd": permission denied', 126),
    ("is a directory", 126),
    ("cgroup blew up", 125),
])
def test_start_error_codes(message: str, code: int) -> None:
    assert start_error_code(message) == code


def test_seccomp_file_is_sent_as_its_json(tmp_path) -> None:
    from berth.cli.runopts import read_seccomp_file

    path = tmp_path / "p.json"
    path.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    assert read_seccomp_file(f"seccomp={path}") == 'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'
    assert read_seccomp_file(f"seccomp:{path}") == 'seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'
    for opt in ("seccomp=unconfined", "seccomp=builtin", "no-new-privileges", "label=disable", "apparmor=x"):
        assert read_seccomp_file(opt) == opt
    path.write_text("{nope")
    with pytest.raises(InvalidArgument, match="compacting json"):
        read_seccomp_file(f"seccomp={path}")
    with pytest.raises(InvalidArgument, match="opening seccomp profile"):
        read_seccomp_file(f"seccomp={tmp_path / 'missing.json'}")
