"""Seccomp: the built-in policy and Docker-format profiles -> the OCI `linux.seccomp` section.

Strategy: an allow-list. Everything not allowed fails with EPERM. The policy is
data (`seccomp_default.json` beside this module, berth's own format, the facts
of Docker's default profile): groups of syscall names, each with an answer
(allow, or an errno) and optional conditions on the container's capabilities,
the host architecture, the OCI runtime, and the syscall's arguments. This
module turns the data, given the container's capabilities, the host
architecture and the runtime, into the OCI section runc and runsc read (runsc
with --oci-seccomp, which applies it inside the sandbox; runsc 2022 answers
every errno rule with EPERM, hence the one runtime-specific group, clone3). A user's own profile in Docker's format
(`--security-opt seccomp=profile.json`) is berth.oci.seccompprofile's.

Pure: no I/O apart from reading the package's own data file once (cached); the
architecture and kernel release are parameters. Names the installed libseccomp
does not know are skipped by runc 1.1 (and syscalls newer than every name in
the filter answer ENOSYS there), so newer names can be listed safely.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.capabilities import ALL, normalize

EPERM = 1
ENOSYS = 38
ERRNO_NAMES = {"EPERM": EPERM, "ENOSYS": ENOSYS, "EACCES": 13, "EINVAL": 22}

#: seccomp architectures per Go-style architecture name.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}
_ARCH_ALIASES = {"x86_64": "amd64", "aarch64": "arm64"}
#: Docker's "native" name (used in includes/excludes.arches) -> the SCMP_ARCH it maps to.
NATIVE_TO_SCMP = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}

_OPS = {"==": "SCMP_CMP_EQ", "!=": "SCMP_CMP_NE", "<": "SCMP_CMP_LT", "<=": "SCMP_CMP_LE",
        ">": "SCMP_CMP_GT", ">=": "SCMP_CMP_GE"}
_CONDITION = re.compile(r"\s*([0-5])\s*(?:&\s*(0x[0-9a-fA-F]+|[0-9]+)\s*(==)|(==|!=|<=|>=|<|>))"
                        r"\s*(0x[0-9a-fA-F]+|[0-9]+)\s*")
SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
U64 = (1 << 64) - 1


def arch_key(arch: str) -> str:
    key = _ARCH_ALIASES.get(arch, arch)
    if key not in ARCHITECTURES:
        raise InvalidArgument(f"unsupported seccomp architecture: {arch!r}")
    return key


def held_capabilities(capabilities: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize(c) for c in capabilities) - {ALL}


# --- the built-in policy ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """One group of the built-in policy."""

    names: tuple[str, ...]
    errno: int | None = None                 # None = allow
    if_caps: frozenset[str] = frozenset()    # every one must be held
    unless_caps: frozenset[str] = frozenset()  # none may be held
    arches: tuple[str, ...] = ()             # () = every architecture
    args: tuple[tuple[dict[str, Any], ...], ...] = ()  # alternatives; () = no argument filter
    runtimes: tuple[str, ...] = ()           # () = every OCI runtime

    def applies(self, held: frozenset[str], arch: str, runtime: str = "runc") -> bool:
        if self.arches and arch not in self.arches:
            return False
        if self.runtimes and runtime not in self.runtimes:
            return False
        return self.if_caps <= held and not self.unless_caps & held


@dataclass(frozen=True, slots=True)
class Policy:
    refuse: int
    architectures: dict[str, tuple[str, ...]]
    groups: tuple[Group, ...]


_GROUP_KEYS = frozenset({"about", "names", "answer", "if_caps", "unless_caps", "arches", "args", "runtimes"})


def parse_condition(text: str) -> tuple[dict[str, Any], ...]:
    """`"0 < 38"`, `"0 & 0x7e020000 == 0"` (joined by `&&` for several) -> OCI arg rules.

    Raises:
        InvalidArgument: not one of the forms above.
    """
    out: list[dict[str, Any]] = []
    for part in text.split("&&"):
        m = _CONDITION.fullmatch(part)
        if not m:
            raise InvalidArgument(f"invalid seccomp argument condition: {part.strip()!r}")
        index, mask, _, op, value = m.groups()
        first, second = (_number(mask), _number(value)) if mask is not None else (_number(value), 0)
        if first > U64 or second > U64:
            raise InvalidArgument(f"seccomp argument value out of range: {part.strip()!r}")
        out.append({"index": int(index), "value": first, "valueTwo": second,
                    "op": "SCMP_CMP_MASKED_EQ" if mask is not None else _OPS[op]})
    return tuple(out)


def _number(text: str) -> int:
    return int(text, 16) if text.startswith(("0x", "0X")) else int(text, 10)


def _errno(name: str) -> int:
    if name not in ERRNO_NAMES:
        raise InvalidArgument(f"unknown errno name in the seccomp policy: {name!r}")
    return ERRNO_NAMES[name]


def parse_policy(doc: Any) -> Policy:
    """The built-in policy's JSON document -> Policy (checked).

    Raises:
        InvalidArgument: the document does not have the expected shape.
    """
    if not isinstance(doc, dict) or doc.get("format") != "berth-seccomp-1":
        raise InvalidArgument("the seccomp policy is not in the berth-seccomp-1 format")
    groups = []
    for raw in doc["groups"]:
        unknown = set(raw) - _GROUP_KEYS
        if unknown:
            raise InvalidArgument(f"unknown keys in a seccomp policy group: {sorted(unknown)}")
        names = tuple(raw["names"])
        bad = [n for n in names if not isinstance(n, str) or not SYSCALL_NAME.fullmatch(n)]
        if bad or not names:
            raise InvalidArgument(f"invalid syscall names in the seccomp policy: {bad}")
        answer = raw.get("answer", "allow")
        groups.append(Group(
            names=names,
            errno=None if answer == "allow" else _errno(answer),
            if_caps=frozenset(normalize(c) for c in raw.get("if_caps", ())),
            unless_caps=frozenset(normalize(c) for c in raw.get("unless_caps", ())),
            arches=tuple(arch_key(a) for a in raw.get("arches", ())),
            args=tuple(parse_condition(c) for c in raw.get("args", ())),
            runtimes=tuple(raw.get("runtimes", ())),
        ))
    arches = {arch_key(k): tuple(v) for k, v in doc["architectures"].items()}
    return Policy(refuse=_errno(doc["refuse"]), architectures=arches, groups=tuple(groups))


@functools.lru_cache(maxsize=1)
def builtin_policy() -> Policy:
    """The package's seccomp_default.json, parsed once."""
    text = importlib.resources.files("berth.oci").joinpath("seccomp_default.json").read_text(encoding="utf-8")
    return parse_policy(json.loads(text))


