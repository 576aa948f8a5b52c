"""binfmt_misc: entry parsing, register lines, the ELF table, and the registration plan (pure parts)."""

from __future__ import annotations

import shutil

import pytest

from berth.errors import InvalidArgument
from berth.host import binfmt
from berth.host.binfmt import Entry
from berth.oci import platform as plat

# What Linux 6.x shows in /proc/sys/fs/binfmt_misc/<name>.
KERNEL_TEXT = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""

# Debian 12's /usr/lib/binfmt.d/qemu-*.conf (qemu-user-static 1:7.2): magic and mask fields.
DEBIAN_CONF = {
    "aarch64": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "arm": (r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
            r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
    "riscv64": (r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
}


def _unescape(text: str) -> bytes:
    return bytes(int(h, 16) for h in text.split(r"\x")[1:])


def test_parse_entry_kernel_text() -> None:
    e = binfmt.parse_entry(KERNEL_TEXT, "berth-qemu-aarch64")
    assert e == Entry(name="berth-qemu-aarch64", enabled=True,
                      interpreter="/usr/libexec/qemu-binfmt/aarch64-binfmt-P", flags="POF", offset=0,
                      magic=binfmt.ELF_FORMATS["aarch64"].magic(), mask=binfmt.ELF_FORMATS["aarch64"].mask())


def test_parse_entry_disabled_no_flags_no_mask() -> None:
    text = "disabled\ninterpreter /usr/bin/qemu-arm\nflags: \noffset 0\nmagic 7f454c46\n"
    e = binfmt.parse_entry(text, "qemu-arm")
    assert (e.enabled, e.flags, e.magic, e.mask) == (False, "", b"\x7fELF", b"")


def test_parse_entry_extension() -> None:
    e = binfmt.parse_entry("enabled\ninterpreter /usr/bin/wine\nflags: \nextension .exe\n", "wine")
    assert e.extension == ".exe" and e.magic == b""
    assert not binfmt.handles(e, binfmt.ELF_FORMATS["x86_64"])


@pytest.mark.parametrize("text", ["", "maybe\ninterpreter /x\n", "enabled\nflags: F\n",
                                  "enabled\ninterpreter /x\nmagic zz\n"])
def test_parse_entry_junk(text: str) -> None:
    with pytest.raises(InvalidArgument):
        binfmt.parse_entry(text, "junk")


@pytest.mark.parametrize("arch", sorted(DEBIAN_CONF))
def test_table_agrees_with_debian(arch: str) -> None:
    magic, mask = DEBIAN_CONF[arch]
    fmt = binfmt.ELF_FORMATS[arch]
    assert fmt.magic() == _unescape(magic)
    assert fmt.mask() == _unescape(mask)


def test_table_big_endian_s390x() -> None:
    fmt = binfmt.ELF_FORMATS["s390x"]
    assert fmt.magic()[4:6] == b"\x02\x02"
    assert fmt.magic()[16:] == b"\x00\x02\x00\x16"
    assert fmt.mask()[16:] == b"\xff\xfe\xff\xff"


def test_every_qemu_name_the_platform_module_knows_has_a_table_entry_or_is_deliberately_absent() -> None:
    for text in ("linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7", "linux/ppc64le",
                 "linux/s390x", "linux/riscv64"):
        assert plat.qemu_user_name(plat.parse(text)) in binfmt.ELF_FORMATS


def test_register_line() -> None:
    line = binfmt.register_line("berth-qemu-aarch64", "aarch64", "/usr/bin/qemu-aarch64-static", "F")
    magic, mask = DEBIAN_CONF["aarch64"]
    assert line == f":berth-qemu-aarch64:M:0:{magic}:{mask}:/usr/bin/qemu-aarch64-static:F"
    assert binfmt.register_line("n", "arm", "/q").endswith(":/q:POF")


@pytest.mark.parametrize("name, arch, interp", [
    ("a:b", "aarch64", "/q"), ("a/b", "aarch64", "/q"), ("..", "aarch64", "/q"), ("", "aarch64", "/q"),
    ("n", "z80", "/q"), ("n", "aarch64", "relative/q"), ("n", "aarch64", "/q:x"),
])
def test_register_line_refuses(name: str, arch: str, interp: str) -> None:
    with pytest.raises(InvalidArgument):
        binfmt.register_line(name, arch, interp)


def _entry(name: str, arch: str = "aarch64", flags: str = "POF", enabled: bool = True,
           interpreter: str = "/usr/libexec/qemu-binfmt/aarch64-binfmt-P") -> Entry:
    fmt = binfmt.ELF_FORMATS[arch]
    return Entry(name, enabled, interpreter, flags, 0, fmt.magic(), fmt.mask())


def test_handles_only_its_architecture() -> None:
    arm64 = _entry("x")
    assert binfmt.handles(arm64, binfmt.ELF_FORMATS["aarch64"])
    assert not binfmt.handles(arm64, binfmt.ELF_FORMATS["arm"])
    assert not binfmt.handles(arm64, binfmt.ELF_FORMATS["x86_64"])


def test_handles_with_other_masks_and_offsets() -> None:
    # An entry that looks only at e_machine (offset 18) still claims aarch64 programs.
    narrow = Entry("narrow", True, "/q", "F", 18, b"\xb7\x00", b"")
    assert binfmt.handles(narrow, binfmt.ELF_FORMATS["aarch64"])
    assert not binfmt.handles(narrow, binfmt.ELF_FORMATS["riscv64"])
    # A pattern longer than the header sample is not ours to judge.
    assert not binfmt.handles(Entry("long", True, "/q", "F", 0, b"\x7fELF" * 8, b""),
                              binfmt.ELF_FORMATS["aarch64"])


def test_is_static_elf_on_real_programs() -> None:
    static = shutil.which("busybox") or "/bin/busybox"
    with open(static, "rb") as f:
        assert binfmt.is_static_elf(f.read(65536))
    with open("/bin/ls", "rb") as f:
        assert not binfmt.is_static_elf(f.read(65536))
    with pytest.raises(InvalidArgument):
        binfmt.is_static_elf(b"#!/bin/sh\n" + bytes(100))


def _ok(path: str) -> bool:
    return True


def test_plan_registers_when_nothing_is_there() -> None:
    p = binfmt.plan("aarch64", [_entry("python", "x86_64")], _ok)
    assert p == binfmt.Plan(register="berth-qemu-aarch64")


def test_plan_uses_our_fix_binary_entry() -> None:
    ours = _entry("berth-qemu-aarch64")
    assert binfmt.plan("aarch64", [ours], _ok) == binfmt.Plan(use=ours)


def test_plan_uses_debians_fix_binary_entry() -> None:
    debian = _entry("qemu-aarch64", flags="POF")
    assert binfmt.plan("aarch64", [debian], _ok) == binfmt.Plan(use=debian)


def test_plan_ignores_a_fix_binary_entry_whose_interpreter_is_gone() -> None:
    debian = _entry("qemu-aarch64", flags="F")
    assert binfmt.plan("aarch64", [debian], lambda p: False).register == "berth-qemu-aarch64"


def test_plan_puts_ours_ahead_of_an_entry_without_f() -> None:
    other = _entry("qemu-aarch64", flags="P")
    p = binfmt.plan("aarch64", [other], _ok)
    assert p.register == "berth-qemu-aarch64" and p.blockers == (other,) and p.use is None


def test_plan_re_registers_ours_under_the_other_name_when_a_blocker_exists() -> None:
    other, ours = _entry("qemu-aarch64", flags=""), _entry("berth-qemu-aarch64")
    p = binfmt.plan("aarch64", [other, ours], _ok)
    assert p == binfmt.Plan(register="berth-qemu-aarch64-2", remove_after=("berth-qemu-aarch64",),
                            blockers=(other,))
    # ... and back again next time, so ours always ends up newest without a gap.
    ours2 = _entry("berth-qemu-aarch64-2")
    p2 = binfmt.plan("aarch64", [other, ours2], _ok)
    assert p2.register == "berth-qemu-aarch64" and p2.remove_after == ("berth-qemu-aarch64-2",)


def test_plan_with_both_of_our_names_taken_reuses_a_bad_one_first() -> None:
    other = _entry("qemu-aarch64", flags="")
    good, bad = _entry("berth-qemu-aarch64"), _entry("berth-qemu-aarch64-2", flags="P")
    p = binfmt.plan("aarch64", [other, good, bad], _ok)
    assert p.remove_first == ("berth-qemu-aarch64-2",) and p.register == "berth-qemu-aarch64-2"
    assert p.remove_after == ("berth-qemu-aarch64",)


def test_plan_replaces_our_disabled_or_non_f_entry() -> None:
    disabled = _entry("berth-qemu-aarch64", enabled=False)
    p = binfmt.plan("aarch64", [disabled], _ok)
    assert p == binfmt.Plan(register="berth-qemu-aarch64-2", remove_after=("berth-qemu-aarch64",))
    old = _entry("berth-qemu-aarch64", flags="P")
    assert binfmt.plan("aarch64", [old], _ok).register == "berth-qemu-aarch64-2"


def test_plan_ignores_disabled_foreign_entries_and_other_arches() -> None:
    entries = [_entry("qemu-aarch64", flags="", enabled=False), _entry("qemu-arm", "arm", flags="")]
    assert binfmt.plan("aarch64", entries, _ok) == binfmt.Plan(register="berth-qemu-aarch64")


def test_plan_cleans_up_a_stale_second_name_when_using_ours() -> None:
    good, stale = _entry("berth-qemu-aarch64"), _entry("berth-qemu-aarch64-2", enabled=False)
    assert binfmt.plan("aarch64", [good, stale], _ok) == binfmt.Plan(use=good, remove_after=("berth-qemu-aarch64-2",))


@pytest.mark.parametrize("host, wanted, native", [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/386", True),
    ("linux/amd64", "linux/arm64", False),
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64", "linux/arm/v7", False),
    ("linux/arm/v7", "linux/arm/v6", True),
    ("linux/amd64", "linux/amd64/v3", True),    # never emulate the host's own machine
])
def test_runs_natively(host: str, wanted: str, native: bool) -> None:
    assert binfmt.runs_natively(plat.parse(wanted), plat.parse(host)) is native
