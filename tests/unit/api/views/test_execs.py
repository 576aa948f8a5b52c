"""api.views.execs: Docker's ExecInspect from an exec and its typed config."""

from __future__ import annotations

from berth.api.views import execs as views
from berth.services.execprocess import ExecConfig
from berth.services.execsessions import Exec
from berth.services.records import Container, ContainerRecord
from berth.wire.containerspec import ContainerConfig, HostConfig


def container() -> Container:
    return Container(ContainerRecord(id="c" * 64, name="web", created="", path="sh", args=[], image="",
                                     config=ContainerConfig(), host=HostConfig()), "/nonexistent")


def test_a_finished_exec() -> None:
    config = ExecConfig(cmd=("sh", "-c", "exit 3"), user="bob", tty=True, attach_stdin=True, attach_stdout=True,
                        detach_keys="ctrl-x", privileged=True)
    e = Exec("e" * 64, container(), config, exit_code=3, pid=42)
    assert views.inspect(e) == {
        "ID": "e" * 64, "Running": False, "ExitCode": 3, "ContainerID": "c" * 64,
        "OpenStdin": True, "OpenStdout": True, "OpenStderr": False, "CanRemove": False,
        "DetachKeys": "ctrl-x", "Pid": 42,
        "ProcessConfig": {"tty": True, "entrypoint": "sh", "arguments": ["-c", "exit 3"], "privileged": True,
                          "user": "bob"},
    }


def test_a_created_exec_without_attach_fields() -> None:
    doc = views.inspect(Exec("e" * 64, container(), ExecConfig(cmd=("true",))))
    assert (doc["Running"], doc["ExitCode"], doc["Pid"]) == (False, None, 0)
    assert (doc["OpenStdin"], doc["OpenStdout"], doc["OpenStderr"], doc["DetachKeys"]) == (False, False, False, "")
    assert doc["ProcessConfig"] == {"tty": False, "entrypoint": "true", "arguments": [], "privileged": False,
                                    "user": ""}
