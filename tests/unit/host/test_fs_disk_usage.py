"""disk_usage walks a live tree by descriptor: a directory swapped for a symlink is never followed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from berth.host.fs import disk_usage

HOST_BYTES = 7_000_003  # a sparse host file: counting it would show at once


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    top = tmp_path / "upper"
    (top / "d" / "sub").mkdir(parents=True)
    (top / "d" / "sub" / "f").write_bytes(b"x" * 10)
    (top / "g").write_bytes(b"y" * 5)
    host = tmp_path / "host"
    host.mkdir()
    with open(host / "big", "wb") as f:
        f.truncate(HOST_BYTES)
    return top, host


def test_counts_files_not_directories(tmp_path):
    top, _ = _tree(tmp_path)
    assert disk_usage(str(top)) == 15
    assert disk_usage(str(tmp_path / "gone")) == 0


def test_a_symlink_to_a_host_directory_is_not_followed(tmp_path):
    top, host = _tree(tmp_path)
    os.symlink(host, top / "link")
    assert disk_usage(str(top)) == 15 + len(str(host))


def test_directory_swapped_for_a_symlink_while_counting(tmp_path):
    top, host = _tree(tmp_path)
    stop = threading.Event()

    def swap() -> None:  # what a container does to its upper directory
        d, parked, link = top / "d", top / "d.x", top / "d"
        while not stop.is_set():
            os.rename(d, parked)
            os.symlink(host, link)
            os.unlink(link)
            os.rename(parked, d)

    t = threading.Thread(target=swap)
    t.start()
    try:
        seen = {disk_usage(str(top)) for _ in range(400)}
    finally:
        stop.set()
        t.join()
    assert all(n < HOST_BYTES for n in seen), seen
    link = len(str(host))  # the symlink itself, by its own size
    assert seen <= {5, 15, 5 + link, 15 + link}, seen
