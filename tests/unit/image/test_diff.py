"""berth.image.diff: the changes of real overlayfs upper directories (made by a real mount, as root), and of
hand-made ones for what a mount cannot easily produce (hostile entries, layer whiteouts)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition
from berth.host import fswalk, mount
from berth.image.diff import Kind, container_changes

A, C, D = Kind.ADDED, Kind.MODIFIED, Kind.DELETED


def listing(upper: Path, *lowers: Path, limit: int | None = None) -> list[tuple[str, Kind]]:
    kw = {} if limit is None else {"limit": limit}
    return [(c.path, c.kind) for c in container_changes(str(upper), [str(p) for p in lowers], **kw)]


class Overlay:
    """A real overlay mount of *lowers* (topmost first) with an upper directory, for the time of a with block."""

    def __init__(self, tmp: Path, *lowers: Path) -> None:
        self.upper, self.work, self.merged = tmp / "upper", tmp / "work", tmp / "merged"
        for d in (self.upper, self.work, self.merged):
            d.mkdir()
        self.lowers = [str(p) for p in lowers]

    def __enter__(self) -> Path:
        mount.mount_overlay(self.lowers, str(self.upper), str(self.work), str(self.merged))
        return self.merged

    def __exit__(self, *exc: object) -> None:
        mount.unmount(str(self.merged), lazy=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    for d in ("bin", "etc/ssl/certs", "var/lib", "proc", "sys", "dev"):
        (base / d).mkdir(parents=True)
    (base / "bin" / "sh").write_bytes(b"sh")
    (base / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (base / "etc" / "group").write_text("root:x:0:\n")
    (base / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (base / "etc" / "ssl" / "certs" / "ca.pem").write_text("ca")
    (base / "var" / "lib" / "state").write_text("s")
    return base


def test_a_new_file_at_the_top_is_only_that(tmp_path, image):
    with Overlay(tmp_path, image) as root:
        (root / "test").touch()
    assert listing(tmp_path / "upper", image) == [("/test", A)]


def test_no_change_is_an_empty_list(tmp_path, image):
    with Overlay(tmp_path, image) as root:
        os.listdir(root / "etc")
    assert listing(tmp_path / "upper", image) == []
    assert listing(tmp_path / "never-started", image) == []


def test_added_modified_deleted_and_their_parents(tmp_path, image):
    with Overlay(tmp_path, image) as root:
        with open(root / "etc" / "passwd", "a") as f:         # copied up: /etc itself keeps its times
            f.write("bob:x:1000:1000::/home/bob:/bin/sh\n")
        os.unlink(root / "var" / "lib" / "state")               # a whiteout; /var/lib is C, /var untouched
        (root / "home" / "bob").mkdir(parents=True)             # new directories: A, their content A
        (root / "home" / "bob" / ".profile").write_text("x")
        os.chmod(root / "bin", 0o700)                           # a directory's own change: C
    assert listing(tmp_path / "upper", image) == [
        ("/bin", C), ("/etc/passwd", C), ("/home", A), ("/home/bob", A), ("/home/bob/.profile", A),
        ("/var/lib", C), ("/var/lib/state", D)]


def test_a_directory_removed_and_made_again_is_deleted_then_filled_as_docker_lists_it(tmp_path, image):
    with Overlay(tmp_path, image) as root:
        shutil.rmtree(root / "etc" / "ssl")
        (root / "etc" / "ssl").mkdir()                          # overlayfs makes it opaque
        (root / "etc" / "ssl" / "new.pem").write_text("n")
    assert os.getxattr(tmp_path / "upper" / "etc" / "ssl", "trusted.overlay.opaque") == b"y"
    assert listing(tmp_path / "upper", image) == [("/etc", C), ("/etc/ssl", D), ("/etc/ssl/new.pem", A)]


def test_files_berth_and_the_runtime_write_are_left_out(tmp_path, image):
    # What a VM's set-up copies into the root, and mount points a runtime makes: Docker's init layer has them.
    with Overlay(tmp_path, image) as root:
        for name in ("hosts", "hostname", "resolv.conf"):
            (root / "etc" / name).write_text("berth's\n")
        (root / "dev" / "pts").mkdir()
        (root / "dev" / "console").touch()
        (root / ".dockerenv").touch()
    assert listing(tmp_path / "upper", image) == []
    (tmp_path / "again").mkdir()
    with Overlay(tmp_path / "again", image) as root:
        (root / "etc" / "hosts").write_text("berth's\n")
        (root / "etc" / "new.conf").write_text("mine\n")        # a real addition still names /etc
    assert listing(tmp_path / "again" / "upper", image) == [("/etc", C), ("/etc/new.conf", A)]


def test_layers_are_stacked_as_overlayfs_stacks_them(tmp_path, image):
    # A layer above the base that deleted /var/lib/state (a whiteout) and replaced /etc/ssl (opaque).
    top = tmp_path / "top"
    (top / "var" / "lib").mkdir(parents=True)
    os.mknod(top / "var" / "lib" / "state", stat.S_IFCHR, os.makedev(0, 0))
    (top / "etc" / "ssl").mkdir(parents=True)
    os.setxattr(top / "etc" / "ssl", "trusted.overlay.opaque", b"y")
    with Overlay(tmp_path, top, image) as root:
        (root / "var" / "lib" / "state").write_text("again")    # the image does not have it: A
        (root / "etc" / "ssl" / "certs").mkdir()                # hidden below the opaque directory: A
        (root / "etc" / "group").write_text("root:x:0:\nbob:x:1000:\n")
    assert listing(tmp_path / "upper", top, image) == [
        ("/etc/group", C), ("/etc/ssl", C), ("/etc/ssl/certs", A), ("/var/lib", C), ("/var/lib/state", A)]


def test_symlinks_in_the_upper_or_a_layer_are_never_followed(tmp_path, image):
    # Hand-made: a container's symlink where the image has a directory, and a layer whose /var is a symlink
    # pointing at the host: the lookups stay in the layer and see a symlink, not what it points at.
    host = tmp_path / "host"
    (host / "lib" / "state").mkdir(parents=True)
    upper = tmp_path / "upper"
    upper.mkdir()
    os.symlink(str(host), upper / "etc")
    top = tmp_path / "top"
    top.mkdir()
    os.symlink(str(host), top / "var")
    (upper / "var" / "lib").mkdir(parents=True)
    (upper / "var" / "lib" / "state").write_text("x")
    assert listing(upper, top, image) == [("/etc", C), ("/var", C), ("/var/lib", A), ("/var/lib/state", A)]


def test_the_answer_is_bounded(tmp_path, image):
    with Overlay(tmp_path, image) as root:
        for i in range(20):
            (root / f"f{i}").touch()
    assert len(listing(tmp_path / "upper", image, limit=20)) == 20
    with pytest.raises(FailedPrecondition, match="more than 19"):
        listing(tmp_path / "upper", image, limit=19)


def test_names_that_are_not_utf8_are_replaced_in_the_api_shape(tmp_path, image):
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / os.fsdecode(b"caf\xe9")).touch()
    [change] = container_changes(str(upper), [str(image)])
    assert change.to_api() == {"Path": "/caf\ufffd", "Kind": 1}


def test_a_tree_thousands_deep_is_listed_and_one_deeper_than_the_walk_takes_is_refused(tmp_path, image,
                                                                                       monkeypatch):
    upper = tmp_path / "upper"
    upper.mkdir()
    fd = os.open(upper, os.O_RDONLY)
    try:
        for _ in range(3000):  # by descriptor: the path is far longer than PATH_MAX
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
    try:
        listed = listing(upper, image)
        assert len(listed) == 3000 and listed[0] == ("/d", A) and listed[-1] == ("/d" * 3000, A)
        monkeypatch.setattr(fswalk, "MAX_WALK_DEPTH", 100)
        with pytest.raises(fswalk.TreeTooDeep, match="more than 100 directories deep"):
            listing(upper, image)
    finally:
        subprocess.run(["rm", "-rf", str(upper)], check=True)  # shutil.rmtree recurses
