"""berthd: the daemon. Parses its options, builds the components, serves the API.

Strategy: one asyncio process. Containers are not its children (each has a
conmon monitor), so berthd can be stopped, killed or restarted at any time;
on start it re-attaches to what is running (Containers.recover).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import ipaddress
import logging
import os
import re
import resource
import signal
import ssl
import sys
import urllib.parse
from dataclasses import dataclass

from berth import __version__
from berth.api import routes
from berth.api.limits import Limits
from berth.api.server import Server
from berth.api.tls import tls_handler
from berth.api.wiring import DaemonConfig, build

log = logging.getLogger("berthd")

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_MAX_JSON_BODY = "16MiB"
_BACKLOG = 1024  # connections the kernel queues before berthd accepts them (asyncio's default is 100)
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)
_TLS_HOWTO = ("give --tlsverify --tlscacert ca.pem --tlscert server-cert.pem --tlskey server-key.pem "
              "(a CA that signs the server's certificate and the clients'; see Docker's \"Protect the Docker "
              "daemon socket\"), or listen on tcp://127.0.0.1:PORT or a unix:// socket")


def _cert_default(name: str) -> str:
    """dockerd's default TLS file: $DOCKER_CERT_PATH/<name>, else ~/.docker/<name>."""
    return os.path.join(os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker"), name)


def parse_size(text: str) -> int:
    """"16MiB", "16m", "1048576" -> bytes (k, m, g are powers of 1024)."""
    m = _SIZE.match(text)
    if not m or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: use bytes or a number with KiB, MiB or GiB")
    return int(m.group(1)) * 1024 ** " kmg".index((m.group(2) or " ").lower())


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


@dataclass(frozen=True)
class Listener:
    """One -H address, checked: where to listen and whether it is TLS."""

    host: str
    kind: str          # "unix" or "tcp"
    address: str       # the socket path, or the IP/name to bind
    port: int = 0
    tls: bool = False
    warning: str = ""  # said at start when the listener is open to more than it should be


def is_loopback(name: str) -> bool:
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plan_listeners(hosts: tuple[str, ...], tls: bool, tls_verify: bool) -> list[Listener]:
    """The -H addresses as Listeners; SystemExit for one berthd must not open.

    A tcp:// listener anywhere but loopback needs TLS with client certificates
    (--tlsverify): without it, anyone who can reach the port drives the daemon,
    which is root on this host. On loopback, plain TCP is allowed with a warning.
    """
    out: list[Listener] = []
    for host in hosts:
        url = urllib.parse.urlparse(host)
        if url.scheme == "unix":
            out.append(Listener(host, "unix", url.path))
            continue
        if url.scheme != "tcp":
            raise SystemExit(f"berthd: {host}: use unix:///path or tcp://host:port")
        try:
            port = url.port
        except ValueError:
            port = None
        if not port:
            raise SystemExit(f"berthd: {host}: a port is required (tcp://127.0.0.1:2375, or 2376 with TLS)")
        address = url.hostname or "127.0.0.1"
        use_tls = tls or tls_verify
        warning = ""
        if not is_loopback(address):
            if not tls_verify:
                raise SystemExit(f"berthd: refusing to listen on {host} without TLS client verification: "
                                 "anyone who can reach it could run containers as root on this host. "
                                 f"To serve it, {_TLS_HOWTO}")
        elif not use_tls:
            warning = (f"listening on {host} without TLS: any local user and any process on this host "
                       "can drive berthd (and so act as root); prefer the unix socket, or add --tlsverify")
        elif not tls_verify:
            warning = (f"listening on {host} with TLS but no client verification: any local user and any "
                       "process on this host can drive berthd; add --tlsverify")
        out.append(Listener(host, "tcp", address, port, use_tls, warning))
    return out


def tls_context(config: DaemonConfig) -> ssl.SSLContext:
    """The server's TLS context: its certificate, and with tls_verify the CA its clients must be signed by."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"berthd: cannot load the TLS certificate {config.tls_cert} and key {config.tls_key}: "
                         f"{exc}; give --tlscert and --tlskey (PEM files)") from None
    if config.tls_verify:
        try:
            ctx.load_verify_locations(cafile=config.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"berthd: cannot load the CA certificate {config.tls_ca}: {exc}; "
                             "give --tlscacert (PEM)") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="berthd", description="berth daemon: serves the Docker Engine API")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"where to listen: unix:///path or tcp://127.0.0.1:PORT (default {DEFAULT_HOST})")
    p.add_argument("--root", default="/var/lib/berth", help="data root (default /var/lib/berth)")
    p.add_argument("--vm-dir", default=None,
                   help="where the utility VM's kernel and initramfs are prepared (default <root>/vm)")
    p.add_argument("--vm-boot", choices=["clone", "cold"], default="clone",
                   help="start VM-isolated containers from a saved template (clone) or by booting (cold)")
    p.add_argument("--vm-pool", type=int, default=1, metavar="N",
                   help="VMs kept restored and waiting for each VM shape in use, so a VM-isolated container "
                        "starts without restoring one (default 1; 0 disables the pool)")
    p.add_argument("--vm-pool-memory", type=parse_size, default=parse_size("1GiB"), metavar="SIZE",
                   help="bound on the guest RAM of all pooled VMs together, e.g. 2GiB (default 1GiB)")
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
    p.add_argument("--tls", action="store_true", help="serve TLS on tcp:// listeners (implied by --tlsverify)")
    p.add_argument("--tlsverify", action="store_true",
                   help="serve TLS and require client certificates signed by --tlscacert; "
                        "needed for a tcp:// listener on anything but loopback")
    p.add_argument("--tlscacert", default=_cert_default("ca.pem"),
                   help="CA that signs trusted client certificates (default $DOCKER_CERT_PATH or ~/.docker: ca.pem)")
    p.add_argument("--tlscert", default=_cert_default("cert.pem"), help="the server's TLS certificate (cert.pem)")
    p.add_argument("--tlskey", default=_cert_default("key.pem"), help="the server's TLS key (key.pem)")
    p.add_argument("--max-json-body", type=parse_size, default=parse_size(DEFAULT_MAX_JSON_BODY), metavar="SIZE",
                   help=f"largest JSON request body accepted, e.g. 16MiB (default {DEFAULT_MAX_JSON_BODY}); "
                        "larger ones answer 413. Archives (load, build context, cp, import) are streamed "
                        "and not limited by it")
    p.add_argument("--api-idle-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                   help="close an API connection with no request under way after this long (default 300)")
    p.add_argument("--api-head-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="a request's head (and a TLS handshake) must arrive within this (default 60)")
    p.add_argument("--api-body-timeout", type=_seconds, default=120.0, metavar="SECONDS",
                   help="drop a request whose body sends no byte for this long (default 120); "
                        "attach, exec, logs -f, events and wait are never cut")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("-D", "--debug", action="store_true", help="same as --log-level debug")
    p.add_argument("-v", "--version", action="version", version=f"berthd {__version__}")
    return p.parse_args(argv)


def lock_root(root: str) -> int:
    """Hold <root>/berthd.pid locked for the daemon's life: one berthd per data root."""
    os.makedirs(root, mode=0o710, exist_ok=True)  # private from the start; build() checks and tightens it
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
    plan = plan_listeners(config.hosts, config.tls, config.tls_verify)
    ctx = tls_context(config) if any(p.tls for p in plan) else None
    lock_root(config.root)
    daemon = build(config)
    if config.default_runtime not in daemon.runtimes:
        raise SystemExit(f"berthd: the default runtime {config.default_runtime!r} is not installed "
                         f"(found: {', '.join(sorted(daemon.runtimes)) or 'none'}); run the README's set-up")
    limits = Limits(max_json_body=config.max_json_body, idle_timeout=config.api_idle_timeout,
                    head_timeout=config.api_head_timeout, body_timeout=config.api_body_timeout)
    server = Server(routes.build(daemon), limits)
    await daemon.networks.startup()
    await daemon.recover()
    await daemon.execs.recover()  # exec sessions (under conmon) that outlived the last daemon
    listeners = []
    for item in plan:
        if item.kind == "unix":
            path = item.address
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)
            listeners.append(await asyncio.start_unix_server(server.handle, path, limit=1 << 20, backlog=_BACKLOG))
            os.chmod(path, 0o660)
        else:
            try:
                accept = tls_handler(ctx, limits.head_timeout, server.handle) if item.tls and ctx else server.handle
                listeners.append(await asyncio.start_server(accept, item.address, item.port, limit=1 << 20,
                                                            backlog=_BACKLOG))
            except OSError as exc:
                raise SystemExit(f"berthd: cannot listen on {item.host}: {exc.strerror or exc}") from None
        if item.warning:
            log.warning("%s", item.warning)
        log.info("listening on %s%s", item.host,
                 " (TLS, client certificates verified)" if item.tls and config.tls_verify
                 else " (TLS)" if item.tls else "")
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
    await daemon.shutdown()


def _raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one (as dockerd's unit file does): many clients, attach
    sockets, and walks of deep trees, which hold one descriptor per level (host.fswalk.walk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1048576
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per registry request otherwise
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root (it mounts file systems and creates cgroups)")
    _raise_open_file_limit()
    config = DaemonConfig(root=args.root, hosts=tuple(args.host or [DEFAULT_HOST]),
                          default_runtime=args.default_runtime, vm_dir=args.vm_dir or "", vm_boot=args.vm_boot,
                          vm_pool=max(0, args.vm_pool), vm_pool_memory_mib=args.vm_pool_memory >> 20,
                          insecure_registries=tuple(args.insecure_registry), certs_dir=args.certs_dir,
                          registry_auth_file=args.registry_auth_file, bridge=args.bridge, bip=args.bip,
                          tls=args.tls or args.tlsverify, tls_verify=args.tlsverify, tls_ca=args.tlscacert,
                          tls_cert=args.tlscert, tls_key=args.tlskey, max_json_body=args.max_json_body,
                          api_idle_timeout=args.api_idle_timeout, api_head_timeout=args.api_head_timeout,
                          api_body_timeout=args.api_body_timeout)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
