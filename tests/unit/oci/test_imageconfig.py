"""oci.imageconfig: an image config's runtime defaults and history, typed, and back to the same JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from berth.oci.imageconfig import HistoryEntry, RuntimeConfig

DOCKER_STYLE = {  # what Docker writes: every key, nulls included, in Go's field order
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "Tty": False,
    "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["sh"], "Image": "sha256:abc", "Volumes": None, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "Labels": {"a": "1"}, "ArgsEscaped": True,
}

ROUND_TRIPS = [
    {},
    DOCKER_STYLE,
    {"Cmd": None, "Entrypoint": ["/bin/sh", "-c", "run"]},                 # a shell-form ENTRYPOINT's null Cmd
    {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGQUIT"},
    {"Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000}, "Shell": ["/bin/bash", "-c"]},
    {"Env": [], "Labels": {}, "OnBuild": ["RUN make"], "Unknown": {"nested": [1, 2]}},
]


@pytest.mark.parametrize("doc", ROUND_TRIPS)
def test_the_same_json_comes_back(doc: dict[str, Any]) -> None:
    back = RuntimeConfig.from_doc(doc).to_doc()
    assert json.dumps(back) == json.dumps(doc)  # the same keys, values and order


def test_fields_are_typed() -> None:
    cfg = RuntimeConfig.from_doc({**DOCKER_STYLE, "ExposedPorts": {"80/tcp": {}}, "Shell": ["/bin/bash", "-c"]})
    assert cfg.env == ("PATH=/usr/bin:/bin",) and cfg.cmd == ("sh",) and cfg.entrypoint is None
    assert cfg.labels == {"a": "1"} and cfg.exposed_ports == ("80/tcp",) and cfg.volumes is None
    assert cfg.shell == ("/bin/bash", "-c") and cfg.user == "" and cfg.working_dir == ""
    assert cfg.extra["Image"] == "sha256:abc" and cfg.extra["ArgsEscaped"] is True


@pytest.mark.parametrize("value", [None, "not an object", ["a list"]])
def test_no_object_is_an_empty_config(value: Any) -> None:
    assert RuntimeConfig.from_doc(value) == RuntimeConfig()
    assert RuntimeConfig.from_doc(value).to_doc() == {}


def test_a_field_set_later_is_written_after_the_others() -> None:
    cfg = RuntimeConfig.from_doc({"Cmd": ["sh"], "Env": None})
    changed = dataclasses.replace(cfg, labels={"x": "y"}, env=("A=1",), user="")
    assert list(changed.to_doc().items()) == [("Cmd", ["sh"]), ("Env", ["A=1"]), ("Labels", {"x": "y"})]


def test_to_doc_gives_fresh_values() -> None:
    cfg = RuntimeConfig.from_doc({"Labels": {"a": "1"}, "Healthcheck": {"Test": ["NONE"]}, "X": {"y": 1}})
    doc = cfg.to_doc()
    doc["Labels"]["b"] = "2"
    doc["Healthcheck"]["Test"].append("more")
    doc["X"]["y"] = 2
    assert cfg.to_doc() == {"Labels": {"a": "1"}, "Healthcheck": {"Test": ["NONE"]}, "X": {"y": 1}}


@pytest.mark.parametrize("entry, doc", [
    (HistoryEntry("t1", "FROM scratch"), {"created": "t1", "created_by": "FROM scratch"}),
    (HistoryEntry("t2", "ENV A=1", empty_layer=True), {"created": "t2", "created_by": "ENV A=1", "empty_layer": True}),
    (HistoryEntry("t3", "sh", "a comment", "me"),
     {"created": "t3", "created_by": "sh", "comment": "a comment", "author": "me"}),
])
def test_history_entries(entry: HistoryEntry, doc: dict[str, Any]) -> None:
    assert entry.to_doc() == doc
    assert HistoryEntry.from_doc(doc) == entry