def kernel_abis(arch: str, config: str | None, cmdline: str = "") -> tuple[str, ...] | None:
    """The seccomp architectures of *arch* the host's kernel can run, from its build config; None = unknown.

    A filter needs no branch for an ABI the kernel cannot run (x32 is rarely built in, and
    every listed ABI costs runc a few milliseconds per container start to compile).

    Args:
        arch: "amd64" or "arm64" (or "x86_64", "aarch64").
        config: the text of /proc/config.gz, or None when the kernel does not publish it.
        cmdline: /proc/cmdline (ia32_emulation= overrides the build default).
    """
    key = arch_key(arch)
    if config is None:
        return None
    opts = {k: v for k, _, v in (line.partition("=") for line in config.splitlines()
                                 if line.startswith("CONFIG_"))}
    words = cmdline.split()
    if key == "amd64":
        ia32 = opts.get("CONFIG_IA32_EMULATION") == "y"
        if opts.get("CONFIG_IA32_EMULATION_DEFAULT_DISABLED") == "y":
            ia32 = ia32 and any(w in ("ia32_emulation=1", "ia32_emulation=y", "ia32_emulation=on") for w in words)
        if any(w in ("ia32_emulation=0", "ia32_emulation=n", "ia32_emulation=off") for w in words):
            ia32 = False
        found = ["SCMP_ARCH_X86_64"] + (["SCMP_ARCH_X86"] if ia32 else []) + \
            (["SCMP_ARCH_X32"] if opts.get("CONFIG_X86_X32_ABI") == "y" else [])
    else:
        found = ["SCMP_ARCH_AARCH64"] + (["SCMP_ARCH_ARM"] if opts.get("CONFIG_COMPAT") == "y" else [])
    return tuple(found)


