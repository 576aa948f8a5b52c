"""berth.services.copy.extract on real trees: every entry made relative to a directory descriptor, so a
symlink (planted by the tar or swapped in by a running container) never carries a write out of the root."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from berth.errors import BerthError
from berth.services import containerview, copy


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size, info.mode, info.mtime = len(e[1]), 0o640, 1_000_000
                tar.addfile(info, io.BytesIO(e[1]))
    buf.seek(0)
    return buf


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    (d / "canary").write_text("host")
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "d").mkdir(parents=True)
    return r


def test_files_modes_times_and_links(root):
    extra = tarfile.TarInfo("sub")
    extra.type, extra.mode, extra.mtime = tarfile.DIRTYPE, 0o711, 2_000_000
    hard = tarfile.TarInfo("sub/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "sub/f"
    fifo = tarfile.TarInfo("sub/fifo")
    fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o600
    copy.extract(containerview.View(str(root)), "/d", _tar([extra, ("sub/f", b"data"), hard, _link("sub/l", "f"), fifo]))
    d = root / "d" / "sub"
    assert (d / "f").read_bytes() == b"data"
    assert (d / "f").stat().st_mode & 0o7777 == 0o640 and (d / "f").stat().st_mtime == 1_000_000
    assert os.path.samefile(d / "f", d / "hard")
    assert os.readlink(d / "l") == "f"
    assert (d / "fifo").is_fifo() and (d / "fifo").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o7777 == 0o711 and d.stat().st_mtime == 2_000_000


def test_symlink_member_then_a_file_below_it_stays_inside(root, host):
    copy.extract(containerview.View(str(root)), "/d", _tar([_link("esc", str(host)), ("esc/planted", b"x"),
                                                   _link("rel", "../../../../../../" + str(host)),
                                                   ("rel/planted2", b"y")]))
    assert sorted(os.listdir(host)) == ["canary"]
    assert (root / str(host).lstrip("/") / "planted").read_bytes() == b"x"
    assert (root / str(host).lstrip("/") / "planted2").read_bytes() == b"y"


def test_a_file_over_a_planted_symlink_replaces_the_link(root, host):
    os.symlink(host / "canary", root / "d" / "f")
    copy.extract(containerview.View(str(root)), "/d", _tar([("f", b"new")]))
    assert (host / "canary").read_text() == "host"
    assert not (root / "d" / "f").is_symlink() and (root / "d" / "f").read_bytes() == b"new"


def test_dotdot_leaving_the_destination_is_refused(root):
    with pytest.raises(BerthError, match="leaves the destination"):
        copy.extract(containerview.View(str(root)), "/d", _tar([("../x", b"x")]))


@pytest.mark.parametrize("kind", ["abs", "root"])
def test_directory_swapped_for_a_symlink_while_extracting(root, host, kind):
    entries: list[tarfile.TarInfo | tuple[str, bytes]] = []
    for i in range(4):
        for j in range(15):
            entries.append((f"t{i}/f{j}", b"payload"))
    payload = _tar(entries).getvalue()
    target = str(host) if kind == "abs" else "/"
    stop = threading.Event()

    def swap() -> None:  # what a running container does to its own /d
        d, parked = root / "d", root / "d.x"
        while not stop.is_set():
            try:
                os.rename(d, parked)
                os.symlink(target, d)
                os.unlink(d)
                os.rename(parked, d)
            except OSError:  # berth made a /d of its own meanwhile: put things back in order
                if not parked.exists():
                    continue
                if d.is_symlink() or d.is_file():
                    os.unlink(d)
                elif d.is_dir():
                    os.rename(d, root / f"made-{os.urandom(4).hex()}")
                os.rename(parked, d)

    t = threading.Thread(target=swap)
    t.start()
    try:
        for _ in range(30):
            try:
                copy.extract(containerview.View(str(root)), "/d", io.BytesIO(payload))
            except (BerthError, OSError):
                pass  # the container made its own copy fail
    finally:
        stop.set()
        t.join()
    assert sorted(os.listdir(host)) == ["canary"]
    assert (host / "canary").read_text() == "host"


def test_archive_while_a_directory_is_swapped_for_a_symlink(root, host):
    """docker cp out of the swapping tree: never a host file, never an error from an entry that changed type."""
    (root / "d" / "sub").mkdir()
    (root / "d" / "sub" / "f").write_text("mine")
    stop = threading.Event()

    def swap() -> None:
        d, parked = root / "d", root / "d.x"
        while not stop.is_set():
            os.rename(d, parked)
            os.symlink(host, d)
            os.unlink(d)
            os.rename(parked, d)

    t = threading.Thread(target=swap)
    t.start()
    try:
        for _ in range(300):
            _info, chunks = copy.archive(containerview.View(str(root)), "/")
            data = b"".join(chunks)
            assert b"host" not in data.replace(str(host).encode(), b"")  # a link's target text is fine
    finally:
        stop.set()
        t.join()
