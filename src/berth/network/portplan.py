"""Published ports: a container's PortBindings (and -P) turned into concrete host bindings (`PortBinding`).

Strategy: pure but for two questions about the host (is this port free, give a
free one), passed in: the rules (a host range takes its first free port, 0 or
"" takes any, a port another container publishes is taken, one address
clashes with 0.0.0.0) are tested without sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from berth.errors import Conflict, InvalidArgument

PortFree = Callable[[str, int, str], bool]  # (host ip, port, proto) -> no socket holds it
RandomPort = Callable[..., int]  # (proto, host ip, exclude=[ports]) -> a free port


@dataclass(frozen=True, slots=True)
class PortBinding:
    """One published port: the container's port and protocol, and the host address and port that reach it."""

    port: int
    proto: str  # tcp or udp
    host_ip: str  # "" = every address (shown as 0.0.0.0)
    host_port: int

    def to_doc(self) -> dict[str, Any]:
        """The stored form (in the container's record): HostPort a string, as Docker writes ports."""
        return {"Port": self.port, "Proto": self.proto, "HostIp": self.host_ip, "HostPort": str(self.host_port)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PortBinding:
        return cls(int(doc["Port"]), str(doc["Proto"]), str(doc.get("HostIp") or ""), int(doc["HostPort"]))


def plan_ports(port_bindings: Mapping[str, Any] | None, publish_all: bool, exposed: Iterable[str],
               taken: set[tuple[str, int, str]], port_free: PortFree, random_port: RandomPort) -> list[PortBinding]:
    """HostConfig.PortBindings (+ -P, *publish_all*, with the image's EXPOSE, *exposed*'s "port/proto" keys)
    as concrete bindings; random ports chosen.

    *taken*: (proto, host port, host ip) of what other running containers publish: taken
    even though no socket holds them (DNAT rules do not bind). *port_free* and
    *random_port* ask the host (berth.host.hostports) about the ports sockets hold.
    """

    def clash(proto: str, port: int, ip: str) -> bool:
        ip = ip or "0.0.0.0"
        return any(p == proto and n == port and (i == ip or "0.0.0.0" in (i, ip)) for p, n, i in taken)
    wanted: list[tuple[str, str, str, str]] = []  # (port, proto, host ip, host port)
    for key, bindings in (port_bindings or {}).items():
        port, _, proto = str(key).partition("/")
        for b in bindings or [{}]:
            wanted.append((port, proto or "tcp", (b or {}).get("HostIp") or "", (b or {}).get("HostPort") or ""))
    if publish_all:
        for key in exposed:
            port, _, proto = str(key).partition("/")
            if not any(w[0] == port and w[1] == (proto or "tcp") for w in wanted):
                wanted.append((port, proto or "tcp", "", ""))
    out = []
    for port, proto, host_ip, host_port in wanted:
        host_port = "" if host_port == "0" else host_port  # 0: any free port, as Docker takes it
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f"invalid proto {proto!r} for port {port}: use tcp or udp")
        try:
            number = int(port)
            if "-" in host_port:  # a host range for one port: the first free one in it, as Docker does
                lo, hi = (int(x) for x in host_port.split("-", 1))
                free = [n for n in range(lo, hi + 1)
                        if not clash(proto, n, host_ip) and port_free(host_ip, n, proto)]
                if not free:
                    raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: all ports of the range "
                                   "are already allocated")
                host_port = str(free[0])
            chosen = int(host_port) if host_port else random_port(
                proto, host_ip, exclude=[n for p, n, _ in taken if p == proto])
        except ValueError:
            raise InvalidArgument(f"invalid port {port}:{host_port}") from None
        if not (0 < number < 65536 and 0 < chosen < 65536):
            raise InvalidArgument(f"invalid port {host_port or chosen}:{port}: ports are 1-65535")
        if host_port and (clash(proto, chosen, host_ip) or not port_free(host_ip, chosen, proto)):
            raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{chosen} failed: port is already allocated")
        taken.add((proto, chosen, host_ip or "0.0.0.0"))
        out.append(PortBinding(number, proto, host_ip, chosen))
    return out
