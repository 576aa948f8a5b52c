"""ADD of a local tar: every entry made relative to directory descriptors of the layer, so a symlink an
earlier entry made never carries a later entry (a hard link, a directory's mode) out of the layer."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from berth.builder.context import find_sources
from berth.builder.copyops import add_into
from berth.errors import InvalidArgument


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1_500_000
    return info


def _add(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(src / "x.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    layer = tmp_path / "layer"
    layer.mkdir()
    add_into(layer, find_sources(src, ["x.tar"]), src, "/d/", workdir="/", dest_is_dir=lambda p: True,
             owner=None, chmod=None)
    return layer


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    (d / "b").mkdir(parents=True)
    os.chmod(d / "b", 0o700)
    (d / "f").write_text("HOST SECRET")
    return d


def test_hard_link_through_a_later_symlink_is_refused(tmp_path, host):
    with pytest.raises(InvalidArgument, match="not an earlier file"):
        _add(tmp_path, (_info("a", tarfile.DIRTYPE, 0o755), None), (_info("a/f"), b"mine"),
             (_info("a", tarfile.SYMTYPE, link=str(host)), None), (_info("h", tarfile.LNKTYPE, link="a/f"), None))
    assert (host / "f").stat().st_nlink == 1


def test_directory_mode_never_applied_through_a_later_symlink(tmp_path, host):
    layer = _add(tmp_path, (_info("a", tarfile.DIRTYPE, 0o755), None), (_info("a/b", tarfile.DIRTYPE, 0o777), None),
                 (_info("a", tarfile.SYMTYPE, link=str(host)), None))
    assert (host / "b").stat().st_mode & 0o777 == 0o700
    assert os.readlink(layer / "d" / "a") == str(host)


def test_entries_modes_owners_and_links(tmp_path):
    f = _info("s/f", mode=0o4750)
    f.uid, f.gid = 7, 8
    layer = _add(tmp_path, (_info("s", tarfile.DIRTYPE, 0o751), None), (f, b"data"),
                 (_info("s/l", tarfile.SYMTYPE, link="f"), None), (_info("s/h", tarfile.LNKTYPE, link="s/f"), None),
                 (_info("s/p", tarfile.FIFOTYPE, 0o640), None))
    d = layer / "d" / "s"
    st = (d / "f").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime) == (0o4750, 7, 8, 1_500_000)
    assert os.path.samefile(d / "f", d / "h") and os.readlink(d / "l") == "f"
    assert (d / "p").is_fifo() and (d / "p").stat().st_mode & 0o777 == 0o640
    assert d.stat().st_mode & 0o7777 == 0o751
