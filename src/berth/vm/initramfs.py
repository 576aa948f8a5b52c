"""Build the utility VM's initramfs: the agent as /init, busybox, the kernel modules.

Strategy: pure, apart from reading the input files and one atomic write. The
archive is written with `berth.vm.cpio` (no host cpio tool), owned by root
whoever builds it, with the device nodes the kernel needs before devtmpfs is
mounted (/dev/console for init's stdio). Modules go flat into /lib/modules with
an `order` file, one name per line, that the agent follows.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path

from berth.vm.cpio import CpioWriter

MODULE_DIR = "lib/modules"
ORDER_FILE = "lib/modules/order"

_DIRS = ("dev", "proc", "sys", "run", "mnt", "tmp", "bin", "lib", MODULE_DIR)


def build(agent: bytes, modules: Sequence[tuple[str, bytes]], *, busybox: bytes | None = None,
          compress: bool = False) -> bytes:
    """Return the archive; *modules* are (name, uncompressed .ko bytes) in load order."""
    w = CpioWriter()
    for d in _DIRS:
        w.add_dir(d, 0o1777 if d == "tmp" else 0o755)
    w.add_chardev("dev/console", 5, 1, 0o600)
    w.add_chardev("dev/null", 1, 3, 0o666)
    w.add_file("init", agent, 0o755)
    if busybox is not None:
        w.add_file("bin/busybox", busybox, 0o755)
        w.add_symlink("bin/sh", "busybox")
    for name, data in modules:
        w.add_file(f"{MODULE_DIR}/{name}.ko", data, 0o644)
    w.add_file(ORDER_FILE, "".join(f"{name}.ko\n" for name, _ in modules).encode(), 0o644)
    raw = w.getvalue()
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw


def write(path: Path, data: bytes) -> Path:
    """Write *data* to *path* atomically (temporary sibling, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(path)
    return path
