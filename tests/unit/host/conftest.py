"""Shared fixtures of the host file-tree tests (fstree, fswalk, fsentries): a container root beside a
host directory with a canary, and a SIGALRM guard for tests where nothing may block. The guard is
not autouse: a module asks for it with ``pytestmark = pytest.mark.usefixtures("no_hang")``.
``canary`` is importable as ``from berth_host_conftest import canary``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A container root beside a host directory holding a canary."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("HOST SECRET\n")
    return root


@pytest.fixture
def no_hang(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test (TimeoutError) if it blocks for 10 seconds."""
    def boom(*_: object) -> None:
        raise TimeoutError(f"{request.module.__name__} blocked")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def canary(tree: Path) -> Path:
    """The host file a hostile tree must never reach."""
    return tree.parent / "host" / "canary"


sys.modules.setdefault("berth_host_conftest", sys.modules[__name__])
