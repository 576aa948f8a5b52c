"""Interface names: a container's veth name, and the rules a name given to the kernel must meet.

Strategy: pure functions, no kernel. The host end of a container's veth is
named from a hash of the container and network ids, so it fits the kernel's
15 usable characters and the caller can compute it again to detach it. Every
name berth hands the kernel is checked here first, so a bad one fails as
InvalidArgument saying what is allowed, before any socket is opened.
"""

from __future__ import annotations

import hashlib

from berth.errors import InvalidArgument

_IFNAMSIZ = 15  # usable characters of an interface name (16 with the NUL)


def veth_name(container_id: str, network_id: str = "") -> str:
    """The host end of a container's veth on one network: "veth" + 11 hex characters.

    Derived from both ids, so one container on several networks gets distinct
    names and the caller can recompute the name to detach it.
    """
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return "veth" + digest[:11]


def check_ifname(name: str) -> None:
    """Raises InvalidArgument unless *name* is usable as an interface name."""
    if not name or len(name) > _IFNAMSIZ or name in (".", "..") or any(
            c in name for c in "/: \t\n\"'\\") or not name.isprintable():
        raise InvalidArgument(
            f"invalid interface name {name!r}: use 1 to {_IFNAMSIZ} characters without '/', ':', "
            "quotes or white space")
