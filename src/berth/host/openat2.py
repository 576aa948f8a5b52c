"""The openat2(2) system call, and whether this kernel and architecture have it.

Strategy: Python has no binding for openat2, so it is called through libc's
syscall(2) with ctypes, by number. The open_how structure carries the open
flags, the mode (only with O_CREAT) and the RESOLVE_* rules; EAGAIN and EINTR
(a rename elsewhere raced the kernel's ".." checks) are retried a bounded
number of times, and any other failure is raised as the OSError the kernel
reported. Whether openat2 works is probed once, by opening "/", and
remembered; host.fstree resolves paths inside a root with it when it does.
"""

from __future__ import annotations

import ctypes
import errno
import os

SYS_OPENAT2 = 437  # x86_64 and aarch64 (the unified number of every architecture since 5.1)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_HAVE_OPENAT2: bool | None = None


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = _RESOLVE) -> int:
    how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, resolve)
    raw = os.fsencode(path)
    for _ in range(16):  # EAGAIN: a rename elsewhere raced the ".." checks; try again
        fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(raw),
                           ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def openat2_available() -> bool:
    """True when this kernel (and architecture) has openat2 with RESOLVE_IN_ROOT."""
    global _HAVE_OPENAT2
    if _HAVE_OPENAT2 is None:
        if os.uname().machine not in ("x86_64", "aarch64"):
            _HAVE_OPENAT2 = False
        else:
            try:
                os.close(openat2(-100, "/", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
                _HAVE_OPENAT2 = True
            except OSError:
                _HAVE_OPENAT2 = False
    return _HAVE_OPENAT2


__all__ = [
    "RESOLVE_BENEATH", "RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_XDEV",
    "SYS_OPENAT2", "openat2", "openat2_available",
]
