"""Docker-format seccomp profiles (`--security-opt seccomp=profile.json`): checked strictly, then applied.

Strategy: a user's profile is parsed into typed rules once, at create, with a
bound on its size and every field's type and value checked, so a bad profile
is a 400 then, never a failed start; `docker_profile` then keeps the rules
whose includes and excludes (architecture, capabilities, minimum kernel)
match the container and the host, as dockerd does, and gives the OCI section.
Pure: the architecture and kernel release are parameters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.capabilities import normalize
from berth.oci.seccomp import NATIVE_TO_SCMP, SYSCALL_NAME, arch_key, held_capabilities

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
    bad = [n for n in names if not SYSCALL_NAME.fullmatch(n)]
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
    key = arch_key(arch)
    held = held_capabilities(capabilities)

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
        if main == NATIVE_TO_SCMP[key]:
            architectures = [main, *subs]
            break
    section: dict[str, Any] = {"defaultAction": profile.default_action, "architectures": architectures,
                               "syscalls": rules}
    if profile.default_errno is not None:
        section["defaultErrnoRet"] = profile.default_errno
    if profile.flags:
        section["flags"] = list(profile.flags)
    return section
