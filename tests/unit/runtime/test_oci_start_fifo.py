"""runc's start done in-process: the init's byte read from its exec fifo (runtime.oci.start_by_fifo).

A child process plays runc's init: it opens the fifo for writing (waiting for a reader),
writes its byte and ends, or dies first.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from berth.runtime.base import StartFailed
from berth.runtime.oci import start_by_fifo


def _init(fifo: str, code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import os, sys, time\np = {fifo!r}\n{code}"])


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "exec.fifo")
    os.mkfifo(path, 0o600)
    return path


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_the_inits_byte_starts_it_and_the_fifo_goes(fifo, delay):
    child = _init(fifo, f"time.sleep({delay})\nfd = os.open(p, os.O_WRONLY)\nos.write(fd, b'0')\ntime.sleep(0.1)")
    try:
        assert asyncio.run(start_by_fifo(fifo, child.pid, 10)) is True
        assert not os.path.exists(fifo)  # runc's state now says "running"
        assert child.wait(5) == 0
    finally:
        child.kill()
        child.wait()


def test_an_init_that_dies_before_writing_fails_the_start(fifo):
    child = _init(fifo, "time.sleep(0.2)\nsys.exit(1)")
    try:
        with pytest.raises(StartFailed, match="already dead"):
            asyncio.run(start_by_fifo(fifo, child.pid, 10))
        assert os.path.exists(fifo)  # left for the runtime's delete
    finally:
        child.kill()
        child.wait()


def test_an_init_that_wrote_and_ended_before_the_start_is_started(fifo):
    # its byte is in the fifo (this reader held it open), the init is gone: started, and already over
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    child = _init(fifo, "fd = os.open(p, os.O_WRONLY)\nos.write(fd, b'0')")
    try:
        assert child.wait(5) == 0

        async def start() -> bool:
            return await start_by_fifo(fifo, child.pid, 10)
        assert asyncio.run(start()) is True
    finally:
        os.close(holder)


def test_an_init_that_never_comes_times_out(fifo):
    child = _init(fifo, "time.sleep(30)")
    try:
        with pytest.raises(StartFailed, match="did not start within"):
            asyncio.run(start_by_fifo(fifo, child.pid, 0.2))
    finally:
        child.kill()
        child.wait()


def test_no_fifo_or_not_a_fifo_leaves_the_start_to_the_runtime(tmp_path):
    assert asyncio.run(start_by_fifo(str(tmp_path / "missing"), os.getpid(), 1)) is False
    regular = tmp_path / "exec.fifo"
    regular.write_bytes(b"0")
    assert asyncio.run(start_by_fifo(str(regular), os.getpid(), 1)) is False
    os.symlink(str(regular), tmp_path / "link")
    assert asyncio.run(start_by_fifo(str(tmp_path / "link"), os.getpid(), 1)) is False