def default_profile(capabilities: Iterable[str], arch: str = "amd64", runtime: str = "runc",
                    abis: Collection[str] | None = None) -> dict[str, Any]:
    """Return the `linux.seccomp` section for a container with *capabilities*.

    Args:
        capabilities: the container's capabilities (as capabilities.effective returns).
        arch: "amd64" or "arm64" (also "x86_64", "aarch64"); the caller knows the host.
        runtime: the OCI runtime that applies the filter ("runc" or "runsc"): a few
            groups differ where a runtime does not honour a rule's errnoRet.
        abis: the architectures the host's kernel runs (kernel_abis); None = all of *arch*'s.
            The native one is always listed.

    Returns:
        defaultAction SCMP_ACT_ERRNO (EPERM), the architectures, and one rule per
        applicable group (one per argument alternative for filtered groups).

    Raises:
        berth.errors.InvalidArgument: an unsupported arch or unknown capability name.
    """
    key = arch_key(arch)
    held = held_capabilities(capabilities)
    policy = builtin_policy()
    rules: list[dict[str, Any]] = []
    for group in policy.groups:
        if not group.applies(held, key, runtime):
            continue
        base: dict[str, Any] = {"names": list(group.names)}
        if group.errno is None:
            base["action"] = "SCMP_ACT_ALLOW"
        else:
            base["action"], base["errnoRet"] = "SCMP_ACT_ERRNO", group.errno
        if not group.args:
            rules.append(base)
        for alternative in group.args:
            rules.append({**base, "args": [dict(a) for a in alternative]})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": policy.refuse,
        "architectures": [a for i, a in enumerate(policy.architectures[key]) if i == 0 or abis is None or a in abis],
        "syscalls": rules,
    }


def verdict(profile: dict[str, Any], name: str, args: tuple[int, ...] = ()) -> str | int:
    """What *profile* (an OCI section) answers to syscall *name* with *args*: "allow" or an errno.

    A model of the filter for tests and explanations: rules are tried in order and
    the first whose names and conditions match decides (libseccomp gives the
    same answer when the rules of one syscall do not overlap, as in berth's policy).
    """
    values = args + (0,) * (6 - len(args))
    for rule in profile["syscalls"]:
        if name not in rule["names"]:
            continue
        if all(_compare(values[a["index"]], a["op"], a["value"], a.get("valueTwo", 0)) for a in rule.get("args", ())):
            return _answer(rule["action"], rule.get("errnoRet"))
    return _answer(profile["defaultAction"], profile.get("defaultErrnoRet"))


def _answer(action: str, errno: int | None) -> str | int:
    if action == "SCMP_ACT_ALLOW":
        return "allow"
    if action == "SCMP_ACT_ERRNO":
        return EPERM if errno is None else errno
    return action


def _compare(arg: int, op: str, value: int, two: int) -> bool:
    arg &= U64
    return {
        "SCMP_CMP_EQ": arg == value, "SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value,
        "SCMP_CMP_LE": arg <= value, "SCMP_CMP_GT": arg > value, "SCMP_CMP_GE": arg >= value,
        "SCMP_CMP_MASKED_EQ": arg & value == two,
    }[op]


def blocked_syscalls(capabilities: Iterable[str], arch: str = "amd64", runtime: str = "runc") -> list[str]:
    """Names the built-in policy mentions that are not unconditionally allowed for *capabilities*.

    Raises:
        berth.errors.InvalidArgument: an unknown capability name.
    """
    profile = default_profile(capabilities, arch, runtime)
    mentioned = {n for g in builtin_policy().groups for n in g.names}
    return sorted(n for n in mentioned if verdict(profile, n) != "allow")
