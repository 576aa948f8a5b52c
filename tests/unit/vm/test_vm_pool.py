"""berth.vm.pool: shapes, what a refill starts, what is surplus, and the files a pooled VM leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.vm import pool, shares

A = pool.Shape(256, 1, 0, False)
B = pool.Shape(384, 1, 1, True)
C = pool.Shape(256, 2, 0, False)


def _plan(mounts: list[dict]) -> shares.Plan:
    return shares.plan(mounts, lambda p: "dir" if str(p).endswith("d") else "file")


def test_shape_of_a_plain_container_and_with_limits() -> None:
    assert pool.shape_of({}, _plan([]), host_cpus=2, nic=False) == A
    config = {"linux": {"resources": {"memory": {"limit": 200 << 20}, "cpu": {"quota": 150000, "period": 100000}}}}
    mounts = [{"type": "bind", "source": "/x/d", "destination": "/data", "options": ["rw"]}]
    assert pool.shape_of(config, _plan(mounts), host_cpus=2, nic=True) == pool.Shape(320, 2, 1, True)


def test_read_only_shares_are_not_served_from_the_pool() -> None:
    mounts = [{"type": "bind", "source": "/x/d", "destination": "/data", "options": ["ro"]}]
    assert pool.shape_of({}, _plan(mounts), host_cpus=2, nic=False) is None


def test_share_tags_follow_the_slots() -> None:
    assert A.share_tags == ("rootfs",)
    assert pool.Shape(256, 1, 4, False).share_tags == ("rootfs", "s0", "s1", "s2", "s3")
    assert A.key() == "m256-c1-s0-x" and B.key() == "m384-c1-s1-n"


def test_refill_per_shape_most_recent_first_within_the_memory_bound() -> None:
    s = pool.Settings(per_shape=2, memory_mib=1024)
    assert pool.refill(s, [A], []) == [A, A]
    assert pool.refill(s, [A], [A]) == [A]
    assert pool.refill(s, [B, A], []) == [B, B, A]  # 384 + 384 + 256 = 1024: the fourth would pass it
    assert pool.refill(pool.Settings(per_shape=1, memory_mib=500), [A, B], []) == [A]
    assert pool.refill(pool.Settings(per_shape=0), [A], []) == []
    assert pool.refill(s, [], [A]) == []


def test_surplus_stops_forgotten_shapes_extras_and_what_passes_the_bound() -> None:
    s = pool.Settings(per_shape=1, memory_mib=700)
    assert pool.surplus(s, [A, B], [A, A, C, B]) == [1, 2]  # a second A; C is no longer in use
    assert pool.surplus(pool.Settings(per_shape=1, memory_mib=300), [A, B], [B, A]) == [0]
    assert pool.surplus(pool.Settings(per_shape=0), [A], [A]) == [0]


def test_remember_keeps_the_most_recent_shapes() -> None:
    shapes: tuple[pool.Shape, ...] = ()
    for i in range(6):
        shapes = pool.remember(shapes, pool.Shape(256 + 64 * i, 1, 0, False))
    assert len(shapes) == pool.MAX_SHAPES and shapes[0].mem_mib == 256 + 64 * 5
    assert pool.remember(shapes, shapes[2])[0] == shapes[2]


def test_shapes_file_round_trip_and_damage_is_forgotten() -> None:
    assert pool.parse_shapes(pool.dump_shapes([A, B])) == (A, B)
    for bad in ("", "{", "{}", '[{"mem_mib": 256}]', '[{"mem_mib": 256, "vcpus": 1, "slots": 3, "nic": false}]',
                '[{"mem_mib": "256", "vcpus": 1, "slots": 0, "nic": false}]'):
        assert pool.parse_shapes(bad) == ()


def test_member_state_round_trip_and_refusals() -> None:
    st = pool.MemberState(10, 11, B, "abc")
    assert pool.MemberState.from_json(st.to_json()) == st
    for bad in ("[]", "nope", '{"pid": 1, "qemu_pid": 0, "artifacts": "a", "shape": {}}',
                '{"pid": 1, "qemu_pid": 2, "artifacts": "a", "shape": {"mem_mib": 1}}',
                '{"pid": true, "qemu_pid": 2, "artifacts": "a"}'):
        with pytest.raises(InvalidArgument):
            pool.MemberState.from_json(bad)


def test_premount_and_subdir_guest_script(tmp_path: Path) -> None:
    script = shares.premount_script(("rootfs", "s0"))
    assert "mount -t 9p" in script and "/run/berth/rootfs" in script and "/run/berth/s0" in script
    mounts = [{"type": "bind", "source": "/x/d", "destination": "/data", "options": ["rw"]},
              {"type": "bind", "source": "/x/f", "destination": "/etc/f.conf", "options": ["rw"]}]
    plan = _plan(mounts)
    pooled = shares.guest_script(plan, "/mnt/root", subdir=True)
    assert "mount -t 9p" not in pooled, "a pooled VM's shares are mounted already"
    assert "mount --bind /run/berth/s0/m /mnt/root/data" in pooled
    assert "mount --bind /run/berth/s1/m/0 /mnt/root/etc/f.conf" in pooled
    plain = shares.guest_script(plan, "/mnt/root")
    assert "mount -t 9p" in plain and "/m/" not in plain
