"""extract_context makes every entry relative to directory descriptors: a symlink the tar puts in place of
a directory is never followed, not even when directory modes are applied at the end."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from berth_builder_conftest import _info, _tar

from berth.builder.contexttar import extract_context
from berth.errors import InvalidArgument


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


def _unterminated(*files: tuple[str, bytes]) -> bytes:
    """A tar the way the docker CLI sends `build -f` with a Dockerfile outside the context: the stream ends
    right after the last member's content (no padding to the block, no end-of-archive blocks)."""
    buf = _tar(*((_info(name), body) for name, body in files)).getvalue()
    *_, (name, body) = files
    end = buf.rindex(body) + len(body)
    return buf[:end]


def test_a_tar_ending_right_after_the_last_content_is_whole(tmp_path):
    # What docker CLI 28's `build -f ../Dockerfile.x ctx` sends (the appended .dockerignore is last).
    data = _unterminated(("a.txt", b"hello\n"), (".dockerfile.1e35be28", b"FROM busybox\n"),
                         (".dockerignore", b".dockerignore\n.dockerfile.1e35be28\n"))
    assert len(data) % 512 != 0
    root = tmp_path / "ctx"
    assert extract_context(io.BytesIO(data), root) == 6 + 13 + 35
    assert (root / ".dockerignore").read_bytes() == b".dockerignore\n.dockerfile.1e35be28\n"
    assert (root / ".dockerfile.1e35be28").read_bytes() == b"FROM busybox\n"


@pytest.mark.parametrize("cut", [1, 100, 511, 512 + 5])
def test_a_tar_cut_inside_a_content_is_refused(tmp_path, cut):
    full = _unterminated(("a.txt", b"x" * 2000), ("b.txt", b"y" * 700))
    data = full[:len(full) - cut]  # inside b.txt's content (or a.txt's, for the largest cut... still content)
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        extract_context(io.BytesIO(data), tmp_path / "ctx")


def test_members_are_not_kept_while_streaming(tmp_path):
    import tarfile as tf

    from berth.builder.contexttar import members
    buf = _tar(*((_info(f"f{i}"), b"x") for i in range(50)))
    with tf.open(fileobj=buf, mode="r|") as tar:
        seen = 0
        for _ in members(tar):
            seen += 1
            assert len(tar.members) <= 1
    assert seen == 50
