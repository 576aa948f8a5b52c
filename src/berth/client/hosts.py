"""Where the daemon is: `--host`, BERTH_HOST or DOCKER_HOST, read as a Unix socket path or a TCP address.

Strategy: pure, apart from reading the environment when none is passed in.
`resolve_host` picks the spec (the flag wins, then BERTH_HOST, then DOCKER_HOST,
then berthd's default socket) and `parse_host` turns it into a `Host`; a spec it
cannot use raises InvalidArgument naming the part that is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from berth.errors import InvalidArgument

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TCP_PORT = 2375


@dataclass(frozen=True)
class Host:
    scheme: str  # "unix" or "tcp"
    address: str  # socket path, or host name
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.address}"
        return f"tcp://{self.address}:{self.port}"


def resolve_host(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """`--host` wins, then BERTH_HOST, then DOCKER_HOST, then the default socket."""
    env = os.environ if env is None else env
    for value in (flag, env.get("BERTH_HOST"), env.get("DOCKER_HOST")):
        if value:
            return value
    return DEFAULT_HOST


def parse_host(spec: str) -> Host:
    """Parse `unix:///path`, `/path`, `tcp://host:port`, `host:port` or `http://...`."""
    spec = spec.strip()
    if spec.startswith("unix://"):
        path = spec[len("unix://"):]
        if not path:
            raise InvalidArgument(f"invalid host {spec!r}: empty socket path")
        return Host("unix", path)
    if spec.startswith("/"):
        return Host("unix", spec)
    rest = spec
    for prefix in ("tcp://", "http://"):
        if spec.startswith(prefix):
            rest = spec[len(prefix):]
            break
    else:
        if "://" in spec:
            raise InvalidArgument(f"invalid host {spec!r}: unsupported protocol")
    rest = rest.rstrip("/")
    if rest.startswith("["):  # [v6]:port
        addr, _, port_s = rest[1:].partition("]")
        port_s = port_s.lstrip(":")
    else:
        addr, _, port_s = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        port = int(port_s) if port_s else DEFAULT_TCP_PORT
    except ValueError:
        raise InvalidArgument(f"invalid host {spec!r}: bad port {port_s!r}") from None
    return Host("tcp", addr or "127.0.0.1", port)
