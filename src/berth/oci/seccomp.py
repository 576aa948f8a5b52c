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
(`--security-opt seccomp=profile.json`) goes through the same kind of
conversion, after a strict check of its shape so that a bad profile is a 400
at create, never a failed start.

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
_NATIVE_TO_SCMP = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64"}

_OPS = {"==": "SCMP_CMP_EQ", "!=": "SCMP_CMP_NE", "<": "SCMP_CMP_LT", "<=": "SCMP_CMP_LE",
        ">": "SCMP_CMP_GT", ">=": "SCMP_CMP_GE"}
_CONDITION = re.compile(r"\s*([0-5])\s*(?:&\s*(0x[0-9a-fA-F]+|[0-9]+)\s*(==)|(==|!=|<=|>=|<|>))"
                        r"\s*(0x[0-9a-fA-F]+|[0-9]+)\s*")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
U64 = (1 << 64) - 1


def _arch(arch: str) -> str:
    key = _ARCH_ALIASES.get(arch, arch)
    if key not in ARCHITECTURES:
        raise InvalidArgument(f"unsupported seccomp architecture: {arch!r}")
    return key


def _held(capabilities: Iterable[str]) -> frozenset[str]:
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
        bad = [n for n in names if not isinstance(n, str) or not _NAME.fullmatch(n)]
        if bad or not names:
            raise InvalidArgument(f"invalid syscall names in the seccomp policy: {bad}")
        answer = raw.get("answer", "allow")
        groups.append(Group(
            names=names,
            errno=None if answer == "allow" else _errno(answer),
            if_caps=frozenset(normalize(c) for c in raw.get("if_caps", ())),
            unless_caps=frozenset(normalize(c) for c in raw.get("unless_caps", ())),
            arches=tuple(_arch(a) for a in raw.get("arches", ())),
            args=tuple(parse_condition(c) for c in raw.get("args", ())),
            runtimes=tuple(raw.get("runtimes", ())),
        ))
    arches = {_arch(k): tuple(v) for k, v in doc["architectures"].items()}
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
    key = _arch(arch)
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
    key = _arch(arch)
    held = _held(capabilities)
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


# --- Docker-format profiles ------------------------------------------------------------------

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
           "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
ARG_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
           "SCMP_CMP_MASKED_EQ")
FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
_SCMP_ARCH = re.compile(r"SCMP_ARCH_[A-Z0-9_]{1,20}")
_KERNEL = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})")
MAX_RULES = 4096
MAX_NAMES = 16384


