"""Following a log the monitor rotates (berth.services.streams._reopen_if_rotated), on real files."""

from __future__ import annotations

import os
from pathlib import Path

from berth.services import streams
from berth.wire.k8slog import Parser


def _read_all(f, pos: int) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    data = os.pread(f.fileno(), 1 << 20, pos)
    return data, pos + len(data)


def test_same_file_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(b"one\n")
    f = streams._open_log(str(log))
    assert f is not None
    p = Parser()
    _, pos = _read_all(f, 0)
    assert streams._reopen_if_rotated(str(log), f, pos, p) == (f, pos, p, False)
    f.close()


def test_a_renamed_over_log_is_finished_then_the_new_one_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(b"old-1\n")
    f = streams._open_log(str(log))
    assert f is not None
    _, pos = _read_all(f, 0)
    with open(log, "ab") as w:
        w.write(b"old-2\n")  # written before the rotation, not yet read
    new = tmp_path / ".new"
    new.write_bytes(b"new-1\n")
    os.rename(new, log)
    f2, pos2, _, again = streams._reopen_if_rotated(str(log), f, pos, Parser())
    assert f2 is f and pos2 == pos and again
    rest, pos = _read_all(f, pos)
    assert rest == b"old-2\n"
    f3, pos3, _, again = streams._reopen_if_rotated(str(log), f, pos, Parser())
    assert f3 is not None and f3 is not f and pos3 == 0 and again and f.closed
    assert _read_all(f3, 0)[0] == b"new-1\n"
    f3.close()


def test_a_truncated_log_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(b"a long first line\n")
    f = streams._open_log(str(log))
    assert f is not None
    _, pos = _read_all(f, 0)
    log.write_bytes(b"x\n")
    f2, pos2, _, again = streams._reopen_if_rotated(str(log), f, pos, Parser())
    assert f2 is f and pos2 == 0 and again
    f.close()


def test_a_log_that_appears_later_and_a_symlinked_one(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    assert streams._reopen_if_rotated(str(log), None, 0, Parser())[0] is None
    (tmp_path / "secret").write_text("host file\n")
    log.symlink_to(tmp_path / "secret")
    assert streams._open_log(str(log)) is None  # never followed
    log.unlink()
    log.write_bytes(b"x\n")
    f, pos, _, again = streams._reopen_if_rotated(str(log), None, 0, Parser())
    assert f is not None and pos == 0 and again
    f.close()
