"""rtnetlink sockets, one per call, with the kernel's errors in berth's categories.

Strategy: a caller opens one socket (pyroute2's IPRoute) in its thread's
network namespace, does its few requests and closes it: milliseconds, no
subprocess, no cached state that could go stale. Kernel errors are translated
once, here (``_kernel_error``): EEXIST becomes Conflict, a missing device
NotFound, anything else FailedPrecondition, each with the kernel's words
(strerror) and what was being done.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.errors import BerthError, Conflict, FailedPrecondition, NotFound

IFA_F_NODAD = 0x02  # no duplicate address detection: the address works at once (berth hands out unique ones)


def _kernel_error(exc: BaseException, doing: str) -> BerthError:
    code = getattr(exc, "code", None) if isinstance(exc, NetlinkError) else getattr(exc, "errno", None)
    words = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    if code == errno.EEXIST:
        return Conflict(f"{doing}: {words}")
    if code in (errno.ENODEV, errno.ENOENT):
        return NotFound(f"{doing}: {words}")
    if code in (errno.EPERM, errno.EACCES):
        return FailedPrecondition(f"{doing}: {words} (berthd must run as root, with CAP_NET_ADMIN)")
    if code == errno.EOPNOTSUPP:
        return FailedPrecondition(f"{doing}: {words} (this kernel lacks the device type; it needs bridge, "
                                  "veth and tun support)")
    return FailedPrecondition(f"{doing}: {words}")


@contextmanager
def rtnl(doing: str) -> Iterator[Any]:
    """An rtnetlink socket in the calling thread's namespace; kernel errors become BerthErrors."""
    try:
        ipr = IPRoute()
    except OSError as exc:
        raise _kernel_error(exc, doing) from exc
    try:
        yield ipr
    except (NetlinkError, OSError) as exc:
        raise _kernel_error(exc, doing) from exc
    finally:
        ipr.close()


def link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None
