"""The host's device nodes, as --privileged hands them to a container."""

from __future__ import annotations

import os
import stat

from berth.oci.runtime_spec import Device

# Never copied: the container gets its own pty, shm, mqueue and console.
SKIP = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx", "/dev/fd")


def host_devices(root: str = "/dev") -> tuple[Device, ...]:
    out: list[Device] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in SKIP]
        for name in files:
            path = os.path.join(directory, name)
            if path in SKIP:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                out.append(Device(path, "c" if stat.S_ISCHR(st.st_mode) else "b", os.major(st.st_rdev),
                                  os.minor(st.st_rdev), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    return tuple(out)
