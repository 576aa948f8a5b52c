"""The users, groups and directories of berth's small base images (bootstrap busybox, the test rootfs).

Strategy: data only; the image makers (berth.tools.busyboxlayer, berth.testing.rootfs) write them into
their layers with root ownership and these modes.
"""

from __future__ import annotations

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bob:x:1000:1000:bob:/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
wheel:x:10:bob
bob:x:1000:
nogroup:x:65534:
"""

DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "root": 0o700,
    "home": 0o755, "tmp": 0o1777, "var": 0o755, "run": 0o755, "home/bob": 0o755,
}
