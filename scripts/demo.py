"""berth's demo: start berthd, make images locally, push and pull them, run containers in each isolation mode, build.

Every step is a real command (the docker CLI, or berth's own when docker is
absent) against berthd on the default socket; each is printed before it runs.
berthd is left running afterwards so you can carry on by hand.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from berth.client.engine import Client
from berth.errors import BerthError
from berth.testing.registry import LocalRegistry

SOCK = "/run/berth/berth.sock"
HOST = f"unix://{SOCK}"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def run(*argv: str, check: bool = True) -> int:
    print("$ " + shlex.join(argv), flush=True)
    code = subprocess.call(list(argv), env=dict(os.environ, DOCKER_HOST=HOST, DOCKER_BUILDKIT="0"))
    if code:
        print(f"(exit code {code})", flush=True)
    if check and code not in (0,):
        raise SystemExit(f"demo: {argv[0]} {argv[1]} failed with {code}")
    return code


def daemon_up() -> bool:
    try:
        return Client(HOST, api_version="1.47").request("GET", "/_ping").status == 200
    except (OSError, BerthError):
        return False


def main() -> None:
    cli = shutil.which("docker") or str(BIN / "berth")
    say("berthd")
    if daemon_up():
        print(f"berthd already answers on {SOCK}")
    else:
        log = "/var/log/berthd.log"
        print(f"starting {BIN / 'berthd'} on {HOST} (root /var/lib/berth, log {log})")
        with open(log, "ab") as out:
            subprocess.Popen([str(BIN / "berthd"), "-H", HOST], stdout=out, stderr=out, start_new_session=True)
        for _ in range(100):
            if daemon_up():
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"demo: berthd did not start; see {log}")
    run(cli, "version")

    say("base images without internet: busybox for linux/amd64 and linux/arm64, from Debian's packages")
    run(str(BIN / "berth"), "-H", HOST, "image", "bootstrap")
    run(cli, "images")
    run(cli, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", "busybox")

    say("a registry on 127.0.0.1 (Debian's docker-registry): push, remove, pull by layers with verified digests")
    with tempfile.TemporaryDirectory() as tmp, LocalRegistry(Path(tmp)) as registry:
        remote = f"{registry.address}/demo/busybox:1"
        run(cli, "tag", "busybox", remote)
        run(cli, "push", remote)
        run(cli, "rmi", remote)
        run(cli, "pull", "--platform", "linux/arm64", remote)
        say("a foreign platform runs under emulation (qemu-user via binfmt_misc); a missing one is named")
        run(cli, "run", "--rm", "--platform", "linux/arm64", remote, "uname", "-m")
        run(cli, "run", "--rm", "--platform", "linux/s390x", "busybox", "uname", "-m", check=False)
        run(cli, "rmi", remote)
    with tempfile.TemporaryDirectory() as tmp:
        archive = str(Path(tmp) / "busybox.tar")
        run(cli, "save", "-o", archive, "busybox")
        run(cli, "load", "-i", archive)

    say("process isolation (the default): shared kernel, namespaces, cgroups, overlayfs root")
    run(cli, "run", "--rm", "busybox", "echo", "hello from a berth container")
    run(cli, "run", "--rm", "--isolation", "process", "busybox", "uname", "-r")
    run(cli, "run", "--rm", "--memory", "64m", "--pids-limit", "32", "busybox",
        "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max")
    run(cli, "run", "--rm", "-u", "bob", "-w", "/tmp", "-e", "GREETING=hi", "busybox",
        "sh", "-c", 'echo "$GREETING from $(id -un) in $(pwd)"')
    run(cli, "run", "--rm", "busybox", "sh", "-c", "exit 3", check=False)

    say("sandbox isolation: the same image under gVisor (--runtime runsc)")
    run(cli, "run", "--rm", "--runtime", "runsc", "busybox", "sh", "-c", "echo hello from gVisor; uname -r",
        check=False)

    say("VM isolation (--isolation hyperv): the same image in its own utility VM, with its own kernel")
    print("(the first VM-isolated container prepares the guest kernel and initramfs: a one-time download)")
    run(cli, "run", "--rm", "--isolation", "hyperv", "busybox", "sh", "-c",
        "echo hello from a utility VM; uname -r", check=False)
    run(cli, "run", "--rm", "--isolation", "hyperv", "--cpus", "2", "-m", "512m", "-v", "/etc/os-release:/host-os:ro",
        "busybox", "sh", "-c", "nproc; grep MemTotal /proc/meminfo; head -1 /host-os", check=False)

    say("networks: a user-defined network with DNS, a process- and a VM-isolated container on it, a published port")
    run(cli, "rm", "-f", "demo-web", check=False)
    run(cli, "network", "rm", "demo-net", check=False)
    run(cli, "network", "create", "demo-net")
    run(cli, "run", "-d", "--name", "demo-web", "--network", "demo-net", "-p", "127.0.0.1:18088:80", "busybox",
        "sh", "-c", "echo hello over the network > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
    run(cli, "run", "--rm", "--network", "demo-net", "busybox", "sh", "-c",
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc demo-web 80 | tail -1")
    run(cli, "run", "--rm", "--isolation", "hyperv", "--network", "demo-net", "busybox", "sh", "-c",
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc demo-web 80 | tail -1", check=False)
    time.sleep(0.3)
    print("$ python: GET http://127.0.0.1:18088/index.html", flush=True)
    try:
        with urllib.request.urlopen("http://127.0.0.1:18088/index.html", timeout=5) as r:
            print(r.read().decode(), end="", flush=True)
    except OSError as exc:
        print(f"(failed: {exc})", flush=True)
    run(cli, "port", "demo-web")
    run(cli, "rm", "-f", "demo-web")
    run(cli, "network", "rm", "demo-net")

    say("volumes: data in a named volume outlives its container")
    run(cli, "volume", "rm", "demo-data", check=False)
    run(cli, "run", "--rm", "-v", "demo-data:/data", "busybox", "sh", "-c", "echo kept > /data/file")
    run(cli, "run", "--rm", "-v", "demo-data:/data:ro", "busybox", "cat", "/data/file")
    run(cli, "volume", "rm", "demo-data")

    say("build: a two-stage Dockerfile (the classic builder), then the same build again from the cache")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "Dockerfile").write_text(
            "FROM busybox AS build\nRUN echo built by berth > /greeting\n"
            "FROM busybox\nCOPY --from=build /greeting /greeting\nCMD [\"cat\", \"/greeting\"]\n")
        run(cli, "build", "-t", "demo-built", tmp)
        run(cli, "build", "-t", "demo-built", tmp)
    run(cli, "run", "--rm", "demo-built")

    say("a long-running container: logs, exec, stop, remove")
    run(cli, "rm", "-f", "demo-ticker", check=False)
    run(cli, "run", "-d", "--name", "demo-ticker", "busybox", "sh", "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done")
    time.sleep(1)
    run(cli, "logs", "--tail", "3", "demo-ticker")
    run(cli, "exec", "demo-ticker", "ps")
    run(cli, "ps", "--format", "table {{.Names}}\t{{.Status}}\t{{.Command}}")
    run(cli, "stop", "-t", "1", "demo-ticker")
    run(cli, "inspect", "--format", "exit code {{.State.ExitCode}}, finished {{.State.FinishedAt}}", "demo-ticker")
    run(cli, "rm", "demo-ticker")

    say("done")
    print(f"berthd keeps running. Try: export DOCKER_HOST={HOST}; docker run -it --rm busybox sh")
    print("Stop it with: pkill -f .venv/bin/berthd")


if __name__ == "__main__":
    main()
