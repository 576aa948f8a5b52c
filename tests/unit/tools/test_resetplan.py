"""berth.tools.resetplan: what `berth system reset` decides belongs to a data root, from canned facts."""

from __future__ import annotations

import pytest

from berth.api.wiring import nft_table as daemon_nft_table
from berth.errors import InvalidArgument
from berth.tools import resetplan

CID = "a" * 64
CID2 = "0123456789abcdef" * 4


@pytest.mark.parametrize("root", ["/var/lib/berth", "/tmp/bt-x/root", "/srv/berth", "/var/lib/berth/"])
def test_nft_table_is_the_daemons(root: str) -> None:
    assert resetplan.nft_table(root) == daemon_nft_table(root)


@pytest.mark.parametrize("root", ["/", "/etc", "/var/lib", "/home/", "//", "/usr/../etc"])
def test_system_directories_are_refused(root: str) -> None:
    with pytest.raises(InvalidArgument, match="system directory"):
        resetplan.check_root(root)


def test_root_is_made_absolute_and_normal() -> None:
    assert resetplan.check_root("/var/lib/berth/") == "/var/lib/berth"
    assert resetplan.check_root("/srv/x/../berth") == "/srv/berth"
    with pytest.raises(InvalidArgument):
        resetplan.check_root("")


def test_looks_like_root() -> None:
    assert resetplan.looks_like_root(["berthd.pid"])
    assert resetplan.looks_like_root(["blobs", "tmp"])
    assert not resetplan.looks_like_root(["Documents", ".bashrc"])


@pytest.mark.parametrize(("argv", "expected"), [
    (["/usr/bin/conmon", "-b", "/var/lib/berth/containers/x"], True),
    (["conmon", "-l", "k8s-file:/var/lib/berth/containers/x/container.log"], True),
    (["runc", "--root=/var/lib/berth/runtime/runc", "state", "x"], True),
    (["qemu", "-chardev", "socket,path=/var/lib/berth/s/a.sock,server=on"], True),
    (["monitor", "--workdir", "/var/lib/berth"], True),
    (["sleep", "/var/lib/berth2/x"], False),  # another root that starts with the same characters
    (["cat", "/var/lib/berthx"], False),
    (["sh", "-c", "echo hi"], False),
    ([], False),
])
def test_mentions(argv: list[str], expected: bool) -> None:
    assert resetplan.mentions(argv, "/var/lib/berth") is expected


@pytest.mark.parametrize(("argv", "root"), [
    (["/usr/bin/python3", "/work/.venv/bin/berthd", "--root", "/tmp/r", "--host", "unix:///x"], "/tmp/r"),
    (["/work/.venv/bin/berthd", "--root=/tmp/r/"], "/tmp/r"),
    (["/usr/bin/python3", "/usr/local/bin/berthd"], "/var/lib/berth"),
    (["python3", "-m", "berth.daemon", "--root", "/srv/b"], "/srv/b"),
    (["/usr/bin/python3", "/work/.venv/bin/berth", "system", "reset", "--root", "/tmp/r"], None),
    (["sleep", "--root", "/tmp/r"], None),
    ([], None),
])
def test_berthd_root(argv: list[str], root: str | None) -> None:
    assert resetplan.berthd_root(argv) == root


def test_container_ids_from_runc_runsc_and_containers_dirs() -> None:
    names = [CID, f"{CID2}_sandbox:{CID2}.state", f"{CID2}_sandbox:{CID2}.lock", "tmp", "A" * 64, "a" * 63,
             "../" + "b" * 64]
    assert resetplan.container_ids(names) == sorted({CID, CID2})


def test_unmount_order_deepest_first_and_only_under_root() -> None:
    points = ["/r/netns", "/r/containers/x/rootfs", "/r/netns/abc", "/rx/other", "/", "/r",
              "/r/containers/x/rootfs/proc"]
    assert resetplan.unmount_order(points, "/r") == [
        "/r/containers/x/rootfs/proc", "/r/containers/x/rootfs", "/r/netns/abc", "/r/netns", "/r"]


def _net(nid: str, driver: str = "bridge", **options: str) -> dict[str, object]:
    return {"Name": nid, "Id": nid * 64 if len(nid) == 1 else nid, "Created": "", "Driver": driver,
            "Options": options}


def test_bridge_names_from_records() -> None:
    docs = [_net("a", **{"com.docker.network.bridge.name": "bt1234"}), _net("b"), _net("c", driver="host"),
            _net("d", driver="null"), {"garbage": True}, _net("e", **{"com.docker.network.bridge.name": "a/b"})]
    assert resetplan.bridge_names(docs, "bt1234", "/tmp/r") == ["bt1234", "br-" + "b" * 12]
    assert resetplan.bridge_names(docs, "given0", "/tmp/r")[-1] == "given0"


def test_bridge_names_default_only_for_the_default_root() -> None:
    assert resetplan.bridge_names([], None, "/var/lib/berth") == ["berth0"]
    assert resetplan.bridge_names([], None, "/tmp/r") == []
    assert resetplan.bridge_names([], "x0", "/var/lib/berth") == ["x0"]


def test_nft_families() -> None:
    listing = "table inet filter\ntable ip berth_1234abcd\ntable ip6 berth_1234abcd\ntable ip berth_ffff0000\n"
    assert resetplan.nft_families(listing, "berth_1234abcd") == ["ip", "ip6"]
    assert resetplan.nft_families(listing, "berth") == []


def test_interface_names() -> None:
    from berth.host.ifnames import veth_name

    veth = veth_name(CID, "n" * 64)
    names = resetplan.interface_names([CID], ["n" * 64], ["p-0123456789abcdef", "p-../x", "a.sock", "p-"])
    assert names == sorted([veth, "tap" + veth[4:], "bp0123456789ab"])
    assert all(len(n) <= 15 for n in names)


def test_ports_to_remove() -> None:
    assert resetplan.is_port_to_remove("tap0123456789a", "tun")
    assert resetplan.is_port_to_remove("veth0123456789a", "veth")
    assert resetplan.is_port_to_remove("bp0123456789ab", "tun")
    assert not resetplan.is_port_to_remove("eth0", None)  # a host's own NIC someone enslaved
    assert not resetplan.is_port_to_remove("vethx", "bridge")


def test_outcome() -> None:
    out = resetplan.Outcome()
    assert out.code == 0 and out.summary() == ""
    out.failed.append("bridge x: busy")
    assert out.code == 1 and "bridge x: busy" in out.summary()
