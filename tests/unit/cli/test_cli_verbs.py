"""The pure parts of the verbs issue 15 added: stats/df/history/network rows, the extra run flags,
the run/create error words, docker's usage errors, command groups."""

from __future__ import annotations

import io
import re

import pytest

from berth.cli import groups, main, runerrors
from berth.cli.commands_imagegroup import history_row
from berth.cli.commands_network import go_time, network_row
from berth.cli.commands_stats import cpu_percent, df_rows, memory, stats_row
from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser, UsageError
from berth.cli.runextra import parse_device, parse_throttle, parse_ulimit
from berth.cli.runopts import add_create_flags, build_create
from berth.cli.tables import json_rows
from berth.errors import InvalidArgument

SAMPLE = {
    "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000, "percpu_usage": [1, 2]}, "system_cpu_usage": 200_000_000,
                  "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 100_000_000},
    "memory_stats": {"usage": 3 << 20, "limit": 1 << 30, "stats": {"total_inactive_file": 1 << 20}},
    "pids_stats": {"current": 3},
    "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 656}},
    "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 2_000_000}]},
}


def test_stats_row_like_docker() -> None:
    assert cpu_percent(SAMPLE) == pytest.approx(4.0)  # 2e6 of 1e8 ns, times 2 CPUs
    assert memory(SAMPLE) == (2 << 20, 1 << 30)  # the inactive page cache is not counted
    row = stats_row("web", SAMPLE, "web", "ab" * 32, trunc=True)
    assert row == {"Container": "web", "ID": "abababababab", "Name": "web", "CPUPerc": "4.00%",
                   "MemUsage": "2MiB / 1GiB", "MemPerc": "0.20%", "NetIO": "1.5kB / 656B",
                   "BlockIO": "4.1kB / 2MB", "PIDs": "3"}
    assert stats_row("x", SAMPLE, "x", "ab" * 32, trunc=False)["ID"] == "ab" * 32


def test_stats_row_of_a_stopped_container_is_zeros() -> None:
    row = stats_row("c1", None, "", "cd" * 32, trunc=True)
    assert (row["Name"], row["CPUPerc"], row["MemUsage"], row["MemPerc"], row["NetIO"], row["PIDs"]) == \
        ("--", "0.00%", "0B / 0B", "0.00%", "0B / 0B", "0")


