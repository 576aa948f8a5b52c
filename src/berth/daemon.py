"""berthd: the daemon. Parses its options, builds the components, serves the API.

Strategy: one asyncio process. Containers are not its children (each has a
conmon monitor), so berthd can be stopped, killed or restarted at any time;
on start it re-attaches to what is running (Containers.recover).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
import urllib.parse

from berth import __version__
from berth.api import routes
from berth.api.server import Server
from berth.api.wiring import DaemonConfig, build

log = logging.getLogger("berthd")

DEFAULT_HOST = "unix:///run/berth/berth.sock"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth daemon: serves the Docker Engine API")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"where to listen: unix:///path or tcp://127.0.0.1:PORT (default {DEFAULT_HOST})")
    p.add_argument("--root", default="/var/lib/berth", help="data root (default /var/lib/berth)")
    p.add_argument("--vm-dir", default=None,
                   help="where the utility VM's kernel and initramfs are prepared (default <root>/vm)")
    p.add_argument("--vm-boot", choices=["clone", "cold"], default="clone",
                   help="start VM-isolated containers from a saved template (clone) or by booting (cold)")
    p.add_argument("--default-runtime", default="runc", help="OCI runtime for containers that name none (runc, runsc)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]|CIDR",
                   help="a registry reached without TLS verification (or over plain HTTP); repeatable. "
                        "Loopback registries (localhost, 127.0.0.0/8) always are, as in Docker")
    p.add_argument("--certs-dir", default="/etc/docker/certs.d",
                   help="per-registry TLS files: <dir>/<host:port>/ca.crt, client.cert, client.key")
    p.add_argument("--registry-auth-file", default="",
                   help="a docker config.json whose credentials are used when a request brings none")
    p.add_argument("-b", "--bridge", default="berth0", help="the default bridge network's Linux bridge (berth0)")
    p.add_argument("--bip", default="", help="the default bridge's address and prefix (default 172.17.0.1/16)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("-D", "--debug", action="store_true", help="same as --log-level debug")
    p.add_argument("-v", "--version", action="version", version=f"berthd {__version__}")
    return p.parse_args(argv)


def lock_root(root: str) -> int:
    """Hold <root>/berthd.pid locked for the daemon's life: one berthd per data root."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "berthd.pid")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        raise SystemExit(f"berthd: another berthd (pid {other}) is using {root}; stop it first, "
                         "or give this one its own --root") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def serve(config: DaemonConfig) -> None:
    lock_root(config.root)
    daemon = build(config)
    if config.default_runtime not in daemon.runtimes:
        raise SystemExit(f"berthd: the default runtime {config.default_runtime!r} is not installed "
                         f"(found: {', '.join(sorted(daemon.runtimes)) or 'none'}); run the README's set-up")
    server = Server(routes.build(daemon))
    await daemon.networks.startup()
    await daemon.containers.recover()
    listeners = []
    for host in config.hosts:
        url = urllib.parse.urlparse(host)
        if url.scheme == "unix":
            path = url.path
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)
            listeners.append(await asyncio.start_unix_server(server.handle, path, limit=1 << 20))
            os.chmod(path, 0o660)
        elif url.scheme == "tcp":
            if not url.port:
                raise SystemExit(f"berthd: {host}: a port is required (tcp://127.0.0.1:2375)")
            listeners.append(await asyncio.start_server(server.handle, url.hostname or "127.0.0.1", url.port,
                                                        limit=1 << 20))
        else:
            raise SystemExit(f"berthd: {host}: use unix:///path or tcp://host:port")
        log.info("listening on %s", host)
    log.info("berthd %s ready (root %s)", __version__, config.root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down; containers keep running")
    for listener in listeners:
        listener.close()
    for task in list(server.connections):
        task.cancel()
    await daemon.distribution.close()
    await daemon.networks.shutdown()
    daemon.db.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root (it mounts file systems and creates cgroups)")
    config = DaemonConfig(root=args.root, hosts=tuple(args.host or [DEFAULT_HOST]),
                          default_runtime=args.default_runtime, vm_dir=args.vm_dir or "", vm_boot=args.vm_boot,
                          insecure_registries=tuple(args.insecure_registry), certs_dir=args.certs_dir,
                          registry_auth_file=args.registry_auth_file, bridge=args.bridge, bip=args.bip)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
