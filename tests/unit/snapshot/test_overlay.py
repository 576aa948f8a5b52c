"""Tests for berth.snapshot.overlay, plus one real overlay mount through berth.host.mount."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from berth.host.mount import is_mountpoint, mount_overlay, unmount
from berth.image.archive import apply_layer
from berth.snapshot.overlay import OverlayMount, Snapshots, chain_ids

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_chain_ids() -> None:
    assert chain_ids([]) == []
    assert chain_ids([D1]) == [D1]
    c2 = _sha(f"{D1} {D2}")
    c3 = _sha(f"{c2} {D3}")
    assert chain_ids([D1, D2, D3]) == [D1, c2, c3]
    # Order matters, and a prefix of the diff ids gives a prefix of the chain.
    assert chain_ids([D2, D1])[1] != c2
    assert chain_ids([D1, D2]) == [D1, c2]


def test_chain_ids_known_value() -> None:
    # Computed independently: sha256 of the ASCII string "<D1> <D2>".
    text = ("sha256:" + "1" * 64 + " " + "sha256:" + "2" * 64).encode()
    assert chain_ids([D1, D2])[1] == "sha256:" + hashlib.sha256(text).hexdigest()


def test_snapshot_paths(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    assert s.root == str(tmp_path / "snapshots")
    assert s.path(D1) == str(tmp_path / "snapshots" / ("1" * 64) / "fs")
    assert not s.exists(D1)


def test_commit_fills_and_publishes(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    seen = []

    def fill(directory: str) -> None:
        seen.append(directory)
        assert not s.exists(D1)  # not visible while being filled
        Path(directory, "hello").write_text("hi")

    s.commit(D1, fill)
    assert s.exists(D1)
    assert Path(s.path(D1), "hello").read_text() == "hi"
    assert seen and seen[0] != s.path(D1)
    assert sorted(os.listdir(s.root)) == ["1" * 64]


def test_commit_of_existing_snapshot_does_not_refill(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    s.commit(D1, lambda d: Path(d, "first").touch())
    calls = []
    s.commit(D1, lambda d: calls.append(d))
    assert calls == []
    assert os.listdir(s.path(D1)) == ["first"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), OSError(28, "No space")])
def test_commit_that_fails_leaves_nothing(tmp_path: Path, exc: BaseException) -> None:
    s = Snapshots(str(tmp_path))

    def fill(directory: str) -> None:
        Path(directory, "half").write_bytes(b"x" * 1000)
        os.makedirs(os.path.join(directory, "ro", "deep"))
        os.chmod(os.path.join(directory, "ro"), 0o500)
        raise exc

    with pytest.raises(type(exc)):
        s.commit(D1, fill)
    assert not s.exists(D1)
    assert os.listdir(s.root) == []  # not even a temp dir


def test_commit_with_apply_layer_that_refuses_leaves_nothing(tmp_path: Path) -> None:
    from berth.errors import InvalidArgument

    s = Snapshots(str(tmp_path))
    with pytest.raises(InvalidArgument):
        s.commit(D1, lambda d: apply_layer(io.BytesIO(b"not a tar" * 100), d))
    assert os.listdir(s.root) == []


def test_crash_leftover_temp_dir_cleaned_on_open(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    s.commit(D1, lambda d: Path(d, "kept").touch())
    leftover = Path(s.root, ".tmp-0123456789abcdef")
    (leftover / "fs" / "sub").mkdir(parents=True)
    (leftover / "fs" / "sub" / "f").write_text("partial")
    os.chmod(leftover / "fs" / "sub", 0o500)
    os.mknod(leftover / "fs" / "wh", stat.S_IFCHR, os.makedev(0, 0))
    s2 = Snapshots(str(tmp_path))
    assert not leftover.exists()
    assert s2.exists(D1)
    assert os.listdir(s2.path(D1)) == ["kept"]


def test_remove(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    s.commit(D1, lambda d: Path(d, "x").touch())
    s.remove(D1)
    assert not s.exists(D1)
    assert os.listdir(s.root) == []
    s.remove(D1)  # removing again is fine


def test_container_mount_orders_lower_topmost_first(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    chains = chain_ids([D1, D2, D3])  # bottom first
    m = s.container_mount(chains, "/ctr/abc")
    assert m == OverlayMount(
        lower=(s.path(chains[2]), s.path(chains[1]), s.path(chains[0])),
        upper="/ctr/abc/upper", work="/ctr/abc/work", target="/ctr/abc/rootfs")


def test_container_mount_single_layer(tmp_path: Path) -> None:
    s = Snapshots(str(tmp_path))
    assert s.container_mount([D1], "/c").lower == (s.path(D1),)


# --------------------------------------------------------------------------- #
# A real overlay mount


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """(name, data) -> a tar; data None is a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def mounted(tmp_path: Path):
    """Two layers unpacked into snapshots and overlaid for a container; unmounted after."""
    s = Snapshots(str(tmp_path / "root"))
    bottom = _tar([("etc", None), ("etc/os-release", b"bottom\n"), ("etc/only-bottom", b"b\n"),
                   ("etc/removed", b"doomed\n"), ("opt", None), ("opt/old", b"old\n"),
                   ("shared", b"bottom\n")])
    top = _tar([("etc", None), ("etc/os-release", b"top\n"), ("etc/.wh.removed", b""),
                ("opt", None), ("opt/.wh..wh..opq", b""), ("opt/new", b"new\n"),
                ("only-top", b"t\n")])
    diffs = ["sha256:" + hashlib.sha256(t).hexdigest() for t in (bottom, top)]
    chains = chain_ids(diffs)
    for chain, layer in zip(chains, (bottom, top)):
        s.commit(chain, lambda d, layer=layer: apply_layer(io.BytesIO(layer), d))
    ctr = tmp_path / "ctr"
    m = s.container_mount(chains, str(ctr))
    for p in (m.upper, m.work, m.target):
        os.makedirs(p)
    mount_overlay(list(m.lower), m.upper, m.work, m.target)
    try:
        yield m
    finally:
        unmount(m.target)


