"""vm.execruntime: the command line conmon builds for a VM exec session."""

from __future__ import annotations

import pytest

from berth.vm import execruntime


def test_parse_conmons_command_line() -> None:
    ns = execruntime.parse(["--control", "/r/s/abc.vm", "exec", "--pid-file", "/x/pid", "--process",
                            "/x/process.json", "--detach", "c" * 64])
    assert (ns.control, ns.pid_file, ns.process, ns.detach, ns.tty, ns.id) == (
        "/r/s/abc.vm", "/x/pid", "/x/process.json", True, False, "c" * 64)


def test_terminal_sessions_are_refused() -> None:
    with pytest.raises(SystemExit):
        execruntime.main(["--control", "/s", "exec", "--pid-file", "/x/pid", "--process", "/x/p.json",
                          "--detach", "--tty", "--console-socket", "/x/cs", "cid"])
