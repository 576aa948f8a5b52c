"""Ports on this host: whether one is free for publishing, and a free one when none is asked for.

Strategy: a port is free when a socket can bind it (SO_REUSEADDR, so TIME_WAIT
leftovers do not count and a listener does): the DNAT rules of a published
port would silently shadow a host program listening there, so berth checks
before it publishes. A bind to an address the host does not have is a caller
error (InvalidArgument), a taken port a Conflict in Docker's words. A port
picked for ``-P`` starts at a random point of the kernel's ephemeral range and
skips the ports berth has already handed out, which hold no socket.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterable

from berth.errors import Conflict, InvalidArgument
from berth.host.nftrules import PROTOCOLS


def _socket_for(host_ip: str, proto: str) -> tuple[socket.socket, str]:
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {proto!r}: use tcp, udp or sctp")
    address = host_ip or "0.0.0.0"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if proto == "udp":
        return socket.socket(family, socket.SOCK_DGRAM), address
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP if proto == "sctp" else 0)
    # TIME_WAIT leftovers do not make a port busy; a listener does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock, address


def port_free(host_ip: str, port: int, proto: str = "tcp") -> bool:
    """True when nothing on this host holds *port*/*proto* on *host_ip* ("" = every address).

    The DNAT rules would silently shadow a host program listening there, so a
    published port must be free.

    Raises:
        InvalidArgument: *host_ip* is not an address of this host.
    """
    try:
        sock, address = _socket_for(host_ip, proto)
    except OSError as exc:
        raise InvalidArgument(f"cannot check {proto} ports here: {exc.strerror}") from exc
    with sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"listen {proto} {address}:{port}: bind: cannot assign requested "
                                      "address (publish on an address this host has)") from exc
            raise
    return True


def check_port(host_ip: str, port: int, proto: str = "tcp") -> None:
    """Raises Conflict with Docker's words when *port* is taken on *host_ip*."""
    if not port_free(host_ip, port, proto):
        raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{port} failed: port is already allocated")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def random_port(proto: str = "tcp", host_ip: str = "", exclude: Iterable[int] = ()) -> int:
    """A free port for ``-P`` / ``-p 80``: from a random point of the ephemeral range onwards.

    Args:
        exclude: ports berth has already handed out (their DNAT rules hold no socket).

    Raises:
        Conflict: every port of the range is taken.
    """
    low, high = ephemeral_range()
    skip = set(exclude)
    size = high - low + 1
    start = random.randrange(size)
    for i in range(size):
        port = low + (start + i) % size
        if port not in skip and port_free(host_ip, port, proto):
            return port
    raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:0 failed: every {proto} port from {low} to {high} "
                   "is already allocated; stop containers that publish ports or choose a port with -p")
