"""Platform parsing, normalisation, matching and choice from an image index."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument, NotImplemented_
from berth.oci import platform as plat
from berth.oci.platform import Platform

L = "linux"


@pytest.mark.parametrize("text, want", [
    ("linux/amd64", Platform(L, "amd64")),
    ("amd64", Platform(L, "amd64")),
    ("x86_64", Platform(L, "amd64")),
    ("linux/x86-64", Platform(L, "amd64")),
    ("linux/amd64/v1", Platform(L, "amd64")),
    ("linux/amd64/v3", Platform(L, "amd64", "v3")),
    ("linux/arm64", Platform(L, "arm64")),
    ("linux/arm64/v8", Platform(L, "arm64")),
    ("aarch64", Platform(L, "arm64")),
    ("arm64v8", Platform(L, "arm64")),
    ("linux/arm64/v9", Platform(L, "arm64", "v9")),
    ("linux/arm", Platform(L, "arm", "v7")),
    ("linux/arm/v7", Platform(L, "arm", "v7")),
    ("linux/arm/v6", Platform(L, "arm", "v6")),
    ("armhf", Platform(L, "arm", "v7")),
    ("armel", Platform(L, "arm", "v6")),
    ("linux/armhf", Platform(L, "arm", "v7")),
    ("i386", Platform(L, "386")),
    ("i686", Platform(L, "386")),
    ("linux/386", Platform(L, "386")),
    ("ppc64el", Platform(L, "ppc64le")),
    ("linux/s390x", Platform(L, "s390x")),
    ("LINUX/ARM64", Platform(L, "arm64")),
    (" linux/riscv64 ", Platform(L, "riscv64")),
    ("windows/amd64", Platform("windows", "amd64")),
])
def test_parse(text: str, want: Platform) -> None:
    assert plat.parse(text) == want


def test_parse_lone_os_means_this_host() -> None:
    assert plat.parse("linux") == plat.host()


@pytest.mark.parametrize("text, says", [
    ("", "os/arch"),
    ("/", "os/arch"),
    ("linux/", "os/arch"),
    ("linux/amd64/v2/x", "os/arch"),
    ("linux amd64", "os/arch"),
    ("linux/amd64:latest", "os/arch"),
    ("beos/amd64", "unknown operating system 'beos'"),
    ("linux/z80", "unknown architecture 'z80'"),
    ("frobnicate", "unknown architecture 'frobnicate'"),
])
def test_parse_junk(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        plat.parse(text)
    assert says in str(err.value)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize("p, text", [
    (Platform(L, "arm64"), "linux/arm64"),
    (Platform(L, "arm", "v7"), "linux/arm/v7"),
    (Platform(L, "amd64", ""), "linux/amd64"),
])
def test_str(p: Platform, text: str) -> None:
    assert str(p) == text
    assert plat.parse(text) == p


@pytest.mark.parametrize("machine, want", [
    ("x86_64", Platform(L, "amd64")),
    ("aarch64", Platform(L, "arm64")),
    ("arm64", Platform(L, "arm64")),
    ("armv7l", Platform(L, "arm", "v7")),
    ("armv6l", Platform(L, "arm", "v6")),
    ("armv8l", Platform(L, "arm", "v8")),
    ("i686", Platform(L, "386")),
    ("ppc64le", Platform(L, "ppc64le")),
    ("s390x", Platform(L, "s390x")),
    ("riscv64", Platform(L, "riscv64")),
])
def test_from_uname(machine: str, want: Platform) -> None:
    assert plat.from_uname(machine) == want


def test_host_round_trips_through_uname() -> None:
    import os

    assert plat.uname_machine(plat.host()) == os.uname().machine


@pytest.mark.parametrize("wanted, candidate, ok", [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/arm64", False),
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/arm/v7", "linux/arm/v6", True),      # older variant runs on a newer core
    ("linux/arm/v6", "linux/arm/v7", False),
    ("linux/arm/v7", "linux/arm", True),
    ("linux/amd64/v3", "linux/amd64", True),
    ("linux/amd64", "linux/amd64/v3", False),
    ("linux/arm64/v9", "linux/arm64", True),
    ("windows/amd64", "linux/amd64", False),
    ("linux/arm64", "linux/arm/v7", False),
])
def test_matches(wanted: str, candidate: str, ok: bool) -> None:
    assert plat.matches(plat.parse(wanted), plat.parse(candidate)) is ok


def test_matches_normalises_raw_values() -> None:
    assert plat.matches(Platform(L, "aarch64"), Platform(L, "arm64", "v8"))
    assert plat.matches(Platform(L, "x86_64"), Platform("", "amd64"))


def _desc(digest: str, os_: str, arch: str, variant: str | None = None) -> dict:
    p = {"os": os_, "architecture": arch}
    if variant is not None:
        p["variant"] = variant
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1,
            "platform": p}


INDEX = [
    _desc("a-amd64", L, "amd64"),
    _desc("a-arm-v6", L, "arm", "v6"),
    _desc("a-arm-v7", L, "arm", "v7"),
    _desc("a-arm64", L, "arm64", "v8"),
    _desc("att-1", "unknown", "unknown"),
    _desc("a-s390x", L, "s390x"),
]


@pytest.mark.parametrize("wanted, digest", [
    ("linux/amd64", "a-amd64"),
    ("linux/arm64", "a-arm64"),
    ("linux/arm/v7", "a-arm-v7"),
    ("linux/arm/v6", "a-arm-v6"),
    ("linux/arm/v8", "a-arm-v7"),   # no v8 build: the newest compatible one
    ("linux/s390x", "a-s390x"),
    ("linux/amd64/v2", "a-amd64"),
    ("linux/ppc64le", None),
    ("linux/arm/v5", None),
])
def test_choose(wanted: str, digest: str | None) -> None:
    got = plat.choose(plat.parse(wanted), INDEX)
    assert (got["digest"] if got else None) == digest


def test_choose_prefers_exact_variant_whatever_the_order() -> None:
    index = [_desc("v6", L, "arm", "v6"), _desc("v7", L, "arm", "v7")]
    assert plat.choose(plat.parse("linux/arm/v7"), index)["digest"] == "v7"  # type: ignore[index]
    assert plat.choose(plat.parse("linux/arm/v7"), index[::-1])["digest"] == "v7"  # type: ignore[index]


def test_choose_skips_attestations_and_entries_without_platform() -> None:
    index = [{"digest": "no-platform"}, _desc("att", "unknown", "unknown"),
             {"digest": "empty", "platform": {}}, _desc("real", L, "amd64")]
    assert plat.choose(plat.parse("linux/amd64"), index)["digest"] == "real"  # type: ignore[index]
    assert plat.available(index) == [Platform(L, "amd64")]


def test_choose_ties_keep_index_order() -> None:
    index = [_desc("first", L, "amd64"), _desc("second", L, "amd64")]
    assert plat.choose(plat.parse("amd64"), index)["digest"] == "first"  # type: ignore[index]


def test_available_dedupes_and_normalises() -> None:
    assert plat.available(INDEX + [_desc("again", L, "aarch64")]) == [
        Platform(L, "amd64"), Platform(L, "arm", "v6"), Platform(L, "arm", "v7"),
        Platform(L, "arm64"), Platform(L, "s390x")]


def test_of_config() -> None:
    assert plat.of_config({"os": "linux", "architecture": "arm", "variant": "v7"}) == Platform(L, "arm", "v7")
    assert plat.of_config({"os": "linux", "architecture": "arm64", "variant": "v8"}) == Platform(L, "arm64")
    assert plat.of_config({"os": "linux", "architecture": "amd64"}) == Platform(L, "amd64")
    with pytest.raises(InvalidArgument, match="os and architecture"):
        plat.of_config({"os": "linux"})


def test_to_dict() -> None:
    assert plat.to_dict(Platform(L, "arm", "v7")) == {"os": L, "architecture": "arm", "variant": "v7"}
    assert plat.to_dict(Platform(L, "amd64")) == {"os": L, "architecture": "amd64"}


def test_mismatch_message_names_everything() -> None:
    msg = plat.mismatch_message("busybox:latest", plat.parse("linux/s390x"),
                                [Platform(L, "amd64"), Platform(L, "arm64")],
                                host_platform=Platform(L, "arm64"))
    assert msg == ('image "busybox:latest" has no variant for linux/s390x; it is available for '
                   "linux/amd64, linux/arm64: run with --platform linux/arm64 (or pull it with --platform)")


def test_mismatch_message_suggests_first_when_host_is_what_failed() -> None:
    msg = plat.mismatch_message("app:1", Platform(L, "x86_64"), [Platform(L, "aarch64"), Platform(L, "arm", "v7")],
                                host_platform=Platform(L, "amd64"))
    assert "no variant for linux/amd64" in msg
    assert "available for linux/arm64, linux/arm/v7" in msg
    assert "--platform linux/arm64 " in msg


def test_mismatch_message_without_platforms() -> None:
    msg = plat.mismatch_message("x:1", Platform(L, "amd64"), [], host_platform=Platform(L, "amd64"))
    assert 'image "x:1"' in msg and "linux/amd64" in msg and "--platform" in msg


@pytest.mark.parametrize("text, machine, qemu", [
    ("linux/arm64", "aarch64", "aarch64"),
    ("linux/amd64", "x86_64", "x86_64"),
    ("linux/arm/v7", "armv7l", "arm"),
    ("linux/arm/v6", "armv6l", "arm"),
    ("linux/386", "i686", "i386"),
    ("linux/ppc64le", "ppc64le", "ppc64le"),
    ("linux/s390x", "s390x", "s390x"),
    ("linux/riscv64", "riscv64", "riscv64"),
])
def test_uname_and_qemu_names(text: str, machine: str, qemu: str) -> None:
    p = plat.parse(text)
    assert plat.uname_machine(p) == machine
    assert plat.qemu_user_name(p) == qemu


def test_unknown_arch_names_raise() -> None:
    with pytest.raises(NotImplemented_):
        plat.qemu_user_name(Platform(L, "wasm"))
    with pytest.raises(NotImplemented_):
        plat.uname_machine(Platform(L, "wasm"))
