"""Platforms (os/architecture/variant): parse, normalise, match, and pick from an index.

Strategy: pure data work on the strings images and users write. Every spelling
is first brought to one canonical form (the one OCI image indexes use:
GOOS/GOARCH plus an optional variant), after which matching is plain equality
plus one rule about variants: a build for an older variant of the same
architecture runs on a newer one (arm/v6 on arm/v7, amd64 on amd64/v3). The
only I/O is `host()`, which reads the running kernel's machine name.

    parse("aarch64")          -> linux/arm64
    parse("linux/arm64/v8")   -> linux/arm64        (v8 is arm64's baseline)
    parse("armhf")            -> linux/arm/v7
    choose(linux/arm/v7, index["manifests"]) -> the descriptor to fetch, or None
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from berth.errors import InvalidArgument, NotImplemented_

# Operating systems a platform string may name (Go's GOOS values that images use).
KNOWN_OS = frozenset({
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "dragonfly",
    "solaris", "illumos", "aix", "android", "ios", "plan9", "js", "wasip1",
})

# Canonical architectures (Go's GOARCH spelling, as in OCI image indexes).
KNOWN_ARCH = frozenset({
    "amd64", "386", "arm", "arm64", "ppc64le", "ppc64", "s390x", "riscv64",
    "mips", "mipsle", "mips64", "mips64le", "loong64", "wasm",
})

# Other spellings -> (architecture, variant it implies; None = keep the given one).
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None), "x86-64": ("amd64", None), "x64": ("amd64", None),
    "aarch64": ("arm64", None), "arm64v8": ("arm64", None), "armv8": ("arm64", None),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None),
    "i686": ("386", None), "x86": ("386", None),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"),
    "armv7": ("arm", "v7"), "armv7l": ("arm", "v7"), "arm32v7": ("arm", "v7"),
    "armv6": ("arm", "v6"), "armv6l": ("arm", "v6"), "arm32v6": ("arm", "v6"),
    "armv5": ("arm", "v5"), "armv5l": ("arm", "v5"), "armv5tel": ("arm", "v5"),
    "arm32v5": ("arm", "v5"),
    "ppc64el": ("ppc64le", None), "loongarch64": ("loong64", None),
    "mips64el": ("mips64le", None), "mipsel": ("mipsle", None),
}

# The variant an architecture has when none is written, and the one it is
# written as ("" means "leave it out": arm64/v8 and amd64/v1 are the baselines).
_DEFAULT_VARIANT = {"arm": "v7"}
_BASELINE_VARIANT = {"arm64": "v8", "amd64": "v1"}

_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_LEVEL = re.compile(r"v(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform, e.g. Platform("linux", "arm", "v7"); str() gives "linux/arm/v7"."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


def normalize(p: Platform) -> Platform:
    """Return *p* in canonical spelling (aliases resolved, default variants filled or dropped)."""
    os_name = p.os.strip().lower() or "linux"
    arch = p.architecture.strip().lower()
    variant = p.variant.strip().lower()
    alias = _ARCH_ALIASES.get(arch)
    if alias is not None:
        arch, implied = alias
        if implied is not None and not variant:
            variant = implied
    if arch in _DEFAULT_VARIANT and not variant:
        variant = _DEFAULT_VARIANT[arch]
    if _BASELINE_VARIANT.get(arch) == variant:
        variant = ""
    return Platform(os_name, arch, variant)


def parse(text: str) -> Platform:
    """Parse a platform as users write it: "linux/amd64", "amd64", "linux/arm64/v8", "linux".

    A lone architecture means Linux; a lone operating system means this host's architecture.

    Raises:
        InvalidArgument: the text is not os[/arch[/variant]] with a known os and architecture.
    """
    raw = text.strip().lower()
    parts = raw.split("/")
    if not raw or len(parts) > 3 or not all(_TOKEN.fullmatch(part) for part in parts):
        raise InvalidArgument(
            f"invalid platform {text!r}: write it as os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")
    if len(parts) == 1:
        word = parts[0]
        if word in KNOWN_OS:
            here = host()
            return Platform(word, here.architecture, here.variant)
        parts = ["linux", word]
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else ""
    if os_name not in KNOWN_OS:
        raise InvalidArgument(
            f"invalid platform {text!r}: unknown operating system {os_name!r} "
            f"(known: {', '.join(sorted(KNOWN_OS))})")
    result = normalize(Platform(os_name, arch, variant))
    if result.architecture not in KNOWN_ARCH:
        raise InvalidArgument(
            f"invalid platform {text!r}: unknown architecture {arch!r} "
            f"(known: {', '.join(sorted(KNOWN_ARCH))}, or aliases such as aarch64, x86_64, armhf)")
    return result


def from_uname(machine: str) -> Platform:
    """The platform of a Linux machine whose `uname -m` prints *machine*."""
    m = machine.strip().lower()
    if m in ("mips64", "mips"):
        # uname does not say the byte order; the running interpreter knows it.
        return Platform("linux", m + ("le" if sys.byteorder == "little" else ""))
    if m == "armv8l":  # a 32-bit userland on a 64-bit ARM core
        return Platform("linux", "arm", "v8")
    if m == "arm64":
        m = "aarch64"
    return normalize(Platform("linux", m))


def host() -> Platform:
    """The platform of the running kernel (from os.uname().machine)."""
    return from_uname(os.uname().machine)


def _level(p: Platform) -> tuple[int, ...] | None:
    """A comparable level for the variant of *p* (arm, amd64, arm64 only), else None."""
    variant = p.variant or _BASELINE_VARIANT.get(p.architecture, "")
    if p.architecture not in ("arm", "amd64", "arm64") or not variant:
        return None
    m = _LEVEL.fullmatch(variant)
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(2) or 0))


def matches(wanted: Platform, candidate: Platform) -> bool:
    """True when an image built for *candidate* runs where *wanted* is asked for.

    Same os and architecture; a candidate with no variant, the same variant, or an
    older variant of the same line (arm/v6 for arm/v7, amd64 for amd64/v2) matches.
    """
    w, c = normalize(wanted), normalize(candidate)
    if (w.os, w.architecture) != (c.os, c.architecture):
        return False
    if w.variant == c.variant or not c.variant:
        return True
    wl, cl = _level(w), _level(c)
    return wl is not None and cl is not None and cl <= wl


def of_dict(platform: dict[str, Any]) -> Platform:
    """The platform described by an OCI "platform" object ({"os", "architecture", "variant"})."""
    return normalize(Platform(str(platform.get("os") or ""), str(platform.get("architecture") or ""),
                              str(platform.get("variant") or "")))


def from_query(text: str) -> str:
    """A JSON-encoded OCI platform object from an API query (push's `platform`, API 1.46) as
    "os/arch[/variant]" text, checked; "" for none.

    Raises:
        InvalidArgument: not a JSON object naming a known os and architecture.
    """
    if not text:
        return ""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, ""), str) for k in ("os", "architecture",
                                                                                       "variant")):
        raise InvalidArgument(f"invalid platform {text[:200]!r}: expected a JSON object such as "
                              '{"os":"linux","architecture":"arm64"}')
    return str(parse(str(of_dict(doc))))


def to_dict(p: Platform) -> dict[str, str]:
    """*p* as an OCI "platform" object (variant only when there is one)."""
    out = {"architecture": p.architecture, "os": p.os}
    if p.variant:
        out["variant"] = p.variant
    return out


def _is_attestation(platform: dict[str, Any]) -> bool:
    return platform.get("os") == "unknown" or platform.get("architecture") == "unknown"


def available(descriptors: Iterable[dict[str, Any]]) -> list[Platform]:
    """The distinct platforms an index's manifests offer (attestations left out), in index order."""
    seen: list[Platform] = []
    for desc in descriptors:
        plat = desc.get("platform")
        if not isinstance(plat, dict) or _is_attestation(plat) or not plat.get("architecture"):
            continue
        p = of_dict(plat)
        if p not in seen:
            seen.append(p)
    return seen


def choose(wanted: Platform, descriptors: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pick the manifest descriptor for *wanted* from an image index's "manifests".

    Attestation manifests (platform unknown/unknown) and entries without a platform
    are skipped. An exact variant wins; otherwise the newest compatible variant; ties
    keep index order. Returns None when nothing matches.
    """
    w = normalize(wanted)
    best: tuple[tuple[int, tuple[int, ...], int], dict[str, Any]] | None = None
    for i, desc in enumerate(descriptors):
        plat = desc.get("platform")
        if not isinstance(plat, dict) or _is_attestation(plat) or not plat.get("architecture"):
            continue
        c = of_dict(plat)
        if not matches(w, c):
            continue
        level = _level(c) or (0,)
        key = (0 if c.variant == w.variant else 1, tuple(-n for n in level), i)
        if best is None or key < best[0]:
            best = (key, desc)
    return best[1] if best is not None else None


def of_config(config: dict[str, Any]) -> Platform:
    """The platform an image config declares (its os, architecture and variant fields).

    Raises:
        InvalidArgument: the config names no architecture or os.
    """
    if not config.get("architecture") or not config.get("os"):
        raise InvalidArgument("image config does not say its os and architecture: "
                              "the image is malformed; rebuild or re-pull it")
    return of_dict(config)


def mismatch_message(image_name: str, wanted: Platform, available: list[Platform],
                     host_platform: Platform | None = None) -> str:
    """What to tell a user whose image has no build for *wanted*.

    Names the image, the platform asked for, the ones it has, and the flag to
    choose one (suggesting this host's platform when the image has it).
    """
    offered: list[str] = []
    for p in available:
        if str(normalize(p)) not in offered:
            offered.append(str(normalize(p)))
    want = str(normalize(wanted))
    if not offered:
        return (f'image "{image_name}" has no variant for {want}; it lists no platforms at all: '
                f"check the name, or pull it again with --platform")
    here = str(normalize(host_platform or host()))
    suggest = here if here in offered and here != want else offered[0]
    return (f'image "{image_name}" has no variant for {want}; it is available for '
            f"{', '.join(offered)}: run with --platform {suggest} (or pull it with --platform)")


# What `uname -m` prints on each platform (under qemu-user too).
_UNAME = {
    ("amd64", ""): "x86_64", ("arm64", ""): "aarch64", ("386", ""): "i686",
    ("arm", "v8"): "armv8l", ("arm", "v7"): "armv7l", ("arm", "v6"): "armv6l",
    ("arm", "v5"): "armv5tel", ("ppc64le", ""): "ppc64le", ("ppc64", ""): "ppc64",
    ("s390x", ""): "s390x", ("riscv64", ""): "riscv64", ("mips64le", ""): "mips64",
    ("mips64", ""): "mips64", ("loong64", ""): "loongarch64",
}

# The qemu-user program (qemu-<name>, qemu-<name>-static) that runs each architecture.
_QEMU = {
    "amd64": "x86_64", "386": "i386", "arm64": "aarch64", "arm": "arm", "ppc64le": "ppc64le",
    "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el",
    "mips64": "mips64", "mipsle": "mipsel", "mips": "mips", "loong64": "loongarch64",
}


def uname_machine(p: Platform) -> str:
    """What `uname -m` prints on *p* (aarch64, x86_64, armv7l, ...).

    Raises:
        NotImplemented_: berth does not know that architecture.
    """
    n = normalize(p)
    variant = n.variant if n.architecture == "arm" else ""
    try:
        return _UNAME[(n.architecture, variant)]
    except KeyError:
        raise NotImplemented_(f"berth does not know what `uname -m` prints on {n}") from None


def qemu_user_name(p: Platform) -> str:
    """The qemu-user name for *p*'s architecture (aarch64, arm, x86_64, i386, ...).

    Raises:
        NotImplemented_: there is no qemu-user emulator berth knows for it.
    """
    n = normalize(p)
    try:
        return _QEMU[n.architecture]
    except KeyError:
        raise NotImplemented_(f"berth knows no qemu-user emulator for {n}: "
                              f"run the image on a {n.architecture} host instead") from None
