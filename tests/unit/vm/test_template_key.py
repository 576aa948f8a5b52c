"""Template identity: what makes two configurations share a template, and the template record."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.errors import InvalidArgument, Unavailable
from berth.vm import cmdline, template
from berth.vm.prepare import Artifacts


@pytest.fixture()
def art(tmp_path: Path) -> Artifacts:
    (tmp_path / "vmlinux").write_bytes(b"kernel")
    (tmp_path / "initramfs.cpio").write_bytes(b"initramfs")
    (tmp_path / "qemu").write_bytes(b"qemu")
    return Artifacts(tmp_path / "vmlinux", tmp_path / "initramfs.cpio", "6.1.0-56-amd64")


def test_artifacts_id_follows_the_files(art: Artifacts, tmp_path: Path) -> None:
    qemu = tmp_path / "qemu"
    first = template.artifacts_id(art, qemu)
    assert first == template.artifacts_id(art, qemu)
    new = tmp_path / "vmlinux.new"
    new.write_bytes(b"kernel")  # same bytes, new file: prepare() replaces by renaming
    os.replace(new, art.vmlinux)
    assert template.artifacts_id(art, qemu) != first
    second = template.artifacts_id(art, qemu)
    os.utime(qemu, ns=(1, 1))  # a QEMU upgrade
    assert template.artifacts_id(art, qemu) != second


def test_config_key() -> None:
    key = template.config_key("a" * 16, mem_mib=256, share_tags=["rootfs", "b0"], cmdline="x")
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == template.config_key("a" * 16, mem_mib=256, share_tags=("b0", "rootfs"), cmdline="x")
    others = {template.config_key("b" * 16, mem_mib=256, share_tags=["rootfs", "b0"], cmdline="x"),
              template.config_key("a" * 16, mem_mib=512, share_tags=["rootfs", "b0"], cmdline="x"),
              template.config_key("a" * 16, mem_mib=256, share_tags=["rootfs"], cmdline="x"),
              template.config_key("a" * 16, mem_mib=256, share_tags=["rootfs", "b0"], cmdline="y")}
    assert key not in others and len(others) == 4


@pytest.mark.parametrize("tags", [["rootfs", "rootfs"], ["bad tag"], [""], ["x" * 32], ["a,b"]])
def test_bad_tags_are_refused(tags: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        template.normalize_tags(tags)


def _template(tmp_path: Path, art: Artifacts, *, mem_mib: int = 4) -> template.Template:
    d = tmp_path / "templates" / ("0" * 16)
    d.mkdir(parents=True)
    return template.Template(key="0" * 16, dir=d, vm_dir=tmp_path, artifacts=art, artifacts_id="1" * 16,
                             mem_mib=mem_mib, share_tags=("b0", "rootfs"), cmdline="console=ttyS0",
                             kernel_release="6.1.0-56-amd64", memory_file=tmp_path / "x.ram",
                             nonce="abc", created=1.0)


def test_template_record_round_trips(tmp_path: Path, art: Artifacts) -> None:
    tpl = _template(tmp_path, art)
    back = template.Template.from_json(tpl.to_json(), dir=tpl.dir, vm_dir=tmp_path)
    assert back == tpl
    with pytest.raises(InvalidArgument):
        template.Template.from_json({**tpl.to_json(), "format": 0}, dir=tpl.dir, vm_dir=tmp_path)
    with pytest.raises(InvalidArgument):
        template.Template.from_json({"format": template.FORMAT}, dir=tpl.dir, vm_dir=tmp_path)


def test_complete_and_pin(tmp_path: Path, art: Artifacts) -> None:
    tpl = _template(tmp_path, art)
    assert not tpl.complete()
    tpl.memory_file.write_bytes(b"\0" * (4 << 20))
    tpl.state_file.write_bytes(b"QEVM state")
    assert tpl.complete()
    copy = tmp_path / "clone-state"
    with tpl.pin(copy) as fd:
        assert os.readlink(f"/proc/self/fd/{fd}") == str(tpl.memory_file)
        tpl.memory_file.unlink()  # a rebuild removing it now does not matter: the fd holds it
        assert os.fstat(fd).st_size == 4 << 20
    assert copy.read_bytes() == b"QEVM state"
    with pytest.raises(Unavailable):
        with tpl.pin(copy):
            pass
    tpl.memory_file.write_bytes(b"\0" * (4 << 20))
    tpl.state_file.unlink()
    with pytest.raises(Unavailable):
        with tpl.pin(copy):
            pass


def test_qemu_argv_for_templates_and_clones(art: Artifacts) -> None:
    shares = {"rootfs": Path("/r")}
    plain = cmdline.qemu_argv(art, agent_socket=Path("/s"), shares=shares, cmdline="x")
    tpl = cmdline.qemu_argv(art, agent_socket=Path("/s"), shares=shares, cmdline="x", mem_mib=512,
                            memory_file=Path("/dev/shm/t.ram"))
    clone = cmdline.qemu_argv(art, agent_socket=Path("/s"), shares=shares, cmdline="x", mem_mib=512,
                              memory_file=Path("/proc/self/fd/7"), memory_shared=False, incoming=True)
    assert "-object" not in plain and "-incoming" not in plain
    assert "memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.ram,share=on" in tpl
    assert "memory-backend-file,id=mem,size=512M,mem-path=/proc/self/fd/7,share=off" in clone
    for argv in (tpl, clone):
        assert argv[argv.index("-machine") + 1] == "memory-backend=mem"
        assert argv[argv.index("-m") + 1] == "512"
    assert "-incoming" not in tpl and clone[-2:] == ["-incoming", "defer"]
    # apart from the RAM file and -incoming, a clone's command line is the template's
    strip = lambda argv: [a for a in argv if "memory-backend-file" not in a and a not in ("-incoming", "defer")]  # noqa: E731
    assert strip(tpl) == strip(clone)
    with pytest.raises(InvalidArgument):
        cmdline.qemu_argv(art, agent_socket=Path("/s"), shares=shares, cmdline="x", memory_file=Path("/a,b"))
