"""Registry names: which registry serves an image name, and how to reach it.

Strategy: pure string work on names as berth.oci.reference leaves them
(Docker Hub names short: "busybox", "user/app"). The first path component is a
registry host when it looks like one: it has a "." or a ":" (a domain or a
port) or is "localhost"; otherwise the name lives on Docker Hub, where
one-component names sit under "library/". Docker Hub's API is served from
registry-1.docker.io, not from docker.io itself.

Loopback registries (localhost, 127.0.0.0/8, ::1) are insecure by default,
as in Docker: berth may fall back to plain HTTP or skip TLS verification for
them. `is_insecure` also matches an `insecure-registries` list whose entries
are host[:port] names or CIDR ranges.
"""

from __future__ import annotations

import ipaddress

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def registry_and_repo(ref_name: str) -> tuple[str, str]:
    """Split an image name into (registry, repository path).

    "busybox" -> ("docker.io", "library/busybox");
    "127.0.0.1:5000/a/b" -> ("127.0.0.1:5000", "a/b").
    """
    first, sep, rest = ref_name.partition("/")
    if sep and _looks_like_host(first):
        registry, repo = first, rest
        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
    else:
        registry, repo = DOCKER_HUB, ref_name
    if registry == DOCKER_HUB and "/" not in repo:
        repo = "library/" + repo
    return registry, repo


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def endpoint_host(registry: str) -> str:
    """The host[:port] that serves *registry*'s API (Docker Hub's is registry-1.docker.io)."""
    if registry.lower() in _HUB_ALIASES:
        return DOCKER_HUB_ENDPOINT
    return registry


def display_name(registry: str, repo: str) -> str:
    """The name a user would type for *repo* on *registry* ("busybox", "user/app", "host:5000/a")."""
    if registry == DOCKER_HUB:
        return repo.removeprefix("library/")
    return f"{registry}/{repo}"


def host_part(registry: str) -> str:
    """*registry* without its port; IPv6 brackets removed ("[::1]:5000" -> "::1")."""
    if registry.startswith("["):
        end = registry.find("]")
        return registry[1:end] if end > 0 else registry[1:]
    if registry.count(":") > 1:  # a bare IPv6 address
        return registry
    return registry.partition(":")[0]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_local(registry: str) -> bool:
    """True for loopback registries: localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host = host_part(registry).lower()
    if host == "localhost":
        return True
    addr = _address(host)
    return addr is not None and addr.is_loopback


def is_insecure(registry: str, insecure_registries: tuple[str, ...], local_is_insecure: bool = True) -> bool:
    """True when *registry* may be reached without verified TLS.

    Args:
        registry: host[:port] as from registry_and_repo.
        insecure_registries: entries "host", "host:port" or CIDR ranges ("10.0.0.0/8").
        local_is_insecure: loopback registries count as insecure (Docker's default).
    """
    if local_is_insecure and is_local(registry):
        return True
    host = host_part(registry).lower()
    addr = _address(host)
    for entry in insecure_registries:
        entry = entry.strip().lower()
        for scheme in ("https://", "http://"):
            entry = entry.removeprefix(scheme)
        entry = entry.rstrip("/")
        if not entry:
            continue
        if entry in (registry.lower(), host):
            return True
        if "/" in entry and addr is not None:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False
