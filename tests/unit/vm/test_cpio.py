from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.vm import cpio

BUSYBOX = "/bin/busybox"


def _sample() -> bytes:
    w = cpio.CpioWriter(mtime=1_700_000_000)
    w.add_dir("dev")
    w.add_dir("/bin/")  # slashes are trimmed
    w.add_dir("tmp", 0o1777)
    w.add_chardev("dev/console", 5, 1, 0o600)
    w.add_file("init", b"#!/bin/sh\necho hi\n", 0o755)
    w.add_file("etc", b"", 0o644, uid=1000, gid=100)
    w.add_symlink("bin/sh", "busybox")
    return w.getvalue()


def test_first_header_bytes() -> None:
    w = cpio.CpioWriter()
    w.add_file("a", b"xyz", 0o644)
    data = w.getvalue()
    expected = (b"070701" b"00000001" b"000081A4" b"00000000" b"00000000" b"00000001" b"00000000"
                b"00000003" b"00000000" b"00000000" b"00000000" b"00000000" b"00000002" b"00000000")
    assert data[:110] == expected
    assert data[110:112] == b"a\0"           # name, then header+name padded to 4 (112)
    assert data[112:116] == b"xyz\0"         # data padded to 4
    assert data[116:122] == b"070701"        # the trailer follows
    assert b"TRAILER!!!\0" in data[116:]
    assert len(data) % 4 == 0


def test_round_trip() -> None:
    entries = {e.name: e for e in cpio.read_entries(_sample())}
    assert list(entries) == ["dev", "bin", "tmp", "dev/console", "init", "etc", "bin/sh"]
    assert stat.S_ISDIR(entries["tmp"].mode) and stat.S_IMODE(entries["tmp"].mode) == 0o1777
    assert stat.S_ISCHR(entries["dev/console"].mode) and entries["dev/console"].rdev == (5, 1)
    assert entries["init"].data == b"#!/bin/sh\necho hi\n" and stat.S_IMODE(entries["init"].mode) == 0o755
    assert (entries["etc"].uid, entries["etc"].gid) == (1000, 100)
    assert stat.S_ISLNK(entries["bin/sh"].mode) and entries["bin/sh"].data == b"busybox"


def test_every_entry_is_aligned() -> None:
    data = _sample()
    pos = 0
    while True:
        assert pos % 4 == 0 and data[pos:pos + 6] == cpio.MAGIC
        namesize, filesize = int(data[pos + 94:pos + 102], 16), int(data[pos + 54:pos + 62], 16)
        name = data[pos + 110:pos + 110 + namesize]
        pos += 110 + namesize
        pos += (-pos) % 4
        pos += filesize + (-filesize) % 4
        if name == b"TRAILER!!!\0":
            break
    assert pos == len(data)


def test_refusals() -> None:
    w = cpio.CpioWriter()
    w.add_dir("a")
    for bad in ("", "/", "a/../b", "x/./y", "nul\0"):
        with pytest.raises(InvalidArgument):
            w.add_file(bad, b"")
    with pytest.raises(InvalidArgument):
        w.add_dir("a")  # duplicate
    with pytest.raises(InvalidArgument):
        w.add_symlink("l", "")
    w.getvalue()
    with pytest.raises(InvalidArgument):
        w.add_file("late", b"")


@pytest.mark.skipif(not os.path.exists(BUSYBOX) or os.geteuid() != 0,
                    reason="needs busybox (busybox-static) and root, to extract device nodes")
def test_busybox_cpio_extracts_it(tmp_path: Path) -> None:
    subprocess.run([BUSYBOX, "cpio", "-i", "-d", "-m"], input=_sample(), cwd=tmp_path, check=True,
                   capture_output=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.readlink(tmp_path / "bin" / "sh") == "busybox"
    st = os.stat(tmp_path / "dev" / "console")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 1)
    assert stat.S_IMODE(os.stat(tmp_path / "tmp").st_mode) == 0o1777
    assert os.stat(tmp_path / "etc").st_uid == 1000
