"""`system df -v` rows and layout (pure)."""

from __future__ import annotations

import json

from berth.cli.diskusage import verbose

NOW = 1_800_000_000.0
DOC = {
    "Images": [{"Id": "sha256:" + "ab" * 32, "RepoTags": ["busybox:latest", "x/y:1"], "Created": NOW - 90,
                "Size": 1_982_000, "SharedSize": 0, "Containers": 1},
               {"Id": "sha256:" + "cd" * 32, "RepoTags": [], "RepoDigests": ["r@sha256:" + "ee" * 32],
                "Created": NOW - 90, "Size": 10, "SharedSize": -1, "Containers": 0}],
    "Containers": [{"Id": "12" * 32, "Image": "busybox", "Command": "sleep 100", "Created": NOW - 5,
                    "State": "running", "Status": "Up 5 seconds", "Names": ["/dfd"], "SizeRw": 0,
                    "SizeRootFs": 1_982_000, "Mounts": [{"Name": "v1", "Driver": "local"}]}],
    "Volumes": [{"Name": "v1", "Driver": "local", "Mountpoint": "/m", "Scope": "local", "Labels": None,
                 "UsageData": {"Size": 3, "RefCount": 1}}],
    "BuildCache": [],
}


def test_tables_in_dockers_sections() -> None:
    out = verbose(DOC, "", NOW)
    assert out.startswith("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID       CREATED")
    lines = out.splitlines()
    assert lines[3].split() == ["busybox", "latest", "abababababab", "About", "a", "minute", "ago", "1.98MB", "0B",
                                "1.982MB", "1"]
    assert lines[4].split()[:3] == ["<none>", "<none>", "cdcdcdcdcdcd"]  # a digest-only image: no name here
    assert "\nContainers space usage:\n\n" in out and "\nLocal Volumes space usage:\n\n" in out
    container = next(line for line in lines if line.startswith("121212121212"))
    assert "0B " in container and "virtual" not in container and "dfd" in container
    assert "v1            1         3B" in out
    assert out.endswith("\nBuild cache usage: 0B\n\nCACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE"
                        "     SHARED\n")


def test_json_is_one_object_without_a_newline() -> None:
    out = verbose(DOC, "json", NOW)
    assert not out.endswith("\n") and list(json.loads(out)) == ["Images", "Containers", "Volumes", "BuildCache"]
    image = json.loads(out)["Images"][0]
    assert (image["ID"], image["Digest"], image["Tag"]) == ("sha256:" + "ab" * 32, "", "latest")
    assert json.loads(out)["Volumes"][0]["Availability"] == "N/A"


def test_any_other_template_runs_over_the_whole() -> None:
    assert verbose(DOC, "{{range .Volumes}}{{.Name}}={{.Size}} {{end}}", NOW) == "v1=3B "