def test_real_overlay_upper_layer_shadows_lower(mounted: OverlayMount) -> None:
    rootfs = Path(mounted.target)
    assert is_mountpoint(mounted.target)
    assert (rootfs / "etc/os-release").read_bytes() == b"top\n"
    assert (rootfs / "etc/only-bottom").read_bytes() == b"b\n"
    assert (rootfs / "only-top").read_bytes() == b"t\n"
    assert (rootfs / "shared").read_bytes() == b"bottom\n"
    # The whiteout hides the lower file; the opaque directory hides the lower content.
    assert not (rootfs / "etc/removed").exists()
    assert sorted(os.listdir(rootfs / "opt")) == ["new"]


def test_real_overlay_writes_go_to_the_container_upper(mounted: OverlayMount) -> None:
    rootfs = Path(mounted.target)
    (rootfs / "etc/os-release").write_bytes(b"container\n")
    (rootfs / "shared").unlink()
    assert Path(mounted.upper, "etc/os-release").read_bytes() == b"container\n"
    # The snapshots themselves are untouched.
    assert Path(mounted.lower[0], "etc/os-release").read_bytes() == b"top\n"
    assert Path(mounted.lower[1], "shared").read_bytes() == b"bottom\n"
    st = os.lstat(Path(mounted.upper, "shared"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlayfs's own whiteout


def test_mount_overlay_twice_is_a_no_op_and_unmount_twice_is_fine(mounted: OverlayMount) -> None:
    mount_overlay(list(mounted.lower), mounted.upper, mounted.work, mounted.target)
    unmount(mounted.target)
    assert not is_mountpoint(mounted.target)
    assert os.listdir(mounted.target) == []
    unmount(mounted.target)  # not mounted any more: fine
