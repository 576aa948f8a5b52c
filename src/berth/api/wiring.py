"""The composition root: build every component from a DaemonConfig.

Strategy: nothing is global. The daemon's main builds one Daemon here and
hands its parts to the API handlers; tests can build another with another
root and socket in the same process.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from berth.content.local import LocalStore
from berth.errors import FailedPrecondition
from berth.host import fs
from berth.metadata.db import Database
from berth.registry import RegistryOptions
from berth.runtime.base import Runtime
from berth.runtime.oci import OciRuntime
from berth.runtime.vm import VmRuntime
from berth.runtime.vmpool import VmPool
from berth.services import recovery
from berth.services.attachments import Attachments
from berth.services.build import Builder
from berth.services.bundle import HostFacts
from berth.services.containerrows import ContainerRows
from berth.services.containers import Containers
from berth.services.distribution import Distribution
from berth.services.events import Events
from berth.services.execs import Execs
from berth.services.health import Health
from berth.services.imageio import ImageIO
from berth.services.imageremoval import ImageRemoval
from berth.services.images import Images
from berth.services.imageviews import ImageViews
from berth.services.layers import Layers, Leases
from berth.services.lifecycle import Lifecycle
from berth.services.networks import Networks
from berth.services.records import ContainerTable
from berth.services.volumes import Volumes
from berth.snapshot.overlay import Snapshots
from berth.vm import pool


@dataclass(frozen=True)
class DaemonConfig:
    root: str = "/var/lib/berth"
    hosts: tuple[str, ...] = ("unix:///run/berth/berth.sock",)
    default_runtime: str = "runc"
    vm_dir: str = ""   # "" = <root>/vm
    vm_boot: str = "clone"  # "clone" (from a saved template when possible) or "cold"
    vm_pool: int = pool.DEFAULT_PER_SHAPE  # VMs kept restored and waiting per shape in use (0: no pool)
    vm_pool_memory_mib: int = pool.DEFAULT_MEMORY_MIB  # bound on the pooled VMs' guest RAM, all together
    runtime_paths: dict[str, str] = field(default_factory=lambda: {"runc": "runc", "runsc": "runsc"})
    insecure_registries: tuple[str, ...] = ()  # host[:port] or CIDR; loopback registries always are
    certs_dir: str = "/etc/docker/certs.d"  # <registry>/ca.crt, client.cert, client.key, as Docker reads them
    registry_auth_file: str = ""  # a docker config.json whose "auths" the daemon uses when a request brings none
    bridge: str = "berth0"  # the default bridge network's Linux bridge
    bip: str = ""  # its address and prefix (default 172.17.0.1/16)
    # The API's front door: TLS for tcp:// listeners, as dockerd's --tls/--tlsverify flags mean them.
    tls: bool = False  # serve TLS on tcp:// listeners (implied by tls_verify)
    tls_verify: bool = False  # ... and require a client certificate signed by tls_ca
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_json_body: int = 16 * 1024 * 1024  # bytes of a JSON request body; larger ones answer 413
    api_idle_timeout: float = 300.0  # s a connection may sit with no request under way
    api_head_timeout: float = 60.0  # s from a request's first byte to the end of its head (and TLS handshakes)
    api_body_timeout: float = 120.0  # s without a byte while a request body is being read


@dataclass
class Daemon:
    config: DaemonConfig
    db: Database
    store: LocalStore
    images: Images
    imageviews: ImageViews
    imageremoval: ImageRemoval
    layers: Layers
    containers: Containers
    lifecycle: Lifecycle
    execs: Execs
    events: Events
    runtimes: dict[str, Runtime]
    distribution: Distribution
    imageio: ImageIO
    networks: Networks
    builder: Builder
    vm_pool: VmPool | None = None

    async def recover(self) -> None:
        """After a (re)start, before serving: containers' records and runtimes brought into agreement,
        then the VM pool (the waiting VMs a crashed daemon left are adopted)."""
        report = recovery.Report()
        await recovery.recover(self.lifecycle, report)
        for subject, what in await asyncio.to_thread(self.containers.volumes.sweep):
            report.add(subject, what)
        if freed := await self.imageremoval.collect_async():  # what an interrupted pull, load or rmi left
            report.add("content store", f"{freed} bytes of blobs, layers and downloads no image refers to: removed")
        report.close()
        if self.vm_pool is not None:
            await self.vm_pool.start()

    async def shutdown(self) -> None:
        """A clean stop: containers keep running; what the daemon itself holds is let go."""
        await self.distribution.close()
        await self.lifecycle.settle()  # directories of removed containers still being deleted
        if self.vm_pool is not None:
            await self.vm_pool.close()
        await self.networks.shutdown()
        self.db.close()


def build(config: DaemonConfig) -> Daemon:
    root = os.path.abspath(config.root)
    try:
        private_tree(root)
    except FailedPrecondition as exc:
        raise SystemExit(f"berthd: the data root is not safe to use: {exc}") from None
    db = Database(os.path.join(root, "berth.db"))
    store = LocalStore(root)
    snaps = Snapshots(root)
    events = Events()
    runtimes: dict[str, Runtime] = {}
    sockets = os.path.join(root, "s")
    for name, binary in config.runtime_paths.items():
        path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.path.exists(binary) else None)
        if path is None:
            continue
        extra: tuple[str, ...] = ()
        if name == "runsc":
            extra = ("--network=none", "--ignore-cgroups", "--oci-seccomp")
        runtimes[name] = OciRuntime(name, path, os.path.join(root, "runtime", name), sockets, extra)
    vm_pool: VmPool | None = None
    if shutil.which("qemu-system-x86_64"):
        vm_dir = config.vm_dir or os.path.join(root, "vm")
        if config.vm_boot == "clone":
            vm_pool = VmPool(sockets, vm_dir, pool.Settings(config.vm_pool, config.vm_pool_memory_mib))
        runtimes["vm"] = VmRuntime(vm_dir, sockets, os.path.join(root, "containers"),
                                   cold_boot=config.vm_boot == "cold", pool=vm_pool)
    rows = ContainerRows(db)
    table = ContainerTable.load(rows.load(), os.path.join(root, "containers"))  # read by images, networks, volumes
    leases, layers = Leases(), Layers(store, snaps)
    images = Images(db, store, layers, leases, events, table.using_image)
    imageviews = ImageViews(images)
    imageremoval = ImageRemoval(images, imageviews, db, store, layers, leases, events)
    volumes = Volumes(root, db, events, table.mounts)
    networks = Networks(db, root, events, table.all, bridge=config.bridge, bip=config.bip,
                        table=nft_table(root), upstream_resolv=_read("/etc/resolv.conf"))
    containers = Containers(root, rows, images, snaps, events, runtimes, config.default_runtime, HostFacts.probe(),
                            table=table, volumes=volumes, networks=networks,
                            attachments=Attachments(networks, events, table.all, netns_dir=networks.netns_dir,
                                                    table=networks.table))
    options = RegistryOptions(insecure_registries=tuple(config.insecure_registries), certs_dir=Path(config.certs_dir))
    distribution = Distribution(images, layers, leases, store, events, options,
                                Path(config.registry_auth_file) if config.registry_auth_file else None)
    imageio = ImageIO(images, leases, store, events, root, layers)
    execs = Execs(containers)
    lifecycle = Lifecycle(containers, Health(containers, execs.probe_process), events)
    builder = Builder(images, imageio, containers, lifecycle, db, events, root, distribution)
    return Daemon(config, db, store, images, imageviews, imageremoval, layers, containers, lifecycle, execs, events,
                  runtimes, distribution, imageio, networks, builder, vm_pool)


# Modes of the data root and what is in it (Docker's data root is 0710). Nothing
# non-root passes through them: runc and runsc open a container's root as root
# before dropping privileges, overlay reaches its lower layers with the mounter's
# credentials, and a bind mount's source is resolved by root. A volume's _data
# keeps its own mode (what a container user writes to), as Docker's 0701 does.
PRIVATE_MODES: dict[str, int] = {
    "": 0o710, "containers": 0o700, "snapshots": 0o700, "blobs": 0o700, "ingest": 0o700, "partial": 0o700,
    "tmp": 0o700, "build": 0o700, "netns": 0o700, "s": 0o700, "runtime": 0o700, "vm": 0o700,
    "volumes": 0o701,
}


def private_tree(root: str) -> None:
    """Create or tighten the data root and its top directories (root-owned; see PRIVATE_MODES).

    Raises:
        FailedPrecondition: one of them is a symlink, not a directory, or owned by another user.
    """
    for name, mode in PRIVATE_MODES.items():
        fs.private_dir(os.path.join(root, name) if name else root, mode)


def nft_table(root: str) -> str:
    """The daemon's own nftables table: `berth` for the default root, else one per root (tests run several)."""
    if root == "/var/lib/berth":
        return "berth"
    return "berth_" + hashlib.sha256(root.encode()).hexdigest()[:8]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
