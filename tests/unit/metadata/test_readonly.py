"""berth.metadata.readonly: a data root's records read without writing a byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition
from berth.metadata import readonly
from berth.metadata.db import Database


def test_reads_what_the_daemon_wrote_and_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "berth.db")
    db = Database(path)
    db.put_network({"Id": "n1", "Name": "a", "Driver": "bridge"})
    db.insert_container("c1", "box", {"Id": "c1"})
    db.close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert readonly.documents(path, "networks") == [("n1", {"Id": "n1", "Name": "a", "Driver": "bridge"})]
    assert [k for k, _ in readonly.documents(path, "containers")] == ["c1"]
    assert readonly.documents(path, "volumes") == []
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_reads_a_database_a_killed_daemon_left_open(tmp_path: Path) -> None:
    path = str(tmp_path / "berth.db")
    db = Database(path)  # left open: the WAL and its shared memory exist, as after a SIGKILL
    db.put_network({"Id": "n1"})
    assert [k for k, _ in readonly.documents(path, "networks")] == ["n1"]
    db.close()


def test_missing_database_and_unknown_table(tmp_path: Path) -> None:
    assert readonly.documents(str(tmp_path / "none.db"), "networks") == []
    with pytest.raises(ValueError):
        readonly.documents(str(tmp_path / "none.db"), "images; DROP TABLE x")


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "berth.db"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(FailedPrecondition, match="cannot read"):
        readonly.documents(str(bad), "networks")
