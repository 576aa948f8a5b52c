"""services.execprocess: the process.json of an exec (the container's process with the exec's fields)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from berth.services.execprocess import ExecConfig, ProcessSpec, ProcessUser, process_for
from berth.services.records import Container, ContainerRecord
from berth.wire.containerspec import ContainerConfig, HostConfig

CONTAINER = {"terminal": False, "consoleSize": {"height": 1, "width": 1}, "user": {"uid": 0, "gid": 0},
             "args": ["httpd"], "env": ["PATH=/bin"], "cwd": "/", "capabilities": None, "rlimits": []}


@pytest.mark.parametrize("spec, want", [
    # the container's fields replaced where they stand; its consoleSize dropped without a terminal
    (ProcessSpec(json.dumps(CONTAINER), ("ls",), ("A=1",), "/srv", False, ProcessUser(1, 2, (3,))),
     '{"terminal": false, "user": {"uid": 1, "gid": 2, "additionalGids": [3]}, "args": ["ls"], "env": ["A=1"], '
     '"cwd": "/srv", "capabilities": null, "rlimits": []}'),
    # a console size comes last; privileged: capabilities an object, in place
    (ProcessSpec(json.dumps(CONTAINER), ("sh",), (), "/", True, ProcessUser(0, 0), (24, 80), privileged=True),
     '{"terminal": true, "user": {"uid": 0, "gid": 0, "additionalGids": []}, "args": ["sh"], "env": [], '
     '"cwd": "/", "capabilities": {}, "rlimits": [], "consoleSize": {"height": 24, "width": 80}}'),
    # fields the container's process lacks are added, in runc's order of update
    (ProcessSpec('{"noNewPrivileges": true}', ("id",), (), "/", False, ProcessUser(0, 0), privileged=True),
     '{"noNewPrivileges": true, "args": ["id"], "env": [], "terminal": false, "cwd": "/", '
     '"user": {"uid": 0, "gid": 0, "additionalGids": []}, "capabilities": {}}'),
])
def test_process_json(spec: ProcessSpec, want: str) -> None:
    assert spec.to_json() == want.encode()


def test_process_for_an_exec(tmp_path: Path) -> None:
    os.makedirs(tmp_path / "rootfs" / "etc")
    (tmp_path / "rootfs" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n")
    (tmp_path / "rootfs" / "etc" / "group").write_text("root:x:0:\nbob:x:1000:\n")
    (tmp_path / "config.json").write_text(json.dumps({"process": {**CONTAINER, "env": ["PATH=/bin", "A=0"]}}))
    c = Container(ContainerRecord(id="c" * 64, name="web", created="", path="", args=[], image="",
                                  config=ContainerConfig(user="bob"), host=HostConfig()), str(tmp_path))
    spec = process_for(c, ExecConfig(cmd=("sh",), env=("A=1",), console_size=(24, 80)), True)
    assert (spec.args, spec.env, spec.cwd, spec.terminal) == (("sh",), ("PATH=/bin", "A=1", "TERM=xterm"), "/", True)
    assert (spec.user, spec.console_size) == (ProcessUser(1000, 1000, (1000,)), (24, 80))
    probe = process_for(c, ExecConfig(cmd=("true",), user="root", working_dir="/tmp", console_size=(24, 80)), False)
    assert (probe.user.uid, probe.cwd, probe.console_size, probe.env) == (0, "/tmp", None, ("PATH=/bin", "A=0"))
