"""berth.tools.manifeststore: docker's on-disk layout, and a store that cannot be turned against the host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, NotFound
from berth.oci import manifestlist as ml
from berth.tools.manifeststore import MAX_FILE, ManifestStore

LIST = ml.normalize("127.0.0.1:5000/dst/list:v1")


def _entry(name: str, layer: str = "1") -> ml.Entry:
    raw = ('{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.docker.container.image.v1+json",'
           '"size":2,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip",'
           '"size":3,"digest":"sha256:%s"}]}' % (ml.DOCKER_MANIFEST, "c" * 64, layer * 64)).encode()
    return ml.image_manifest(ml.normalize(name), ml.DOCKER_MANIFEST, raw, ml.Platform("amd64", "linux"))


def test_layout_is_dockers(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    b, a = _entry("127.0.0.1:5000/src/b:v1", "2"), _entry("127.0.0.1:5000/src/a:v1")
    store.save(LIST, b.ref, b)
    store.save(LIST, a.ref, a)
    folder = tmp_path / "127.0.0.1-5000_dst_list-v1"
    assert sorted(os.listdir(folder)) == ["127.0.0.1-5000_src_a-v1", "127.0.0.1-5000_src_b-v1"]
    assert stat.S_IMODE(os.stat(folder / "127.0.0.1-5000_src_a-v1").st_mode) == 0o644
    assert (folder / "127.0.0.1-5000_src_a-v1").read_bytes() == a.to_store()
    assert [e.ref for e in store.get_list(LIST)] == [a.ref, b.ref]  # file-name order, as docker reads them
    assert store.get(LIST, b.ref) == b
    store.remove(LIST)
    assert not folder.exists() and not store.exists(LIST)


def test_missing_list_and_member_say_so_in_dockers_words(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    with pytest.raises(NotFound, match="^No such manifest: 127.0.0.1:5000/dst/list:v1$"):
        store.get_list(LIST)
    with pytest.raises(NotFound, match="^No such manifest: docker.io/library/x:latest$"):
        store.get(LIST, ml.normalize("x"))


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host file")
    store = ManifestStore(tmp_path / "store")
    entry = _entry("127.0.0.1:5000/src/a:v1")
    store.save(LIST, entry.ref, entry)
    member = tmp_path / "store" / "127.0.0.1-5000_dst_list-v1" / "127.0.0.1-5000_src_a-v1"
    member.unlink()
    member.symlink_to(secret)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        store.get(LIST, entry.ref)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        store.get_list(LIST)
    assert secret.read_text() == "host file"


def test_a_huge_or_garbage_member_file_is_refused(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    folder = tmp_path / "127.0.0.1-5000_dst_list-v1"
    folder.mkdir()
    (folder / "big").write_bytes(b" " * (MAX_FILE + 1))
    with pytest.raises(InvalidArgument, match="larger than"):
        store.get_list(LIST)
    (folder / "big").write_bytes(b"{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        store.get_list(LIST)
    (folder / "big").unlink()
    os.mkfifo(folder / "fifo")  # would block a plain open() forever
    with pytest.raises(InvalidArgument, match="not a regular file"):
        store.get_list(LIST)


def test_removing_a_list_that_is_a_symlink_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "127.0.0.1-5000_dst_list-v1").symlink_to(victim)
    ManifestStore(tmp_path / "store").remove(LIST)
    assert (victim / "keep").read_text() == "x"
