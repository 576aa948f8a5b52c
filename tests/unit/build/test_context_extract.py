"""extract_context makes every entry relative to directory descriptors: a symlink the tar puts in place of
a directory is never followed, not even when directory modes are applied at the end."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from berth.build.context import extract_context
from berth.errors import InvalidArgument


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in members:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    buf.seek(0)
    return buf


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 1_500_000
    return info


@pytest.fixture
def host(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    (d / "b").mkdir(parents=True)
    os.chmod(d / "b", 0o700)
    (d / "f").write_text("host")
    return d


def test_files_links_and_modes(tmp_path):
    root = tmp_path / "ctx"
    n = extract_context(_tar((_info("d", tarfile.DIRTYPE, 0o750), None), (_info("d/f", mode=0o600), b"abc"),
                             (_info("d/l", tarfile.SYMTYPE, link="f"), None),
                             (_info("d/h", tarfile.LNKTYPE, link="d/f"), None)), root)
    assert n == 3
    assert (root / "d" / "f").read_bytes() == b"abc" and (root / "d" / "f").stat().st_mode & 0o777 == 0o600
    assert os.readlink(root / "d" / "l") == "f" and os.path.samefile(root / "d" / "f", root / "d" / "h")
    assert (root / "d").stat().st_mode & 0o777 == 0o750 and (root / "d").stat().st_mtime == 1_500_000


def test_directory_mode_never_applied_through_a_later_symlink(tmp_path, host):
    root = tmp_path / "ctx"
    extract_context(_tar((_info("a", tarfile.DIRTYPE, 0o755), None), (_info("a/b", tarfile.DIRTYPE, 0o777), None),
                         (_info("a", tarfile.SYMTYPE, link=str(host)), None)), root)
    assert (host / "b").stat().st_mode & 0o777 == 0o700
    assert os.readlink(root / "a") == str(host)


def test_write_below_a_symlink_is_refused(tmp_path, host):
    root = tmp_path / "ctx"
    with pytest.raises(InvalidArgument, match="which is a symlink"):
        extract_context(_tar((_info("a", tarfile.SYMTYPE, link=str(host)), None), (_info("a/f"), b"x")), root)
    assert (host / "f").read_text() == "host"


def test_hard_link_through_a_symlink_is_refused(tmp_path, host):
    root = tmp_path / "ctx"
    with pytest.raises(InvalidArgument, match="not an earlier file"):
        extract_context(_tar((_info("a", tarfile.SYMTYPE, link=str(host)), None),
                             (_info("h", tarfile.LNKTYPE, link="a/f"), None)), root)
    assert (host / "f").stat().st_nlink == 1
