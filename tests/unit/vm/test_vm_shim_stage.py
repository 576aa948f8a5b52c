"""berth.vm.shim.Setup.stage against a hostile container root: the /etc copies and mount points are
made inside the root (berth.host.fstree), never through a symlink the guest planted."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.vm import shares
from berth.vm.shim import Setup, path_kind


def setup_for(tmp_path: Path, root: Path) -> tuple[Setup, shares.Plan]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    mounts = []
    for name in ("hosts", "hostname", "resolv.conf"):
        (bundle / name).write_text(f"new {name}\n")
        mounts.append({"type": "bind", "source": str(bundle / name), "destination": f"/etc/{name}"})
    data = tmp_path / "data"
    data.mkdir()
    mounts.append({"type": "bind", "source": str(data), "destination": "/mnt/data"})
    (bundle / "config.json").write_text(json.dumps({"root": {"path": str(root)}, "mounts": mounts}))
    setup = Setup(argparse.Namespace(bundle=str(bundle)))
    return setup, shares.plan(mounts, path_kind)


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    for name in ("canary", "hostname"):
        (host / name).write_text("HOST\n")
    return root, host


def test_symlinked_etc_files_are_replaced_inside_the_root(tmp_path: Path, hostile: tuple[Path, Path]) -> None:
    root, host = hostile
    os.symlink(str(host / "canary"), root / "etc" / "hosts")                          # absolute
    os.symlink("../../../../../../../.." + str(host / "hostname"), root / "etc" / "hostname")  # relative, ..
    os.mkfifo(root / "fifo")
    os.symlink("/fifo", root / "etc" / "resolv.conf")                                 # to a FIFO
    os.symlink(str(host), root / "mnt")                                               # a mount point's parent
    setup, plan = setup_for(tmp_path, root)
    setup.stage(plan, lambda tag: tmp_path / "work" / f"stage-{tag}")
    assert (host / "canary").read_text() == "HOST\n"
    assert (host / "hostname").read_text() == "HOST\n"
    assert sorted(os.listdir(host)) == ["canary", "hostname"]
    for name in ("hosts", "hostname", "resolv.conf"):
        assert not (root / "etc" / name).is_symlink()
        assert (root / "etc" / name).read_text() == f"new {name}\n"
    assert (root / "fifo").exists()
    assert (root / str(host).lstrip("/") / "data").is_dir()  # the link to the host, followed inside the root


def test_symlinked_etc_directory_stays_inside(tmp_path: Path, hostile: tuple[Path, Path]) -> None:
    root, host = hostile
    os.rmdir(root / "etc")
    os.symlink(str(host), root / "etc")
    setup, plan = setup_for(tmp_path, root)
    setup.stage(plan, lambda tag: tmp_path / "work" / f"stage-{tag}")
    assert sorted(os.listdir(host)) == ["canary", "hostname"]
    assert (host / "hostname").read_text() == "HOST\n"
    assert (root / str(host).lstrip("/") / "hosts").read_text() == "new hosts\n"


def test_a_full_directory_at_etc_hosts_is_a_clear_error(tmp_path: Path, hostile: tuple[Path, Path]) -> None:
    root, _ = hostile
    (root / "etc" / "hosts").mkdir()
    (root / "etc" / "hosts" / "x").write_text("x")
    setup, plan = setup_for(tmp_path, root)
    with pytest.raises(InvalidArgument, match="cannot write /etc/hosts in the container's root: "
                                              "/etc/hosts is not a regular file"):
        setup.stage(plan, lambda tag: tmp_path / "work" / f"stage-{tag}")
