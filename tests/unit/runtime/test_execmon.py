"""runtime.execmon: conmon's command line and messages for an exec session (pure parts)."""

from __future__ import annotations

import pytest

from berth.runtime import execmon

RT = execmon.RuntimeCommand("/usr/sbin/runc", ("--root", "/r/runtime/runc"), "/r/s")
SESSION = execmon.Session("/r/containers/c1/execs/" + "ab" * 32, "ab" * 32)


def test_conmon_argv_attached_tty() -> None:
    argv = execmon.conmon_argv(RT, "c" * 64, SESSION, tty=True, stdin=True, attach=True)
    assert argv[0] == execmon.CONMON
    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]
    pairs = {flag: value(flag) for flag in ("-c", "-u", "-b", "-p", "-0", "--exec-process-spec")}
    assert pairs["-c"] == "c" * 64 and pairs["-u"] == "ab" * 8 and pairs["-b"] == SESSION.directory
    assert pairs["-p"] == SESSION.directory + "/pid" and pairs["-0"] == SESSION.directory
    assert pairs["--exec-process-spec"] == SESSION.directory + "/process.json"
    assert "-e" in argv and "-t" in argv and "-i" in argv and "--exec-attach" in argv
    i = argv.index("--runtime-arg")
    assert argv[i:i + 4] == ["--runtime-arg", "--root", "--runtime-arg", "/r/runtime/runc"]
    assert argv[argv.index("-l") + 1] == "none:"  # the stream goes through the attach socket only


def test_conmon_argv_detached() -> None:
    argv = execmon.conmon_argv(RT, "c" * 64, SESSION, tty=False, stdin=False, attach=False)
    assert not {"-t", "-i", "--exec-attach"} & set(argv)


def test_attach_socket_is_the_short_link() -> None:
    assert execmon.attach_socket("/r/s", SESSION) == "/r/s/" + "ab" * 8 + "/attach"


@pytest.mark.parametrize("line, parsed", [
    (b'{"data": 4242}', (4242, "")),
    (b'{"data": -1, "message": "boom"}', (-1, "boom")),
    (b'{"pid": 7}', (7, "")),
    (b"not json", (-1, "not json")),
    (b'["data"]', (-1, '["data"]')),
])
def test_parse_message(line, parsed) -> None:
    assert execmon.parse_message(line) == parsed


def test_runtime_message() -> None:
    text = ('time="2026-12-07T06:00:00Z" level=error msg="exec failed: unable to start container process: '
            'exec: \\"nosuch\\": executable file not found in $PATH"\n')
    assert execmon.runtime_message(text) == ('OCI runtime exec failed: exec failed: unable to start container '
                                             'process: exec: "nosuch": executable file not found in $PATH: unknown')
    assert execmon.runtime_message("") == "OCI runtime exec failed: the runtime did not start the process: unknown"


def test_start_failure_is_a_126() -> None:
    exc = execmon.ExecStartFailed("OCI runtime exec failed: x: unknown")
    assert str(exc) == "OCI runtime exec failed: x: unknown" and exc.returncode == 126