@dataclass(frozen=True, slots=True)
class Condition:
    """A Docker profile's includes/excludes: caps, arches (Docker's native names), minKernel."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None
    args: tuple[dict[str, Any], ...]
    includes: Condition
    excludes: Condition


@dataclass(frozen=True, slots=True)
class DockerProfile:
    """A checked Docker-format seccomp profile (before capabilities and arch are known)."""

    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    arch_map: tuple[tuple[str, tuple[str, ...]], ...]
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]


def _bad(what: str) -> InvalidArgument:
    return InvalidArgument(f"invalid seccomp profile: {what}")


def _str_list(value: Any, where: str, limit: int = MAX_NAMES) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where} must be an array of strings")
    if len(value) > limit:
        raise _bad(f"{where} has more than {limit} entries")
    return tuple(value)


def _uint(value: Any, where: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise _bad(f"{where} must be an integer from 0 to {(1 << bits) - 1}, got {value!r}")
    return value


def _action(value: Any, where: str) -> str:
    if value == "SCMP_ACT_NOTIFY":
        raise _bad(f"{where}: SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not run")
    if value not in ACTIONS:
        raise _bad(f"{where} must be one of {', '.join(ACTIONS)}, got {value!r}")
    return str(value)


def _condition(value: Any, where: str) -> Condition:
    if value is None:
        return Condition()
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object with caps, arches and minKernel")
    caps = _str_list(value.get("caps"), f"{where}.caps", 64)
    for cap in caps:
        try:
            normalize(cap)
        except InvalidArgument:
            raise _bad(f"{where}.caps: unknown capability {cap[:40]!r}") from None
    kernel = None
    if value.get("minKernel") not in (None, ""):
        m = _KERNEL.fullmatch(str(value["minKernel"])) if isinstance(value["minKernel"], str) else None
        if not m or m.groups() == ("0", "0"):
            raise _bad(f'{where}.minKernel must be "<kernel>.<major>", got {value["minKernel"]!r}')
        kernel = (int(m.group(1)), int(m.group(2)))
    return Condition(caps, _str_list(value.get("arches"), f"{where}.arches", 64), kernel)


def _arg(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object with index, value, valueTwo and op")
    op = value.get("op")
    if op not in ARG_OPS:
        raise _bad(f"{where}.op must be one of {', '.join(ARG_OPS)}, got {op!r}")
    index = value.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise _bad(f"{where}.index must be a syscall argument number from 0 to 5, got {index!r}")
    return {"index": index,
            "value": _uint(value.get("value", 0), f"{where}.value", 64),
            "valueTwo": _uint(value.get("valueTwo", 0), f"{where}.valueTwo", 64), "op": op}


def _rule(value: Any, where: str) -> Rule:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    names = _str_list(value.get("names"), f"{where}.names")
    if value.get("name"):
        if names:
            raise _bad(f"{where}: both 'name' and 'names' are given; use one")
        if not isinstance(value["name"], str):
            raise _bad(f"{where}.name must be a string")
        names = (value["name"],)
    if not names:
        raise _bad(f"{where} names no syscall")
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        raise _bad(f"{where}: not a syscall name: {bad[0][:80]!r}")
    action = _action(value.get("action"), f"{where}.action")
    errno = None if value.get("errnoRet") is None else _uint(value["errnoRet"], f"{where}.errnoRet", 32)
    if errno is not None and action not in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        raise _bad(f"{where}: errnoRet is only meaningful with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    raw_args = value.get("args") or []
    if not isinstance(raw_args, list) or len(raw_args) > 6:
        raise _bad(f"{where}.args must be an array of at most 6 conditions")
    args = tuple(_arg(a, f"{where}.args[{i}]") for i, a in enumerate(raw_args))
    return Rule(names, action, errno, args, _condition(value.get("includes"), f"{where}.includes"),
                _condition(value.get("excludes"), f"{where}.excludes"))


def parse_docker_profile(text: str) -> DockerProfile | None:
    """Check a Docker-format seccomp profile (the JSON text the docker CLI sends).

    Returns:
        The checked profile, or None when it has neither a defaultAction nor
        syscalls (Docker then applies no filter at all).

    Raises:
        InvalidArgument: not JSON, or a field of the wrong type or value (the
            message names the field).
    """
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(doc, dict):
        raise _bad("the profile must be a JSON object")
    raw_rules = doc.get("syscalls")
    if not doc.get("defaultAction") and not raw_rules:
        return None
    default_action = _action(doc.get("defaultAction"), "defaultAction")
    default_errno = (None if doc.get("defaultErrnoRet") is None
                     else _uint(doc["defaultErrnoRet"], "defaultErrnoRet", 32))
    architectures = _str_list(doc.get("architectures"), "architectures", 64)
    arch_map_raw = doc.get("archMap") or []
    if architectures and arch_map_raw:
        raise _bad("both 'architectures' and 'archMap' are given; use one")
    if not isinstance(arch_map_raw, list) or len(arch_map_raw) > 64:
        raise _bad("archMap must be an array of {architecture, subArchitectures}")
    arch_map = []
    for i, entry in enumerate(arch_map_raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("architecture"), str):
            raise _bad(f"archMap[{i}] must be an object with an 'architecture' string")
        arch_map.append((entry["architecture"],
                         _str_list(entry.get("subArchitectures"), f"archMap[{i}].subArchitectures", 64)))
    for name in [*architectures, *(a for a, subs in arch_map for a in (a, *subs))]:
        if not _SCMP_ARCH.fullmatch(name):
            raise _bad(f"not a seccomp architecture: {name[:40]!r} (expected SCMP_ARCH_...)")
    flags = _str_list(doc.get("flags"), "flags", 8)
    for flag in flags:
        if flag not in FLAGS:
            raise _bad(f"unknown flag {flag[:60]!r} (known: {', '.join(FLAGS)})")
    if doc.get("listenerPath") or doc.get("listenerMetadata"):
        raise _bad("listenerPath needs a seccomp agent, which berth does not run")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_RULES:
        raise _bad(f"syscalls must be an array of at most {MAX_RULES} rules")
    rules = tuple(_rule(r, f"syscalls[{i}]") for i, r in enumerate(raw_rules))
    if sum(len(r.names) for r in rules) > MAX_NAMES:
        raise _bad(f"more than {MAX_NAMES} syscall names in all")
    return DockerProfile(default_action, default_errno, architectures, tuple(arch_map), flags, rules)


def kernel_version(release: str) -> tuple[int, int] | None:
    """`"6.1.0-18-amd64"` -> (6, 1); None when it does not start with two numbers."""
    m = re.match(r"([0-9]+)\.([0-9]+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def docker_profile(profile: DockerProfile | None, capabilities: Iterable[str], arch: str = "amd64",
                   kernel: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """Apply a checked Docker profile to one container, as dockerd does.

    A rule is kept when: its excludes do not match (no excluded arch is the host's,
    no excluded capability is held, the kernel is older than excludes.minKernel)
    and its includes do (the host's arch is listed, every capability is held, the
    kernel is at least includes.minKernel). *kernel* None means "new enough".

    Returns:
        The OCI section, or None for a profile that applies no filter.

    Raises:
        berth.errors.InvalidArgument: an unsupported arch or unknown capability name.
    """
    if profile is None:
        return None
    key = _arch(arch)
    held = _held(capabilities)

    def at_least(minimum: tuple[int, int] | None) -> bool:
        return minimum is None or kernel is None or kernel >= minimum

    rules: list[dict[str, Any]] = []
    for rule in profile.rules:
        ex, inc = rule.excludes, rule.includes
        if key in ex.arches or any(normalize(c) in held for c in ex.caps):
            continue
        if ex.min_kernel is not None and at_least(ex.min_kernel):
            continue
        if inc.arches and key not in inc.arches:
            continue
        if not all(normalize(c) in held for c in inc.caps) or not at_least(inc.min_kernel):
            continue
        out: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno is not None:
            out["errnoRet"] = rule.errno
        if rule.args:
            out["args"] = [dict(a) for a in rule.args]
        rules.append(out)
    architectures = list(profile.architectures)
    for main, subs in profile.arch_map:
        if main == _NATIVE_TO_SCMP[key]:
            architectures = [main, *subs]
            break
    section: dict[str, Any] = {"defaultAction": profile.default_action, "architectures": architectures,
                               "syscalls": rules}
    if profile.default_errno is not None:
        section["defaultErrnoRet"] = profile.default_errno
    if profile.flags:
        section["flags"] = list(profile.flags)
    return section