def test_stats_first_sample_without_previous_is_zero_cpu() -> None:
    doc = {**SAMPLE, "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0}}
    assert cpu_percent({**doc, "cpu_stats": {**SAMPLE["cpu_stats"], "system_cpu_usage": 0}}) == 0.0


def test_df_rows() -> None:
    doc = {"LayersSize": 2_000_000,
           "Images": [{"Containers": 1, "Size": 1_500_000, "SharedSize": 0},
                      {"Containers": 0, "Size": 500_000, "SharedSize": 0}],
           "Containers": [{"State": "running", "SizeRw": 100}, {"State": "exited", "SizeRw": 300}],
           "Volumes": [{"UsageData": {"Size": 1000, "RefCount": 0}}, {"UsageData": {"Size": -1, "RefCount": 1}}],
           "BuildCache": [{"InUse": False, "Shared": False, "Size": 5000}]}
    rows = {r["Type"]: r for r in df_rows(doc)}
    assert list(rows) == ["Images", "Containers", "Local Volumes", "Build Cache"]
    assert rows["Images"] == {"Type": "Images", "TotalCount": "2", "Active": "1", "Size": "2MB",
                              "Reclaimable": "500kB (25%)"}
    assert (rows["Containers"]["Active"], rows["Containers"]["Size"], rows["Containers"]["Reclaimable"]) == \
        ("1", "400B", "300B (75%)")
    assert (rows["Local Volumes"]["Active"], rows["Local Volumes"]["Reclaimable"]) == ("1", "1kB (100%)")
    assert rows["Build Cache"]["Reclaimable"] == "5kB"
    empty = df_rows({})
    assert [r["Reclaimable"] for r in empty] == ["0B", "0B", "0B", "0B"]


def test_history_row() -> None:
    h = {"Id": "sha256:" + "f" * 64, "Created": 1000, "CreatedBy": "/bin/sh -c\t" + "x" * 60, "Size": 1_980_000,
         "Comment": "Imported from -", "Tags": ["a:1"]}
    row = history_row(h, now=1000 + 7200)
    assert (row["ID"], row["CreatedSince"], row["Size"], row["Comment"]) == \
        ("f" * 12, "2 hours ago", "1.98MB", "Imported from -")
    assert len(row["CreatedBy"]) == 45 and row["CreatedBy"].endswith("…") and "\t" not in row["CreatedBy"]
    assert history_row({**h, "Id": "<missing>"}, 0)["ID"] == "<missing>"
    full = history_row(h, 0, trunc=False, human=False)
    assert full["ID"] == h["Id"] and full["Size"] == "1980000" and full["CreatedBy"].endswith("x" * 60)


def test_network_row_and_json() -> None:
    n = {"Id": "9" * 64, "Name": "front", "Driver": "bridge", "Scope": "local", "EnableIPv6": True,
         "Internal": False, "Labels": {"team": "blue"}, "Created": "2026-01-01T00:00:00Z"}
    row = network_row(n, trunc=True)
    assert (row["ID"], row["IPv6"], row["Internal"], row["Labels"], row["Label"]("team")) == \
        ("9" * 12, "true", "false", "team=blue", "blue")
    line = json_rows([row])
    assert line.startswith('{"CreatedAt":"2026-01-01 00:00:00 +0000 UTC","Driver":"bridge","ID":"999999999999"')
    assert go_time("2026-12-07T22:31:38.123450000Z") == "2026-12-07 22:31:38.12345 +0000 UTC"
    assert go_time("2026-12-07T22:31:38+01:00") == "2026-12-07 22:31:38 +0100 +0100"
    assert '"Label"' not in line and line.endswith("}\n")


def test_extra_run_flags_reach_the_body() -> None:
    p = Parser("run", "[OPTIONS] IMAGE")
    add_create_flags(p, run=True)
    ns = p.parse(["--group-add", "10", "--group-add", "audio", "--dns-search", "example.org", "--shm-size", "128m",
                  "--ulimit", "nofile=1024:2048", "--sysctl", "net.ipv4.ip_forward=1", "--ipc", "private",
                  "--domainname", "ex.org", "--mac-address", "02:42:ac:11:00:02", "--device", "/dev/fuse",
                  "--device-read-bps", "/dev/sda:1mb", "--cpuset-cpus", "0", "--oom-score-adj", "-5",
                  "--network", "mynet", "--ip6", "fd00::5", "--pull", "never", "-q", "busybox"])
    req = build_create(ns, environ={})
    host = req.body["HostConfig"]
    assert host["GroupAdd"] == ["10", "audio"] and host["DnsSearch"] == ["example.org"]
    assert host["ShmSize"] == 128 << 20 and host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"} and host["IpcMode"] == "private"
    assert host["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}]
    assert host["BlkioDeviceReadBps"] == [{"Path": "/dev/sda", "Rate": 1 << 20}]
    assert (host["CpusetCpus"], host["OomScoreAdj"]) == ("0", -5)
    assert (req.body["Domainname"], req.body["MacAddress"]) == ("ex.org", "02:42:ac:11:00:02")
    assert req.body["NetworkingConfig"]["EndpointsConfig"]["mynet"]["IPAMConfig"] == {"IPv6Address": "fd00::5"}
    assert (req.pull, req.quiet) == ("never", True)
    plain = build_create(p.parse(["busybox"]), environ={})
    assert "GroupAdd" not in plain.body["HostConfig"] and (plain.pull, plain.quiet) == ("missing", False)


@pytest.mark.parametrize("text", ["nofile", "nofile=a", "nofile=10:5", "=1"])
def test_bad_ulimits(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_ulimit(text)


def test_devices_and_throttles() -> None:
    assert parse_device("/dev/a:/dev/b:r") == {"PathOnHost": "/dev/a", "PathInContainer": "/dev/b",
                                               "CgroupPermissions": "r"}
    assert parse_device("/dev/a:/dev/b")["CgroupPermissions"] == "rwm"
    assert parse_throttle("/dev/sda:100", False) == {"Path": "/dev/sda", "Rate": 100}
    for bad in ("/dev/sda", "sda:1", "/dev/sda:x"):
        with pytest.raises(InvalidArgument):
            parse_throttle(bad, True)


def test_run_and_create_error_words() -> None:
    daemon = "Error response from daemon: Conflict. The name is in use"
    assert runerrors.reword("create", 125, daemon).code == 1
    assert runerrors.reword("create", 125, daemon).message == daemon
    run = runerrors.reword("run", 125, daemon)
    assert (run.code, run.message) == (125, f"berth: {daemon}\n\nRun 'berth run --help' for more information")
    started = runerrors.reword("run", 127, 'Error response from daemon: exec: "x": executable file not found',
                               started=True)
    assert started.code == 127 and started.message.startswith("berth: Error response") \
        and started.message.endswith("Run 'berth run --help' for more information")
    bad = runerrors.reword("create", 125, "berth: invalid port")
    assert bad.message == "berth: invalid port\n\nRun 'berth create --help' for more information"
    assert runerrors.reword("run", 1, "the input device is not a TTY").message.startswith("berth: the input")


@pytest.mark.parametrize("lo,hi,argv,words,see", [
    (2, 2, ["a"], "'berth x' requires 2 arguments", "Run"),
    (1, 1, [], "'berth x' requires 1 argument", "Run"),
    (1, None, [], "'berth x' requires at least 1 argument", "See"),
    (0, 0, ["a"], "'berth x' accepts no arguments", "Run"),
    (0, 1, ["a", "b"], "'berth x' requires at most 1 argument", "Run"),
    (1, 2, [], "'berth x' requires at least 1 and at most 2 arguments", "Run"),
])
def test_arity_errors_read_like_docker(lo: int, hi: int | None, argv: list[str], words: str, see: str) -> None:
    p = Parser("x", "[OPTIONS] ARG", min_args=lo, max_args=hi)
    p.add_argument("args", nargs="*")
    with pytest.raises(UsageError) as info:
        p.parse(argv)
    assert info.value.code == 1 and info.value.complete
    assert str(info.value) == f"{words}\n\nUsage:  berth x [OPTIONS] ARG\n\n{see} 'berth x --help' for more information"


def test_unknown_flag_reads_like_docker() -> None:
    p = Parser("ps", "[OPTIONS]", max_args=0)
    with pytest.raises(UsageError) as info:
        p.parse(["--bogus"])
    assert info.value.code == 125
    assert str(info.value) == "unknown flag: --bogus\n\nUsage:  berth ps [OPTIONS]\n\nRun 'berth ps --help' for more information"


def test_group_usage_and_unknown_sub_verb() -> None:
    seen: list[list[str]] = []

    def sub(ctx: Ctx, argv: list[str]) -> int:
        seen.append(argv)
        return 0
    table = {"ls": (sub, "List things"), "list": (sub, "List things")}
    ctx = Ctx(host="unix:///nonexistent.sock", out=io.StringIO(), err=io.StringIO())
    assert groups.dispatch(ctx, "thing", "Manage things", table, ["ls", "-q"], {"ls"}) == 0
    assert seen == [["-q"]]
    assert groups.dispatch(ctx, "thing", "Manage things", table, [], {"ls"}) == 0
    out = ctx.out.getvalue()  # type: ignore[attr-defined]
    assert out.startswith("Usage:  berth thing COMMAND\n\nManage things\n\nCommands:\n  ls ") and "list" not in out
    with pytest.raises(StatusError) as info:
        groups.dispatch(ctx, "thing", "Manage things", table, ["bogus"])
    assert info.value.code == 1
    assert info.value.message == ("berth: unknown command: berth thing bogus\n\nUsage:  berth thing\n\n"
                                  "Run 'berth thing --help' for more information")


def test_every_verb_answers_help(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("stats", "update", "diff", "history", "container", "image"):
        assert main.run([verb, "--help"]) == 0, verb
    capsys.readouterr()
    assert main.run(["run", "--help"]) == 0
    assert "--group-add" in capsys.readouterr().out


def test_label_header_and_go_json() -> None:
    from berth.cli.gotemplate import render_rows
    from berth.cli.tables import go_json

    out = render_rows('table {{.Names}}\t{{.Label "com.example.team-name"}}', [{"Names": "n", "Label": lambda k: "v"}],
                      {"Names": "NAMES", "Label": "LABEL"})
    assert out.splitlines() == ["NAMES     team name", "n         v"]
    assert go_json([{"a": "<none> & b"}]) == '[{"a":"\\u003cnone\\u003e \\u0026 b"}]'


def test_filter_flag_error_is_a_flag_error() -> None:
    from berth.cli.parser import filter_flag

    p = Parser("ps", "[OPTIONS]", max_args=0)
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    assert p.parse(["-f", "name=a", "--filter", "label=x=y"]).filter == ["name=a", "label=x=y"]
    with pytest.raises(UsageError) as info:
        p.parse(["-f", "bogus"])
    assert info.value.code == 125
    assert str(info.value).startswith('invalid argument "bogus" for "-f, --filter" flag: bad format of filter '
                                      "(expected name=value)\n\nUsage:  berth ps [OPTIONS]")


def test_suggestions() -> None:
    assert groups.suggestions("imge", ["image", "images", "import", "exec"]) == ["image", "images"]
    assert groups.suggestions("zzz", ["image"]) == []
    assert groups.did_you_mean("inspct", ["inspect", "history"]) == "Did you mean this?\n\tinspect\n\n"
    assert groups.suggestions("x" * 100, ["x"]) == []


def test_gpus_requests_as_docker_parses_them() -> None:
    from berth.cli.runextra import parse_gpus

    assert parse_gpus("all") == {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
                                 "Options": {}}
    assert parse_gpus("2")["Count"] == 2
    got = parse_gpus('"device=0,1",capabilities=compute,driver=nvidia')
    assert (got["Count"], got["DeviceIDs"], got["Capabilities"], got["Driver"]) == \
        (0, ["0", "1"], [["compute", "gpu"]], "nvidia")
    assert parse_gpus("driver=x")["Count"] == 1  # one GPU unless told
    for bad, words in (("", "EOF"), ("bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
                       ("1,count=2", "gpu request key 'count' can be specified only once"),
                       ("count=x", 'invalid count (x): value must be either "all" or an integer')):
        with pytest.raises(InvalidArgument, match=re.escape(words)):
            parse_gpus(bad)


def test_windows_only_flags_are_refused_as_docker_refuses_them() -> None:
    import argparse

    from berth.cli.runextra import windows_only

    assert windows_only(argparse.Namespace(cpu_count=None, cpu_percent=None)) is None
    assert windows_only(argparse.Namespace(cpu_count=None, cpu_percent=5)) == (
        '"--cpu-percent" is only supported on a Docker daemon running on windows, '
        "but the Docker daemon is running on linux")
    assert main.run(["create", "--io-maxiops", "3", "busybox"]) == 1


def test_link_local_ips_go_to_the_endpoint() -> None:
    p = Parser("run", "X")
    add_create_flags(p, run=True)
    req = build_create(p.parse(["--network", "net1", "--link-local-ip", "169.254.1.1", "busybox"]), environ={})
    assert req.body["NetworkingConfig"]["EndpointsConfig"]["net1"]["IPAMConfig"] == {"LinkLocalIPs": ["169.254.1.1"]}


def test_dockerfile_is_found_from_the_current_directory(tmp_path) -> None:
    from pathlib import Path

    from berth.cli.commands_build import dockerfile_in_context

    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    assert dockerfile_in_context(ctx, None, tmp_path) == ("Dockerfile", None)
    assert dockerfile_in_context(ctx, "ctx/sub/Dockerfile.dev", tmp_path) == ("sub/Dockerfile.dev", None)
    assert dockerfile_in_context(ctx, str(ctx / "D"), Path("/")) == ("D", None)
    name, outside = dockerfile_in_context(ctx, "Dockerfile.out", tmp_path)
    assert re.fullmatch(r"\.dockerfile\.[0-9a-f]{20}", name) and outside == tmp_path / "Dockerfile.out"


def test_detach_keys_are_caught_as_typed() -> None:
    from berth.cli.streams import EscapeScanner

    s = EscapeScanner(b"\x10\x11")
    assert s.feed(b"ls\n") == (b"ls\n", False)
    assert s.feed(b"\x10") == (b"", False)  # held: it may start the sequence
    assert s.feed(b"x") == (b"\x10x", False)  # it did not: sent after all
    assert s.feed(b"a\x10") == (b"a", False)
    assert s.feed(b"\x11rest") == (b"", True)  # the sequence itself is never sent
    assert EscapeScanner(b"\x10\x11").feed(b"\x10\x10\x11") == (b"\x10", True)
    assert EscapeScanner(b"\x01").feed(b"ab\x01c") == (b"ab", True)
