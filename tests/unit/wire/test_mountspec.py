"""Tests for the pure parts of berth.services.volumes: -v, --mount and --volumes-from specs,
Docker's precedence between them, a container's stored mounts, the local driver's options,
and the list/prune filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.cli.runopts import parse_mount_flag
from berth.errors import InvalidArgument, NotFound, NotImplemented_
from berth.host.mount import mounts_under
from berth.wire.containerspec import HostConfig
from berth.wire.mountspec import (
    ANONYMOUS_LABEL,
    Mount,
    MountRequest,
    MountSpec,
    check_driver_options,
    check_volume_name,
    inherit,
    matches,
    mount_argv,
    mount_request,
    parse_api_mount,
    parse_volume_flag,
    parse_volumes_from,
    plan,
    propagation_refusal,
    prunable,
    tmpfs_mount_options,
)

# --------------------------------------------------------------------------- #
# -v (HostConfig.Binds)


@pytest.mark.parametrize("raw,want", [
    ("/a:/b", MountSpec("bind", "/a", "/b")),
    ("/a:/b:ro", MountSpec("bind", "/a", "/b", readonly=True, mode="ro")),
    ("/a:/b:rw,rshared", MountSpec("bind", "/a", "/b", mode="rw,rshared", propagation="rshared")),
    ("/a:/b/:ro,Z", MountSpec("bind", "/a", "/b", readonly=True, mode="ro,Z")),
    ("/srv/data dir:/mnt/with space", MountSpec("bind", "/srv/data dir", "/mnt/with space")),
    ("vol:/data", MountSpec("volume", "vol", "/data", mode="z")),
    ("vol:/data:ro", MountSpec("volume", "vol", "/data", readonly=True, mode="ro")),
    ("vol:/data:nocopy", MountSpec("volume", "vol", "/data", mode="nocopy", copy_data=False)),
    ("my.vol-1_x:/x//y/../z", MountSpec("volume", "my.vol-1_x", "/x/z", mode="z")),
    ("/data", MountSpec("volume", "", "/data", mode="z")),
])
def test_volume_flag_forms(raw: str, want: MountSpec) -> None:
    assert parse_volume_flag(raw) == want


@pytest.mark.parametrize("raw,words", [
    ("", "invalid volume specification"),
    (":/b", "invalid volume specification"),
    ("/a:/b:ro:x", "invalid volume specification"),
    ("vol:rel", "mount path must be absolute"),
    ("/a:/", "destination can't be '/'"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:/b:ro,rw", "invalid mode: ro,rw"),
    ("/a:/b:rshared,rslave", "invalid mode"),
    ("vol:/b:rshared", 'type "volume": field BindOptions must not be specified'),
    ("/a:/b:nocopy", 'type "bind": field VolumeOptions must not be specified'),
    ("/data:ro", "cannot have a mode"),
    ("./rel:/b", 'includes invalid characters for a local volume name'),
    ("a:/b", 'includes invalid characters for a local volume name'),
])
def test_volume_flag_refused(raw: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        parse_volume_flag(raw)


def test_volume_flag_must_be_a_string() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        parse_volume_flag(["/a:/b"])


@pytest.mark.parametrize("name", ["ab", "a1", "A.b-c_d", "0" * 64])
def test_volume_names(name: str) -> None:
    assert check_volume_name(name) == name


@pytest.mark.parametrize("name", ["a", "-ab", ".ab", "a/b", "a b", "ä1", ""])
def test_bad_volume_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match=r'only "\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]" are allowed'):
        check_volume_name(name)


# --------------------------------------------------------------------------- #
# --mount (HostConfig.Mounts)


@pytest.mark.parametrize("m,want", [
    ({"Type": "bind", "Source": "/h/", "Target": "/c"}, MountSpec("bind", "/h", "/c", must_exist=True)),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}},
     MountSpec("bind", "/h", "/c", readonly=True, propagation="rslave", must_exist=True)),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"CreateMountpoint": True}},
     MountSpec("bind", "/h", "/c")),
    ({"Type": "volume", "Source": "v1", "Target": "/c"}, MountSpec("volume", "v1", "/c", mode="z")),
    ({"Type": "volume", "Target": "/c", "VolumeOptions": {"NoCopy": True}},
     MountSpec("volume", "", "/c", mode="z", copy_data=False)),
    ({"Type": "volume", "Source": "v1", "Target": "/c", "VolumeOptions": {
        "Labels": {"k": "v"}, "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}},
     MountSpec("volume", "v1", "/c", mode="z", driver_options=(("device", "tmpfs"), ("type", "tmpfs")),
               labels=(("k", "v"),))),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1777}},
     MountSpec("tmpfs", "", "/t", tmpfs_options="rw,noexec,nosuid,nodev,mode=1777,size=1048576")),
    ({"Type": "tmpfs", "Target": "/t", "ReadOnly": True},
     MountSpec("tmpfs", "", "/t", readonly=True, tmpfs_options="ro,noexec,nosuid,nodev")),
])
def test_api_mount_forms(m: dict, want: MountSpec) -> None:
    assert parse_api_mount(m) == want


@pytest.mark.parametrize("m,words", [
    ({"Type": "bind", "Target": "/c"}, 'type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/c"}, "'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/h", "Target": "c"}, "'c' mount path must be absolute"),
    ({"Type": "bind", "Source": "/h", "Target": ""}, "field Target must not be empty"),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "VolumeOptions": {"NoCopy": True}},
     "field VolumeOptions must not be specified"),
    ({"Type": "bind", "Source": "/h", "Target": "/c", "BindOptions": {"Propagation": "sideways"}},
     "invalid propagation mode: sideways"),
    ({"Type": "volume", "Source": "v1", "Target": "/c", "BindOptions": {"Propagation": "rshared"}},
     "field BindOptions must not be specified"),
    ({"Type": "volume", "Target": "/c", "ReadOnly": True}, "must not set ReadOnly mode when using anonymous volumes"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/t"}, 'type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": -1}}, "non-negative"),
    ({"Type": "npipe", "Source": "x", "Target": "/t"}, "mount type unknown"),
    ({"Type": "volume", "Source": "v", "Target": "/c"}, "invalid characters for a local volume name"),
    ("bind", "every element must be an object"),
])
def test_api_mount_refused(m: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_api_mount(m)


def test_api_mount_other_driver_is_not_found() -> None:
    with pytest.raises(NotFound, match='plugin "nfs3" not found'):
        parse_api_mount({"Type": "volume", "Source": "v1", "Target": "/c",
                         "VolumeOptions": {"DriverConfig": {"Name": "nfs3"}}})


def test_api_mount_subpath_is_not_implemented() -> None:
    with pytest.raises(NotImplemented_, match="subpath"):
        parse_api_mount({"Type": "volume", "Source": "v1", "Target": "/c", "VolumeOptions": {"Subpath": "a"}})


def test_tmpfs_options_default() -> None:
    assert tmpfs_mount_options(None, False) == "rw,noexec,nosuid,nodev"


# --------------------------------------------------------------------------- #
# --volumes-from, and the precedence of everything


@pytest.mark.parametrize("spec,want", [("web", ("web", "")), ("web:ro", ("web", "ro")), ("web:rw", ("web", "rw"))])
def test_volumes_from(spec: str, want: tuple[str, str]) -> None:
    assert parse_volumes_from(spec) == want


@pytest.mark.parametrize("spec", ["", ":ro", "web:rshared", "web:xx"])
def test_volumes_from_refused(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_volumes_from(spec)


OTHER = [Mount.from_doc(doc) for doc in (
    {"Type": "volume", "Name": "v1", "Source": "/r/volumes/v1/_data", "Destination": "/data", "Mode": "z", "RW": True},
    {"Type": "bind", "Source": "/h", "Destination": "/h", "Mode": "ro", "RW": False, "Propagation": "rslave"},
    {"Type": "tmpfs", "Source": "", "Destination": "/t", "RW": True},
)]


def test_inherit_keeps_volumes_and_binds_and_never_copies() -> None:
    assert inherit(OTHER, "") == [
        MountSpec("volume", "v1", "/data", mode="z", copy_data=False),
        MountSpec("bind", "/h", "/h", readonly=True, mode="ro", propagation="rslave"),
    ]
    assert [m.readonly for m in inherit(OTHER, "ro")] == [True, True]
    assert [m.readonly for m in inherit(OTHER, "rw")] == [False, True]  # ro stays ro, as Docker does


def test_plan_precedence() -> None:
    specs = plan(binds=["named:/data", "/h:/b"],
                 mounts=[{"Type": "tmpfs", "Target": "/t"}],
                 config_volumes=["/data", "/image-vol", "/tmpfs-here"],
                 tmpfs=["/tmpfs-here"],
                 inherited=inherit(OTHER, ""))
    by_dest = {s.destination: s for s in specs}
    assert by_dest["/data"] == MountSpec("volume", "named", "/data", mode="z")  # -v beats --volumes-from
    assert by_dest["/h"].source == "/h"                       # inherited bind kept
    assert by_dest["/image-vol"] == MountSpec("volume", "", "/image-vol")  # anonymous, Mode ""
    assert by_dest["/t"].type == "tmpfs"
    assert "/tmpfs-here" not in by_dest                       # HostConfig.Tmpfs owns it


@pytest.mark.parametrize("binds,mounts,tmpfs", [
    (["a1:/x", "/h:/x"], [], []),
    (["a1:/x"], [{"Type": "volume", "Target": "/x"}], []),
    ([], [{"Type": "volume", "Target": "/x"}, {"Type": "tmpfs", "Target": "/x/"}], []),
    (["a1:/x"], [], ["/x"]),
])
def test_plan_duplicates(binds: list, mounts: list, tmpfs: list) -> None:
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        plan(binds, mounts, [], tmpfs, [])


def test_plan_relative_config_volume() -> None:
    with pytest.raises(InvalidArgument, match="must be absolute"):
        plan([], [], ["data"], [], [])


# --------------------------------------------------------------------------- #
# A container's stored mounts (its record's "Binds" entries) and what it asks for

# The entries as older daemons stored them: each type with its own keys, in this order.
STORED = [
    {"Type": "bind", "Source": "/h", "Destination": "/d", "Mode": "ro", "RW": False, "Propagation": "rprivate",
     "Options": ["rprivate"], "CreateSource": True},
    {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True, "Propagation": "",
     "TmpfsOptions": "rw,noexec,nosuid,nodev,size=1024"},
    {"Type": "volume", "Name": "v1", "Source": "/r/volumes/v1/_data", "Destination": "/data", "Driver": "local",
     "Mode": "z", "RW": True, "Propagation": "", "CopyData": True},
]


@pytest.mark.parametrize("doc", STORED, ids=lambda d: d["Type"])
def test_stored_mount_round_trips_in_order(doc: dict) -> None:
    assert list(Mount.from_doc(doc).to_doc().items()) == list(doc.items())


def test_stored_mount_fields() -> None:
    bind, tmpfs, volume = (Mount.from_doc(d) for d in STORED)
    assert bind == Mount("bind", "/d", "/h", mode="ro", rw=False, propagation="rprivate", options=("rprivate",))
    assert tmpfs == Mount("tmpfs", "/t", tmpfs_options="rw,noexec,nosuid,nodev,size=1024")
    assert volume == Mount("volume", "/data", "/r/volumes/v1/_data", name="v1", driver="local", mode="z",
                           copy_data=True)


def test_stored_mount_defaults_and_unknown_keys() -> None:
    old = {"Type": "bind", "Source": "/h", "Destination": "/d", "Future": [1]}  # no RW, CreateSource, Options
    m = Mount.from_doc(old)
    assert (m.rw, m.create_source, m.options) == (True, True, ())
    assert m.to_doc()["Future"] == [1]


def test_mount_request() -> None:
    host = {"Binds": ["/a:/b"], "Mounts": [{"Type": "tmpfs", "Target": "/t"}], "VolumesFrom": ["web:ro", "db"],
            "Tmpfs": {"/run": "size=1m"}}
    assert mount_request(HostConfig.from_doc(host), ["/v"]) == MountRequest(
        ("/a:/b",), ({"Type": "tmpfs", "Target": "/t"},), (("web", "ro"), ("db", "")), ("/run",), ("/v",))
    assert mount_request(HostConfig(), []) == MountRequest()


def test_mount_request_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid mode: xx"):
        mount_request(HostConfig(volumes_from=["web:xx"]), [])


# --------------------------------------------------------------------------- #
# The local driver's options


@pytest.mark.parametrize("opts", [
    {}, {"type": "tmpfs", "device": "tmpfs", "o": "size=10m"}, {"type": "none", "o": "bind", "device": "/srv"},
    {"o": "bind", "device": "/srv"}, {"type": "ext4", "device": "/dev/vdb"},
])
def test_driver_options(opts: dict) -> None:
    check_driver_options(opts)


@pytest.mark.parametrize("opts,words", [
    ({"colour": "red"}, 'invalid option: "colour"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"o": "size=1m"}, 'missing required option: "device"'),
    ({"device": "/dev/vdb"}, 'missing required option: "type"'),
])
def test_driver_options_refused(opts: dict, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        check_driver_options(opts)


def test_driver_size_option_not_implemented() -> None:
    with pytest.raises(NotImplemented_):
        check_driver_options({"size": "10g"})


def test_mount_argv() -> None:
    assert mount_argv({"type": "tmpfs", "device": "tmpfs", "o": "size=10m,uid=1000"}, "/v/_data") == [
        "mount", "-t", "tmpfs", "-o", "size=10m,uid=1000", "--", "tmpfs", "/v/_data"]
    assert mount_argv({"type": "none", "o": "bind", "device": "/srv"}, "/v/_data") == [
        "mount", "-o", "bind", "--", "/srv", "/v/_data"]


# --------------------------------------------------------------------------- #
# The filters


DOC = ("data-1", "local", {"team": "a", "tier": "db"})   # name, driver, labels
ANON = ("f" * 64, "local", {ANONYMOUS_LABEL: ""})


@pytest.mark.parametrize("filters,in_use,want", [
    ({}, False, True),
    ({"dangling": ["true"]}, False, True),
    ({"dangling": ["1"]}, True, False),
    ({"dangling": ["false"]}, True, True),
    ({"name": ["ata"]}, False, True),
    ({"name": ["zzz", "data"]}, False, True),
    ({"name": ["zzz"]}, False, False),
    ({"driver": ["local"]}, False, True),
    ({"driver": ["nfs"]}, False, False),
    ({"label": ["team"]}, False, True),
    ({"label": ["team=a", "tier=db"]}, False, True),
    ({"label": ["team:a"]}, False, True),
    ({"label": ["team=b"]}, False, False),
])
def test_list_filters(filters: dict, in_use: bool, want: bool) -> None:
    assert matches(*DOC, in_use, filters) is want


@pytest.mark.parametrize("filters", [{"colour": ["red"]}, {"dangling": ["maybe"]}, {"dangling": ["true", "false"]}])
def test_list_filters_refused(filters: dict) -> None:
    with pytest.raises(InvalidArgument):
        matches(*DOC, False, filters)


@pytest.mark.parametrize("doc,filters,want", [
    (ANON, {}, True),
    (DOC, {}, False),                         # named volumes only with all=true (Docker 23+)
    (DOC, {"all": ["true"]}, True),
    (DOC, {"all": ["true"], "label": ["team=a"]}, True),
    (DOC, {"all": ["1"], "label!": ["tier"]}, False),
    (ANON, {"label": ["team"]}, False),
])
def test_prune_filters(doc: tuple, filters: dict, want: bool) -> None:
    assert prunable(doc[2], filters) is want


def test_prune_filters_refused() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        prunable(ANON[2], {"dangling": ["true"]})


def test_mounts_under_reads_escaped_mountinfo(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
        "90 22 0:50 / /var/lib/berth/volumes/v1/_data rw - tmpfs tmpfs rw\n"
        "91 22 0:51 / /var/lib/berth/volumes/with\\040space/_data rw - tmpfs tmpfs rw\n"
        "92 22 0:52 / /var/lib/berth/volumes/v10/_data rw - tmpfs tmpfs rw\n")
    assert mounts_under("/var/lib/berth/volumes/v1", str(info)) == ["/var/lib/berth/volumes/v1/_data"]
    assert mounts_under("/var/lib/berth/volumes/with space/_data", str(info)) == [
        "/var/lib/berth/volumes/with space/_data"]
    assert mounts_under("/nowhere", str(info)) == []


MOUNTINFO = """22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
30 22 0:30 / /srv rw shared:5 - ext4 /dev/vdb rw
31 30 0:31 / /srv/slave rw master:5 - ext4 /dev/vdb rw
32 22 0:32 / /with\\040space rw shared:7 - tmpfs tmpfs rw
"""


@pytest.mark.parametrize("source,propagation,refusal", [
    ("/home/x", "rprivate", ""),
    ("/home/x", "rslave", "path /home/x is mounted on / but it is not a shared or slave mount"),
    ("/home/x", "shared", "path /home/x is mounted on / but it is not a shared mount"),
    ("/srv/data", "rshared", ""),
    ("/srv/data", "slave", ""),
    ("/srv/slave/x", "rslave", ""),
    ("/srv/slave/x", "rshared", "path /srv/slave/x is mounted on /srv/slave but it is not a shared mount"),
    ("/srvx", "rshared", "path /srvx is mounted on / but it is not a shared mount"),
    ("/with space/d", "rshared", ""),
])
def test_propagation_refusal(source: str, propagation: str, refusal: str) -> None:
    assert propagation_refusal(MOUNTINFO, source, propagation) == refusal


# --------------------------------------------------------------------------- #
# berth's own --mount flag: the CSV the CLI turns into a Mounts entry, which the daemon then checks


@pytest.mark.parametrize("flag,want", [
    ("type=bind,source=/h,target=/c,readonly", {"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True}),
    ("src=v1,dst=/c,volume-nocopy,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-label=a=b",
     {"Type": "volume", "Source": "v1", "Target": "/c", "VolumeOptions": {
         "NoCopy": True, "DriverConfig": {"Options": {"type": "tmpfs", "device": "tmpfs"}}, "Labels": {"a": "b"}}}),
    ("type=bind,src=/h,destination=/c,bind-propagation=rshared,ro=false",
     {"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": False, "BindOptions": {"Propagation": "rshared"}}),
    ("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777",
     {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o1777}}),
    ('type=bind,"source=/with,comma",target=/c', {"Type": "bind", "Source": "/with,comma", "Target": "/c"}),
])
def test_cli_mount_flag(flag: str, want: dict) -> None:
    got = parse_mount_flag(flag)
    assert got == want
    parse_api_mount(got)  # and the daemon takes it


@pytest.mark.parametrize("flag,words", [
    ("type=bind,source=/h", "target is required"),
    ("type=bind,source,target=/c", "must be a key=value pair"),
    ("type=bind,colour=red,target=/c", "unexpected key 'colour'"),
    ("type=tmpfs,target=/t,tmpfs-mode=rwx", "tmpfs-mode"),
    ("type=bind,source=/h,target=/c,readonly=maybe", "invalid value for readonly"),
])
def test_cli_mount_flag_refused(flag: str, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        parse_mount_flag(flag)
