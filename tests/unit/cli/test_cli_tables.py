from __future__ import annotations

import pytest

from berth.cli import tables
from berth.cli.commands_system import event_line, version_lines
from berth.cli.gotemplate import render_rows
from berth.cli.units import parse_api_time

NOW = 1_700_000_000.0

CONTAINER = {
    "Id": "9121da3743f3" + "a" * 52,
    "Names": ["/t1"],
    "Image": "busybox",
    "Command": "sh -c 'echo out; echo err >&2; exit 3'",
    "Created": NOW - 5,
    "State": "exited",
    "Status": "Exited (3) 2 minutes ago",
    "Ports": [],
    "Labels": {"app": "web"},
}


def test_ps_row_truncates_like_docker() -> None:
    row = tables.ps_row(CONTAINER, NOW)
    assert row["ID"] == "9121da3743f3"
    assert row["Command"] == '"sh -c \'echo out; ec…"'
    assert row["RunningFor"] == "5 seconds ago"
    assert row["Names"] == "t1"
    assert row["Label"]("app") == "web"
    full = tables.ps_row(CONTAINER, NOW, trunc=False)
    assert full["ID"] == CONTAINER["Id"]
    assert full["Command"] == '"sh -c \'echo out; echo err >&2; exit 3\'"'


def test_ps_default_table() -> None:
    out = render_rows(tables.PS_DEFAULT, [tables.ps_row(CONTAINER, NOW)], tables.PS_HEADERS)
    assert out.splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS"
        "                     PORTS     NAMES",
        "9121da3743f3   busybox   \"sh -c 'echo out; ec…\"   5 seconds ago   Exited (3) 2 minutes ago"
        "             t1",
    ]


def test_ports_and_names() -> None:
    assert tables.format_ports([{"PrivatePort": 80, "Type": "tcp"},
                                {"IP": "0.0.0.0", "PublicPort": 8080, "PrivatePort": 80,
                                 "Type": "tcp"}]) == "80/tcp, 0.0.0.0:8080->80/tcp"
    assert tables.container_names(["/a", "/b/alias"]) == "a"
    assert tables.container_names(["/a", "/b/alias"], trunc=False) == "a,b/alias"


@pytest.mark.parametrize("state,text", [
    ({"Status": "running", "Running": True, "StartedAt": "2023-11-14T22:13:17Z"}, "Up 3 seconds"),
    ({"Status": "paused", "Running": True, "Paused": True,
      "StartedAt": "2023-11-14T22:13:17Z"}, "Up 3 seconds (Paused)"),
    ({"Status": "exited", "ExitCode": 0, "StartedAt": "2023-11-14T22:00:00Z",
      "FinishedAt": "2023-11-14T22:11:20Z"}, "Exited (0) 2 minutes ago"),
    ({"Status": "created", "StartedAt": "0001-01-01T00:00:00Z"}, "Created"),
])
def test_status_text(state: dict, text: str) -> None:
    assert tables.status_text(state, NOW, parse_api_time) == text


def test_image_rows() -> None:
    images = [
        {"Id": "sha256:" + "c" * 64, "RepoTags": ["busybox:latest", "me/bb:1"], "Created": NOW - 120,
         "Size": 1_990_000},
        {"Id": "sha256:" + "d" * 64, "RepoTags": None, "Created": NOW, "Size": 5},
        {"Id": "sha256:" + "e" * 64, "RepoTags": ["localhost:5000/x"], "Created": NOW, "Size": 5},
    ]
    rows = tables.image_rows(images, NOW)
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in rows] == [
        ("busybox", "latest", "c" * 12), ("me/bb", "1", "c" * 12),
        ("<none>", "<none>", "d" * 12), ("localhost:5000/x", "<none>", "e" * 12)]
    assert rows[0]["Size"] == "1.99MB" and rows[0]["CreatedSince"] == "2 minutes ago"
    assert tables.image_rows(images, NOW, trunc=False)[0]["ID"] == "sha256:" + "c" * 64
    out = render_rows(tables.IMAGES_DEFAULT, rows[:1], tables.IMAGES_HEADERS)
    assert out.splitlines()[0] == "REPOSITORY   TAG       IMAGE ID       CREATED         SIZE"


def test_image_rows_of_repositories_known_only_by_digest() -> None:
    """As docker's CLI: a row per such repository, tag <none>, its digest shown only with --digests (a row per
    digest then); a tagged repository's digest is on its tag's row only with --digests too; no digest and no
    tag: <none>:<none>."""
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    image = {"Id": "sha256:" + "c" * 64, "RepoTags": ["busybox:latest"], "Created": NOW, "Size": 5,
             "RepoDigests": [f"busybox@{d1}", f"127.0.0.1:5000/ev/busybox@{d1}", f"127.0.0.1:5000/ev/busybox@{d2}"]}
    rows = tables.image_rows([image], NOW)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [
        ("busybox", "latest", "<none>"), ("127.0.0.1:5000/ev/busybox", "<none>", "")]
    rows = tables.image_rows([image], NOW, show_digests=True)
    assert rows[0]["Digest"] == d1
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows][1:] == [
        ("127.0.0.1:5000/ev/busybox", "<none>", d1), ("127.0.0.1:5000/ev/busybox", "<none>", d2)]
    untagged = {**image, "RepoTags": [], "RepoDigests": [f"x@{d1}"]}
    assert [(r["Repository"], r["Tag"]) for r in tables.image_rows([untagged], NOW)] == [("x", "<none>")]


@pytest.mark.parametrize("ref,repo,tag", [
    ("busybox", "busybox", ""), ("busybox:1", "busybox", "1"),
    ("localhost:5000/x", "localhost:5000/x", ""), ("localhost:5000/x:2", "localhost:5000/x", "2"),
])
def test_split_repo_tag(ref: str, repo: str, tag: str) -> None:
    assert tables.split_repo_tag(ref) == (repo, tag)


def test_normalize_ref() -> None:
    assert tables.normalize_ref("busybox") == "busybox:latest"
    assert tables.normalize_ref("busybox:1") == "busybox:1"
    assert tables.normalize_ref("x@sha256:00") == "x@sha256:00"


def test_event_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time
    time.tzset()
    ev = {"Type": "container", "Action": "start", "Actor": {
        "ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
        "time": 1704067200, "timeNano": 1704067200000000000}
    assert event_line(ev) == ("2024-01-01T00:00:00.000000000Z container start abc "
                              "(image=busybox, name=web)")


def test_version_lines() -> None:
    client = {"Version": "0.1.0", "ApiVersion": "1.41", "DefaultAPIVersion": "1.47",
              "PythonVersion": "3.11.2", "Os": "linux", "Arch": "amd64"}
    server = {"Version": "0.1.0", "ApiVersion": "1.47", "MinAPIVersion": "1.24",
              "GoVersion": "python3.11", "Os": "linux", "Arch": "amd64",
              "Components": [{"Name": "Engine", "Version": "0.1.0"},
                             {"Name": "runc", "Version": "1.1.5", "Details": {"GitCommit": ""}}]}
    text = version_lines(client, server)
    assert " API version:       1.41 (downgraded from 1.47)\n" in text
    assert "  API version:      1.47 (minimum version 1.24)\n" in text
    assert " runc:\n  Version:          1.1.5\n" in text
