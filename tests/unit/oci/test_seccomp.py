"""Unit tests for berth.oci.seccomp: the built-in allow-list and Docker-format profiles."""

from __future__ import annotations

import json

import pytest

from berth.errors import InvalidArgument
from berth.oci import seccomp
from berth.oci.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from berth.oci.seccomp import (
    ENOSYS,
    EPERM,
    blocked_syscalls,
    builtin_policy,
    default_profile,
    parse_condition,
    parse_policy,
    verdict,
)
from berth.oci.seccompprofile import (
    docker_profile,
    kernel_version,
    parse_docker_profile,
)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_THREAD_FLAGS = 0x3D0F00  # what glibc passes for pthread_create
SIGCHLD = 17

#: Refused to a default container whatever its capabilities, as in Docker 25 and later.
NEVER = ("io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key",
         "userfaultfd", "kexec_load", "kexec_file_load", "swapon", "swapoff", "create_module",
         "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "pivot_root",
         "move_pages", "berth_no_such_call")

#: Allowed to a default container (a sample that programs rely on).
EVERYDAY = ("read", "write", "openat", "close", "mmap", "execve", "fork", "vfork", "wait4", "getpid",
            "uname", "futex", "rt_sigaction", "epoll_wait", "connect", "sendto", "clock_gettime",
            "setuid", "capget", "prctl", "seccomp", "arch_prctl", "statx", "rseq", "io_setup",
            "chroot", "name_to_handle_at", "ptrace", "process_vm_readv", "socketpair", "memfd_create")

#: (capability, syscalls it unlocks) as in Docker's default profile.
CAP_GROUPS = (
    ("CAP_SYS_ADMIN", ("mount", "umount2", "unshare", "setns", "sethostname", "setdomainname", "syslog",
                       "bpf", "perf_event_open", "fsopen", "move_mount", "open_tree", "quotactl",
                       "fanotify_init", "lookup_dcookie")),
    ("CAP_SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise")),
    ("CAP_SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("CAP_SYS_TIME", ("settimeofday", "clock_settime", "stime")),
    ("CAP_SYS_BOOT", ("reboot",)),
    ("CAP_SYS_PACCT", ("acct",)),
    ("CAP_SYS_RAWIO", ("iopl", "ioperm")),
    ("CAP_SYS_NICE", ("mbind", "get_mempolicy", "set_mempolicy")),
    ("CAP_SYSLOG", ("syslog",)),
    ("CAP_SYS_TTY_CONFIG", ("vhangup",)),
    ("CAP_BPF", ("bpf",)),
    ("CAP_PERFMON", ("perf_event_open",)),
    ("CAP_DAC_READ_SEARCH", ("open_by_handle_at",)),
)

