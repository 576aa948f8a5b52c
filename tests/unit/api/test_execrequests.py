"""api.execrequests: the exec create and start bodies, parsed into typed values with Docker's errors."""

from __future__ import annotations

import pytest

from berth.api.execrequests import ExecStart, create_request, start_request
from berth.errors import InvalidArgument
from berth.services.execprocess import ExecConfig


@pytest.mark.parametrize("body, want", [
    ({"Cmd": ["sh"]}, ExecConfig(cmd=("sh",))),
    # what the docker CLI sends
    ({"User": "", "Privileged": False, "Tty": True, "ConsoleSize": [24, 80], "AttachStdin": True,
      "AttachStderr": True, "AttachStdout": True, "Detach": False, "DetachKeys": "", "Env": None,
      "WorkingDir": "", "Cmd": ["sh", "-c", "true"]},
     ExecConfig(cmd=("sh", "-c", "true"), tty=True, console_size=(24, 80), attach_stdin=True,
                attach_stdout=True, attach_stderr=True, detach_keys="")),
    ({"Cmd": ["id"], "User": "bob:10", "Env": ["A=1"], "WorkingDir": "/srv", "Privileged": True,
      "AttachStdout": False, "AttachStderr": None, "detachKeys": "ctrl-x"},  # docker-py's spelling
     ExecConfig(cmd=("id",), user="bob:10", env=("A=1",), working_dir="/srv", privileged=True,
                attach_stdout=False, attach_stderr=False, detach_keys="ctrl-x")),
    ({"Cmd": ["id"], "ConsoleSize": [0, 80], "User": None, "WorkingDir": None}, ExecConfig(cmd=("id",))),
])
def test_create_request(body: object, want: ExecConfig) -> None:
    assert create_request(body) == want


@pytest.mark.parametrize("body, words", [
    ([], "the request body must be a JSON object (ExecConfig)"),
    ({}, "No exec command specified"),
    ({"Cmd": []}, "No exec command specified"),
    ({"Cmd": "sh"}, "No exec command specified"),
    ({"Cmd": ["sh", 1]}, "No exec command specified"),
    ({"Cmd": ["sh"], "Env": "A=1"}, "ExecConfig.Env: expected an array of strings"),
    ({"Cmd": ["sh"], "Env": [1]}, "ExecConfig.Env: expected an array of strings"),
    ({"Cmd": ["sh"], "DetachKeys": 7}, "ExecConfig.DetachKeys: expected a string"),
    ({"Cmd": ["sh"], "DetachKeys": "ctrl-1"}, "ctrl-1"),
])
def test_create_request_refused(body: object, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        create_request(body)
    assert words in str(info.value)


def test_unsaid_attach_fields_stream_but_inspect_false() -> None:
    config = create_request({"Cmd": ["sh"]})
    assert config.streams_stdout and config.streams_stderr
    assert (config.attach_stdout, config.attach_stderr) == (None, None)
    said = create_request({"Cmd": ["sh"], "AttachStdout": False, "AttachStderr": True})
    assert not said.streams_stdout and said.streams_stderr


@pytest.mark.parametrize("body, want", [
    ({}, ExecStart()),
    ({"Detach": True}, ExecStart(detach=True)),
    ({"Tty": True, "ConsoleSize": [30, 100]}, ExecStart(raw=True, console_size=(30, 100))),
    ({"Detach": False, "Tty": False, "ConsoleSize": None}, ExecStart()),
])
def test_start_request(body: object, want: ExecStart) -> None:
    assert start_request(body) == want


def test_start_request_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument, match="the request body must be a JSON object"):
        start_request(["Detach"])
