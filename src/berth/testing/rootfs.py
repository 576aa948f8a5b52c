"""Make a small busybox root file system as a tarball, from Debian's busybox-static.

Strategy: nothing is extracted on the host; the tarball is written entry by entry
with tarfile, so ownership and modes are exactly what we say (root:root, /tmp 1777)
whoever runs it. The result is what `docker import` takes.

    python -m berth.testing.rootfs OUT.tar [--busybox /bin/busybox]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
import time
from pathlib import Path

from berth.image.basefiles import DIRS, GROUP, PASSWD

BUSYBOX = "/bin/busybox"



def applets(busybox: str) -> list[str]:
    """Return the applet paths busybox installs (e.g. 'bin/sh', 'usr/bin/env')."""
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def write_rootfs_tar(out: Path, busybox: str = BUSYBOX) -> Path:
    """Write a busybox root file system tarball to *out* and return *out*."""
    now = int(time.time())

    def info(name: str, kind: bytes, mode: int, size: int = 0, uid: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.mtime, ti.uid, ti.gid = kind, mode, size, now, uid, uid
        ti.uname = ti.gname = "root"
        return ti

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in DIRS.items():
            tar.addfile(info(name, tarfile.DIRTYPE, mode, uid=1000 if name == "home/bob" else 0))
        data = Path(busybox).read_bytes()
        tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        for path in applets(busybox):
            if path == "bin/busybox":
                continue
            depth = path.count("/")
            link = info(path, tarfile.SYMTYPE, 0o777)
            link.linkname = "../" * depth + "bin/busybox"
            tar.addfile(link)
        for name, text in {"etc/passwd": PASSWD, "etc/group": GROUP,
                           "etc/os-release": 'NAME="busybox"\nID=busybox\n'}.items():
            raw = text.encode()
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--busybox", default=BUSYBOX)
    args = parser.parse_args()
    print(write_rootfs_tar(args.out, args.busybox))


if __name__ == "__main__":
    main()