NO_CHROOT = tuple(c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT")


def test_shape() -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == EPERM
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in profile["syscalls"]:
        assert rule["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO")
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
        for arg in rule.get("args", []):
            assert set(arg) == {"index", "value", "valueTwo", "op"}
    json.dumps(profile)  # JSON-ready


def test_profile_is_cached_and_fresh() -> None:
    assert builtin_policy() is builtin_policy()
    a, b = default_profile(DEFAULT_CAPABILITIES), default_profile(DEFAULT_CAPABILITIES)
    a["syscalls"][0]["names"].append("x")
    assert "x" not in b["syscalls"][0]["names"]  # callers may mutate what they get


@pytest.mark.parametrize("name", NEVER)
def test_refused_even_with_every_capability(name: str) -> None:
    assert verdict(default_profile(DEFAULT_CAPABILITIES), name) == EPERM
    assert verdict(default_profile(ALL_CAPABILITIES), name) == EPERM


@pytest.mark.parametrize("name", EVERYDAY)
def test_everyday_calls_allowed(name: str) -> None:
    assert verdict(default_profile(DEFAULT_CAPABILITIES), name) == "allow"


@pytest.mark.parametrize(("cap", "names"), CAP_GROUPS)
def test_capability_groups(cap: str, names: tuple[str, ...]) -> None:
    without = default_profile(NO_CHROOT)
    with_cap = default_profile((*NO_CHROOT, cap))
    for name in names:
        assert verdict(without, name) == EPERM, name
        assert verdict(with_cap, name) == "allow", name


def test_chroot_follows_sys_chroot() -> None:
    assert verdict(default_profile(DEFAULT_CAPABILITIES), "chroot") == "allow"
    assert verdict(default_profile(NO_CHROOT), "chroot") == EPERM


def test_short_capability_names_accepted() -> None:
    assert verdict(default_profile(("SYS_ADMIN",)), "mount") == "allow"
    with pytest.raises(InvalidArgument):
        default_profile(("CAP_NOPE",))


def test_clone_namespace_flags() -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    assert verdict(profile, "clone", (SIGCHLD,)) == "allow"
    assert verdict(profile, "clone", (CLONE_THREAD_FLAGS,)) == "allow"
    for flag in (CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWCGROUP, 0x04000000, 0x08000000, 0x20000000):
        assert verdict(profile, "clone", (flag | SIGCHLD,)) == EPERM, hex(flag)
    (rule,) = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert rule["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    assert verdict(profile, "unshare", (CLONE_NEWUSER,)) == EPERM
    assert verdict(profile, "setns") == EPERM


def test_sys_admin_lifts_clone_filter() -> None:
    profile = default_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert verdict(profile, "clone", (CLONE_NEWUSER,)) == "allow"
    assert verdict(profile, "clone3") == "allow"
    assert verdict(profile, "unshare") == "allow"
    assert not any(r["names"] == ["clone"] and "args" in r for r in profile["syscalls"])


def test_clone3_answers_enosys() -> None:
    assert verdict(default_profile(DEFAULT_CAPABILITIES), "clone3") == ENOSYS


def test_runsc_lets_clone3_through_to_gvisor() -> None:
    # runsc answers every errno rule with EPERM; gVisor itself answers clone3 with ENOSYS.
    runsc = default_profile(DEFAULT_CAPABILITIES, runtime="runsc")
    assert verdict(runsc, "clone3") == "allow"
    assert verdict(runsc, "clone", (CLONE_NEWUSER,)) == EPERM
    assert [r for r in runsc["syscalls"] if r["action"] != "SCMP_ACT_ALLOW"] == []
    assert verdict(default_profile(DEFAULT_CAPABILITIES, runtime="other"), "clone3") == EPERM


def test_personality_values() -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert verdict(profile, "personality", (value,)) == "allow", hex(value)
    for value in (0x0040000, 0x0400000, 0x1, 0x100000000 | 0x8):  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC
        assert verdict(profile, "personality", (value,)) == EPERM, hex(value)


def test_socket_families() -> None:
    profile = default_profile(DEFAULT_CAPABILITIES)
    for family in (1, 2, 10, 16, 17, 39, 41, 44):  # unix, inet, inet6, netlink, packet, nfc, ...
        assert verdict(profile, "socket", (family,)) == "allow", family
    for family in (38, 40):  # AF_ALG, AF_VSOCK
        assert verdict(profile, "socket", (family,)) == EPERM, family


def test_arch_groups() -> None:
    amd = default_profile(DEFAULT_CAPABILITIES, "x86_64")
    arm = default_profile(DEFAULT_CAPABILITIES, "arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert verdict(amd, "arch_prctl") == "allow" and verdict(amd, "modify_ldt") == "allow"
    assert verdict(arm, "arch_prctl") == EPERM
    assert verdict(arm, "set_tls") == "allow" and verdict(amd, "set_tls") == EPERM
    with pytest.raises(InvalidArgument):
        default_profile(DEFAULT_CAPABILITIES, "s390x")


def test_blocked_syscalls_lists_conditional_names() -> None:
    blocked = blocked_syscalls(NO_CHROOT)
    assert "mount" in blocked and "chroot" in blocked and "clone3" in blocked
    assert "read" not in blocked and "clone" not in blocked
    assert "mount" not in blocked_syscalls(ALL_CAPABILITIES)


def test_no_name_in_two_unconditional_groups() -> None:
    seen: set[str] = set()
    for group in builtin_policy().groups:
        if group.if_caps or group.unless_caps or group.arches or group.args or group.errno:
            continue
        assert not seen & set(group.names)
        seen |= set(group.names)
    assert len(seen) > 300


@pytest.mark.parametrize(("text", "want"), [
    ("0 == 8", [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]),
    ("1 >= 0x10", [{"index": 1, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_GE"}]),
    ("0 == 010", [{"index": 0, "value": 10, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]),
    ("0 & 0xff == 3", [{"index": 0, "value": 255, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]),
    ("0 < 5 && 2 != 1", [{"index": 0, "value": 5, "valueTwo": 0, "op": "SCMP_CMP_LT"},
                         {"index": 2, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_NE"}]),
])
def test_parse_condition(text: str, want: list[dict]) -> None:
    assert list(parse_condition(text)) == want


@pytest.mark.parametrize("text", ["6 == 1", "0 = 1", "0 & 1 != 0", "x == 1", "0 == 0x1ffffffffffffffff", ""])
def test_parse_condition_errors(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_condition(text)


# --- Docker-format profiles ---

CUSTOM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"name": "chmod", "action": "SCMP_ACT_ERRNO", "comment": "legacy single name"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ERRNO", "excludes": {"arches": ["amd64"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "4.8"}},
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xFF, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
    ],
}


def _convert(doc: dict, caps: tuple[str, ...] = DEFAULT_CAPABILITIES, arch: str = "amd64",
             kernel: tuple[int, int] | None = (6, 1)) -> dict:
    section = docker_profile(parse_docker_profile(json.dumps(doc)), caps, arch, kernel)
    assert section is not None
    return section


def test_docker_profile_conversion() -> None:
    section = _convert(CUSTOM)
    assert section["defaultAction"] == "SCMP_ACT_ALLOW" and "defaultErrnoRet" not in section
    assert section["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [r["names"] for r in section["syscalls"]]
    assert names == [["mkdir", "mkdirat"], ["chmod"], ["unshare"], ["ptrace"], ["personality"]]
    assert section["syscalls"][0] == {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    assert section["syscalls"][-1]["args"] == [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]
    assert verdict(section, "mkdir") == 13 and verdict(section, "chmod") == EPERM
    assert verdict(section, "read") == "allow"


def test_docker_profile_conditions() -> None:
    admin = _convert(CUSTOM, (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"), "arm64", (4, 4))
    names = [r["names"][0] for r in admin["syscalls"]]
    assert "mount" in names and "unshare" not in names          # includes / excludes caps
    assert "set_tls" in names and "arch_prctl" in names         # includes / excludes arches
    assert "ptrace" not in names                                # minKernel 4.8 > 4.4
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_docker_profile_plain_architectures_and_extras() -> None:
    doc = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "architectures": ["SCMP_ARCH_X86_64"],
           "flags": ["SECCOMP_FILTER_FLAG_LOG"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
           "someUnknownKey": 1}
    section = _convert(doc)
    assert section["defaultErrnoRet"] == 38 and section["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert section["architectures"] == ["SCMP_ARCH_X86_64"]


def test_empty_profile_means_no_filter() -> None:
    assert parse_docker_profile("{}") is None
    assert docker_profile(None, DEFAULT_CAPABILITIES) is None


@pytest.mark.parametrize(("doc", "words"), [
    ("not json", "Decoding seccomp profile failed"),
    ("[1]", "JSON object"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction must be one of"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "seccomp agent"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "both 'architectures' and 'archMap'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}, "not a seccomp architecture"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"subArchitectures": []}]}, "archMap[0]"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["NOPE"]}, "unknown flag"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/x.sock"}, "listenerPath"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {"read": 1}}, "syscalls must be an array"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": ["read"]}, "syscalls[0] must be an object"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "names no syscall"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]},
     "syscalls[0].names must be an array"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]},
     "both 'name' and 'names'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["Read!"], "action": "SCMP_ACT_ALLOW"}]},
     "not a syscall name"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}, "syscalls[0].action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "errnoRet": 1}]}, "errnoRet is only meaningful"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "syscalls[0].args[0].index"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 0, "value": 1, "op": "EQ"}]}]},
     "syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 0, "value": 2 ** 64,
                                                                 "op": "SCMP_CMP_EQ"}]}]},
     "syscalls[0].args[0].value"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"minKernel": "4"}}]}, "minKernel"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"caps": ["CAP_FLY"]}}]}, "unknown capability"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "excludes": ["x"]}]}, "syscalls[0].excludes"),
    ("[" * 100000, "Decoding seccomp profile failed"),
])
def test_docker_profile_errors(doc: object, words: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(InvalidArgument) as err:
        parse_docker_profile(text)
    assert words in str(err.value)
    assert str(err.value).startswith(("invalid seccomp profile: ", "Decoding seccomp profile failed"))


def test_docker_profile_bounds() -> None:
    many = {"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}] * 5000}
    with pytest.raises(InvalidArgument, match="at most"):
        parse_docker_profile(json.dumps(many))


def test_kernel_version() -> None:
    assert kernel_version("6.18.44-fc-v1300") == (6, 18)
    assert kernel_version("5.10") == (5, 10)
    assert kernel_version("weird") is None


def test_policy_shape_is_checked() -> None:
    good = {"format": "berth-seccomp-1", "refuse": "EPERM", "architectures": {"amd64": ["SCMP_ARCH_X86_64"]},
            "groups": [{"names": ["read"]}]}
    assert parse_policy(good).groups[0].names == ("read",)
    for bad in ({**good, "format": "other"}, {**good, "groups": [{"names": ["read"], "if_cap": ["CAP_CHOWN"]}]},
                {**good, "groups": [{"names": ["Read"]}]}, {**good, "refuse": "EWHAT"},
                {**good, "groups": [{"names": ["read"], "args": ["0 ~ 1"]}]}):
        with pytest.raises(InvalidArgument):
            parse_policy(bad)


# --- the host kernel's ABIs ------------------------------------------------------------------


X86_CONFIG = "CONFIG_IA32_EMULATION=y\n# CONFIG_X86_X32_ABI is not set\n"


def test_kernel_abis_follow_the_build_config():
    assert seccomp.kernel_abis("x86_64", X86_CONFIG) == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86")
    assert seccomp.kernel_abis("amd64", X86_CONFIG + "CONFIG_X86_X32_ABI=y\n") == (
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    assert seccomp.kernel_abis("amd64", "# CONFIG_IA32_EMULATION is not set\n") == ("SCMP_ARCH_X86_64",)
    assert seccomp.kernel_abis("aarch64", "CONFIG_COMPAT=y\n") == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert seccomp.kernel_abis("arm64", "") == ("SCMP_ARCH_AARCH64",)


def test_kernel_abis_unknown_without_a_config():
    assert seccomp.kernel_abis("amd64", None) is None


def test_kernel_abis_honour_the_ia32_command_line():
    disabled_by_default = X86_CONFIG + "CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y\n"
    assert "SCMP_ARCH_X86" not in seccomp.kernel_abis("amd64", disabled_by_default)
    assert "SCMP_ARCH_X86" in seccomp.kernel_abis("amd64", disabled_by_default, "quiet ia32_emulation=1")
    assert "SCMP_ARCH_X86" not in seccomp.kernel_abis("amd64", X86_CONFIG, "ia32_emulation=0")


def test_default_profile_lists_only_the_kernels_abis():
    full = seccomp.default_profile([], "amd64")
    assert full["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    trimmed = seccomp.default_profile([], "amd64", abis=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"))
    assert trimmed["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert trimmed["syscalls"] == full["syscalls"]
    assert seccomp.default_profile([], "amd64", abis=())["architectures"] == ["SCMP_ARCH_X86_64"]  # native always
