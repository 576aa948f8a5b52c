"""Network namespaces: made, joined for a moment and removed, without forking a helper.

Strategy: a container's namespace is a file the caller names (like ``ip netns
add``, which always uses /run/netns): a bind mount of the namespace onto an
empty file keeps the namespace alive with no process in it, and runc joins it
through the path in config.json. The directory holding these files is made a
shared mount point, as iproute2 does, so that unmounting one also unmounts the
copies other mount namespaces took.

Work *inside* a namespace runs on a short-lived thread that has setns(2)'d
into it: a network namespace belongs to a thread, not to the process, so the
daemon's own threads never leave the host's namespace and no helper process is
forked (pyroute2's NetNS forks one per namespace).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from berth.errors import AlreadyExists, FailedPrecondition, NotFound
from berth.host import mount
from berth.host.rtnetlink import link_index, rtnl

T = TypeVar("T")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20


def _on_thread(fn: Callable[[], T], name: str) -> T:
    """Run *fn* on a fresh thread (whose namespace changes die with it); re-raise its error here."""
    out: list[T] = []
    err: list[BaseException] = []

    def body() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            err.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


def in_netns(path: Path, fn: Callable[[], T]) -> T:
    """Run *fn* on a fresh thread that has joined the network namespace at *path*."""

    def body() -> T:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NotFound(f"network namespace {path}: {exc.strerror}; was it created?") from exc
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise FailedPrecondition(
                    f"join network namespace {path}: {os.strerror(code)} (is it a namespace file?)")
        finally:
            os.close(fd)
        return fn()

    return _on_thread(body, "berth-netns")


def prepare_netns_dir(directory: Path) -> None:
    """Make the directory namespaces will be bound in (a shared mount point), ahead of the first one."""
    directory.mkdir(parents=True, exist_ok=True)
    _share_directory(directory)


def release_netns_dir(directory: Path) -> bool:
    """Undo prepare_netns_dir's bind when no namespace is bound in the directory any more (a clean stop
    with no container left); False when namespaces remain (containers outlive the daemon: it stays)."""
    try:
        if os.listdir(directory) or not _is_mount_point(directory):
            return False
    except FileNotFoundError:
        return False
    mount.unmount(str(directory))
    return True


def _share_directory(directory: Path) -> None:
    # iproute2's recipe for /run/netns: the directory becomes a mount point of its
    # own (a bind onto itself) with shared propagation.
    if not _is_mount_point(directory):
        mount.mount(str(directory), str(directory), "none", flags=mount.MS_BIND | _MS_REC)
    mount.mount("none", str(directory), "none", flags=_MS_SHARED | _MS_REC)


def _is_mount_point(directory: Path) -> bool:
    # os.path.ismount misses a bind mount of a directory onto itself (same device),
    # so read the mount table; its fields escape blanks as octal (\040).
    target = os.path.realpath(directory)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                if point == target:
                    return True
    except OSError:
        return mount.is_mountpoint(target)
    return False


def create_netns(path: Path) -> None:
    """Create a network namespace kept alive by a bind mount on the file *path*, loopback up.

    Raises:
        AlreadyExists: *path* exists.
        FailedPrecondition: the kernel refused (no root, no netns support).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _share_directory(path.parent)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise AlreadyExists(f"network namespace {path} already exists; delete it first") from None

    def body() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise FailedPrecondition(f"create network namespace {path}: {os.strerror(code)}")
        mount.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), "none",
                    flags=mount.MS_BIND)
        with rtnl(f"bring up loopback in {path}") as ipr:
            ipr.link("set", index=link_index(ipr, "lo"), state="up")

    try:
        # unshare(2) moves only the helper thread; the namespace outlives it through the mount.
        _on_thread(body, "berth-netns-new")
    except BaseException:
        delete_netns(path)
        raise


def delete_netns(path: Path) -> None:
    """Unmount and remove the namespace file *path*; fine when it is already gone.

    The namespace itself ends when no process and no other mount holds it.
    """
    path = Path(path)
    mount.unmount(str(path), lazy=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise FailedPrecondition(f"remove network namespace file {path}: {exc.strerror}") from exc


def netns_links(path: Path) -> list[str]:
    """Names of the interfaces inside the namespace at *path*, sorted."""

    def body() -> list[str]:
        with rtnl(f"list interfaces in {path}") as ipr:
            return sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())

    return in_netns(Path(path), body)
