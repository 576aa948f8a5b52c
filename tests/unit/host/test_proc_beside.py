"""host.proc.run_beside: a command run to its end from a worker thread, its exit code returned."""

from __future__ import annotations

import asyncio

import pytest

from berth.errors import FailedPrecondition
from berth.host import proc


def test_output_and_exit_code_come_back_unchecked():
    res = asyncio.run(proc.run_beside(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (res.returncode, res.stdout, res.stderr) == (3, b"out\n", b"err\n")


def test_a_command_past_its_timeout_is_killed():
    res = asyncio.run(proc.run_beside(["sleep", "30"], timeout=0.2))
    assert res.returncode == -1 and b"timed out" in res.stderr


def test_a_missing_program_is_a_failed_precondition():
    with pytest.raises(FailedPrecondition, match="not installed"):
        asyncio.run(proc.run_beside(["/nonexistent/berth-no-such-tool"]))
