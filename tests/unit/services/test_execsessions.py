"""services.execsessions: a session's record (session.json) written and read back, older records too."""

from __future__ import annotations

import json
import os
from pathlib import Path

from berth.runtime import execmon
from berth.services import execsessions
from berth.services.execprocess import ExecConfig, ProcessSpec, ProcessUser
from berth.services.execsessions import Exec, SavedSession
from berth.services.records import Container, ContainerRecord
from berth.wire.containerspec import ContainerConfig, HostConfig

EXEC_ID = "a" * 64


def container(directory: Path) -> Container:
    return Container(ContainerRecord(id="c" * 64, name="web", created="", path="sh", args=[], image="",
                                     config=ContainerConfig(), host=HostConfig()), str(directory))


def session(directory: Path, exec_id: str = EXEC_ID) -> execmon.Session:
    return execmon.Session(str(directory / "execs" / exec_id), exec_id)


def test_prepare_save_and_read_back(tmp_path: Path) -> None:
    config = ExecConfig(cmd=("sh", "-c", "true"), env=("A=1",), user="bob", working_dir="/srv", tty=True,
                        attach_stdin=True, attach_stdout=True, detach_keys="ctrl-x", console_size=(24, 80))
    s = session(tmp_path)
    process = ProcessSpec('{"args": ["x"], "cwd": "/"}', config.cmd, config.env, "/srv", True, ProcessUser(1, 2))
    execsessions.prepare(s, process, config)
    assert json.loads(Path(s.path("process.json")).read_bytes()) == json.loads(process.to_json())
    assert execsessions.sessions(str(tmp_path)) == [SavedSession(s, config)]
    e = Exec(EXEC_ID, container(tmp_path), config, exit_code=3, pid=10, monitor_pid=9, session=s)
    execsessions.save(e)
    doc = json.loads(Path(s.path("session.json")).read_text())
    assert doc == {"ID": EXEC_ID, "Config": {
        "Cmd": ["sh", "-c", "true"], "Env": ["A=1"], "User": "bob", "WorkingDir": "/srv", "Tty": True,
        "Privileged": False, "AttachStdin": True, "AttachStdout": True, "DetachKeys": "ctrl-x",
        "ConsoleSize": [24, 80]}, "Pid": 10, "MonitorPid": 9, "ExitCode": 3}
    assert execsessions.sessions(str(tmp_path)) == [SavedSession(s, config, 10, 9, 3)]


def test_a_record_an_older_daemon_wrote(tmp_path: Path) -> None:
    """Before, Config was the create request as it came (docker-py's spelling and all)."""
    s = session(tmp_path)
    os.makedirs(s.directory)
    Path(s.path("session.json")).write_text(json.dumps({"ID": EXEC_ID, "Config": {
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False, "Cmd": ["sleep", "9"],
        "Privileged": False, "User": "", "Env": None, "WorkingDir": None, "detachKeys": "ctrl-p,ctrl-q",
        "Detach": False}, "Pid": 4, "MonitorPid": 3, "ExitCode": None}))
    (saved,) = execsessions.sessions(str(tmp_path))
    assert saved == SavedSession(s, ExecConfig(cmd=("sleep", "9"), attach_stdout=True, attach_stderr=True,
                                               detach_keys="ctrl-p,ctrl-q"), 4, 3, None)


def test_records_without_a_command_or_a_session_name_are_passed_over(tmp_path: Path) -> None:
    for exec_id, doc in (("b" * 64, {"ID": "b", "Config": {"Cmd": []}}), ("c" * 64, {"ID": "c"}),
                         ("not-hex", {"ID": "x", "Config": {"Cmd": ["sh"]}})):
        s = session(tmp_path, exec_id)
        os.makedirs(s.directory)
        Path(s.path("session.json")).write_text(json.dumps(doc))
    assert execsessions.sessions(str(tmp_path)) == []
    assert execsessions.sessions(str(tmp_path / "nothing")) == []
