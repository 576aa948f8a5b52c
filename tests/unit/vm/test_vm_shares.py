from pathlib import Path

from berth.vm import shares

KINDS = {"/d/rw": "dir", "/d/ro": "dir", "/f/a": "file", "/f/b": "file", "/etc-src/hosts": "file"}


def kind(p: Path) -> str:
    return KINDS.get(str(p), "missing")


MOUNTS = [
    {"type": "bind", "source": "/etc-src/hosts", "destination": "/etc/hosts", "options": ["rbind"]},
    {"type": "bind", "source": "/d/rw", "destination": "/data", "options": ["rbind", "rw"]},
    {"type": "bind", "source": "/d/ro", "destination": "/data/sub", "options": ["rbind", "ro"]},
    {"type": "bind", "source": "/f/a", "destination": "/etc/a.conf", "options": ["rbind"]},
    {"type": "bind", "source": "/f/b", "destination": "/b", "options": ["rbind", "ro"]},
    {"type": "bind", "source": "/nowhere", "destination": "/n", "options": []},
    {"type": "tmpfs", "source": "tmpfs", "destination": "/scratch", "options": ["nosuid", "size=1m", "weird"]},
    {"type": "tmpfs", "source": "shm", "destination": "/dev/shm", "options": []},
    {"type": "proc", "source": "proc", "destination": "/proc", "options": []},
]


def test_plan_sorts_mounts_into_shares_stages_and_tmpfs() -> None:
    p = shares.plan(MOUNTS, kind)
    assert [(d.tag, str(d.source), d.destination, d.readonly) for d in p.dirs] == [
        ("s0", "/d/rw", "/data", False), ("s1", "/d/ro", "/data/sub", True)]
    assert p.stages == (("s2", False), ("s3", True))
    assert [(f.stage_tag, f.name, f.destination) for f in p.files] == [("s2", "0", "/etc/a.conf"), ("s3", "0", "/b")]
    assert p.tmpfs == (shares.Tmpfs("/scratch", "nosuid,size=1m"),)
    assert p.copies == ((Path("/etc-src/hosts"), "/etc/hosts"),)
    assert p.readonly_tags == {"s1", "s3"}
    assert len(p.skipped) == 1 and "/nowhere" in p.skipped[0]


def test_shares_are_padded_to_a_slot_count() -> None:
    p = shares.plan(MOUNTS[:4], kind)  # two dirs and one stage: three shares -> four slots
    got = shares.shares(p, Path("/root"), lambda tag: Path(f"/stage/{tag}"), Path("/empty"))
    assert got == {"rootfs": Path("/root"), "s0": Path("/d/rw"), "s1": Path("/d/ro"), "s2": Path("/stage/s2"),
                   "s3": Path("/empty")}
    assert shares.shares(shares.plan([], kind), Path("/r"), lambda t: Path(t), Path("/e")) == {"rootfs": Path("/r")}


def test_guest_script_mounts_parents_before_children() -> None:
    script = shares.guest_script(shares.plan(MOUNTS, kind), "/mnt/rootfs")
    lines = script.splitlines()
    assert lines[0] == "set -e"
    data = lines.index(f"mount -t 9p -o {shares.NINEP_OPTIONS} s0 /mnt/rootfs/data")
    sub = lines.index(f"mount -t 9p -o {shares.NINEP_OPTIONS} s1 /mnt/rootfs/data/sub")
    assert data < sub
    assert "mount --bind /run/berth/s3/0 /mnt/rootfs/b" in lines
    assert "mount -o remount,bind,ro /mnt/rootfs/b" in lines
    assert "mount -t tmpfs -o nosuid,size=1m tmpfs /mnt/rootfs/scratch" in lines
    assert not any("/dev/shm" in line for line in lines)
