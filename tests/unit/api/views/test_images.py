"""api.views.images: Docker's JSON for image listings, inspect, history, rmi/prune results and
GET /distribution/{name}/json, from the services' typed values."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth.api.views import images as views
from berth.oci.image import parse_config
from berth.oci.imageconfig import HistoryEntry
from berth.oci.platform import Platform
from berth.services.distribution import RegistryImage
from berth.services.imagerecords import ImageRecord
from berth.services.imageremoval import PruneResult, Removal
from berth.services.imageviews import ImageDetails, ImageHistory, ImageSummary

RECORD = ImageRecord("sha256:m", ("sha256:l1", "sha256:l2"), ("sha256:d1", "sha256:d2"), 1234,
                     "2024-01-01T00:00:00Z", tagged="2024-01-02T00:00:00Z")
CONFIG_DOC: dict[str, Any] = {
    "architecture": "arm64", "os": "linux", "variant": "v8", "created": "2023-12-31T00:00:00Z", "author": "me",
    "config": {"User": "app", "Env": ["A=1"], "Cmd": ["run"], "WorkingDir": "/w", "Labels": {"k": "v"},
               "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "Shell": ["/bin/bash", "-c"],
               "Healthcheck": {"Test": ["CMD", "true"]}},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:d1", "sha256:d2"]},
    "history": [{"created": "2023-12-30T00:00:00Z", "created_by": "FROM"},
                {"created": "2023-12-31T00:00:00Z", "created_by": "RUN make", "comment": "built"}],
}
CONFIG = parse_config(json.dumps(CONFIG_DOC).encode())


def test_summary() -> None:
    item = ImageSummary("sha256:i", "sha256:p", ("a:1",), ("a@sha256:m",), 1_700_000_000, 10, {"k": "v"}, 2)
    assert views.summary(item) == {
        "Id": "sha256:i", "ParentId": "sha256:p", "RepoTags": ["a:1"], "RepoDigests": ["a@sha256:m"],
        "Created": 1_700_000_000, "Size": 10, "SharedSize": -1, "VirtualSize": 10, "Labels": {"k": "v"},
        "Containers": 2}
    assert views.listing([item, item]) == [views.summary(item)] * 2


def test_inspect() -> None:
    doc = views.inspect(ImageDetails("sha256:i", RECORD, CONFIG, ("a:1",), ("a@sha256:m",), "sha256:p",
                                     ("/l/2", "/l/1")))
    config = doc["Config"]
    assert config == {
        "Hostname": "", "Domainname": "", "User": "app", "AttachStdin": False, "AttachStdout": False,
        "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": ["A=1"],
        "Cmd": ["run"], "Image": "", "Volumes": {"/data": {}}, "WorkingDir": "/w", "Entrypoint": None,
        "OnBuild": None, "Labels": {"k": "v"}, "ExposedPorts": {"80/tcp": {}}, "StopSignal": None,
        "Healthcheck": {"Test": ["CMD", "true"]}, "Shell": ["/bin/bash", "-c"]}
    assert {k: v for k, v in doc.items() if k != "Config"} == {
        "Id": "sha256:i", "RepoTags": ["a:1"], "RepoDigests": ["a@sha256:m"], "Parent": "sha256:p",
        "Comment": "built", "Created": "2023-12-31T00:00:00Z", "DockerVersion": "", "Author": "me",
        "Architecture": "arm64", "Os": "linux", "Variant": "v8", "Size": 1234, "VirtualSize": 1234,
        "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": "/l/2:/l/1"}},
        "RootFS": {"Type": "layers", "Layers": ["sha256:d1", "sha256:d2"]},
        "Metadata": {"LastTagTime": "2024-01-02T00:00:00Z"},
        "Container": "", "ContainerConfig": {k: "" if isinstance(v, str) else False if isinstance(v, bool) else None
                                             for k, v in config.items()}}
    assert list(doc)[-2:] == ["Container", "ContainerConfig"]


def test_inspect_of_a_bare_config() -> None:
    bare = parse_config(b'{"rootfs": {"type": "layers", "diff_ids": []}}')
    doc = views.inspect(ImageDetails("sha256:i", ImageRecord("sha256:m", (), (), 0, "2024-01-01T00:00:00Z"), bare,
                                     (), (), "", ()))
    assert (doc["Created"], doc["Comment"], doc["Author"], doc["Architecture"], doc["Os"], doc["Variant"]) == \
        ("2024-01-01T00:00:00Z", "", "", "amd64", "linux", None)
    assert doc["Config"]["Env"] is None and doc["Config"]["Labels"] is None and "Shell" not in doc["Config"]
    assert doc["Metadata"] == {"LastTagTime": "0001-01-01T00:00:00Z"}


def test_history_is_newest_first() -> None:
    entries = (HistoryEntry("1970-01-01T00:00:10Z", "FROM"), HistoryEntry("not a time", "RUN x", "why"))
    assert views.history(ImageHistory("sha256:i", ("a:1",), 99, entries)) == [
        {"Id": "sha256:i", "Created": 0, "CreatedBy": "RUN x", "Tags": ["a:1"], "Size": 0, "Comment": "why"},
        {"Id": "<missing>", "Created": 10, "CreatedBy": "FROM", "Tags": None, "Size": 99, "Comment": ""},
    ]


@pytest.mark.parametrize("result, want", [
    (PruneResult((), 0), {"ImagesDeleted": None, "SpaceReclaimed": 0}),
    (PruneResult((Removal(untagged="a:1"), Removal(deleted="sha256:i")), 7),
     {"ImagesDeleted": [{"Untagged": "a:1"}, {"Deleted": "sha256:i"}], "SpaceReclaimed": 7}),
])
def test_prune(result: PruneResult, want: dict[str, Any]) -> None:
    assert views.prune(result) == want


def test_registry_image() -> None:
    found = RegistryImage("application/vnd.oci.image.index.v1+json", "sha256:x", 300,
                          (Platform("linux", "amd64"), Platform("linux", "arm", "v7")))
    assert views.registry_image(found) == {
        "Descriptor": {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:x", "size": 300},
        "Platforms": [{"architecture": "amd64", "os": "linux"},
                      {"architecture": "arm", "os": "linux", "variant": "v7"}]}
