"""Prepare a container's OCI bundle: root mount, generated /etc files, config.json.

Strategy: the container record (API-shaped Config/HostConfig) is turned into
a runtime_spec.ContainerSpec here, once, for every isolation driver. The
only I/O is reading the image's /etc/passwd and /etc/group for the user
(inside the root, through berth.host.fstree: bounded, regular files only) and
writing the bundle's files. build_spec blocks: the caller runs it in a thread.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import resource
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import FailedPrecondition, InvalidArgument, NotRegularFile
from berth.host import devices, fs, fstree, mount
from berth.oci import capabilities, hostresources, passwd, runtime_spec, seccomp
from berth.services import hostlimits, validate
from berth.services.links import Link, merged_env
from berth.services.records import ContainerRecord
from berth.snapshot.overlay import OverlayMount
from berth.wire.containerspec import ContainerConfig, HostConfig

log = logging.getLogger(__name__)

ROOTFS = "rootfs"  # a container's root mount point in its directory (snapshot.overlay.Snapshots.container_mount)
USER_FILE_LIMIT = 4 << 20  # /etc/passwd, /etc/group: more is an attack, not an image
INIT_BINARY = "/usr/bin/tini-static"
INIT_PATH = "/sbin/docker-init"


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What this host lets a container have, read once at daemon start."""

    capabilities: tuple[str, ...]   # the daemon's bounding set
    nofile: int                     # RLIMIT_NOFILE a container may get
    swap_accounting: bool
    seccomp_abis: tuple[str, ...] | None = None  # the ABIs the kernel runs, for the seccomp filter; None = all
    cgroup: hostlimits.CgroupSupport = hostlimits.CgroupSupport()  # what the cgroup hierarchy offers

    @classmethod
    def probe(cls) -> HostFacts:
        caps: tuple[str, ...] = ()
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    caps = tuple(capabilities.from_bitmask(int(line.split()[1], 16)))
        return cls(caps, min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
                   os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
                   seccomp.kernel_abis(os.uname().machine, _kernel_config(), read_text("/proc/cmdline") or ""),
                   hostlimits.CgroupSupport.probe())


def _kernel_config() -> str | None:
    """/proc/config.gz's text, or None when this kernel does not publish its build config."""
    try:
        with gzip.open("/proc/config.gz", "rt", errors="replace") as f:
            return f.read(4 << 20)
    except OSError:
        return None


def read_text(path: str) -> str | None:
    """A host file's text, or None when it does not exist (never a path inside a container root)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(USER_FILE_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return None


def user_files(rootfs: str, user: str) -> tuple[str | None, str | None]:
    """The image's /etc/passwd and /etc/group text (None when absent), read inside *rootfs* (berth.host.fstree).

    Blocking: call from a thread when on the event loop.

    Raises:
        InvalidArgument: a file that is not a regular file, too large, or a symlink loop:
            "unable to find user nobody: /etc/passwd is not a regular file (a FIFO)". Also with
            no user (root): runc reads these files itself in the container, and would block on a FIFO.
    """
    out: list[str | None] = []
    try:
        root = fstree.Root(rootfs)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    with root:
        for path in ("/etc/passwd", "/etc/group"):
            try:
                data = fstree.read_regular(root, path, USER_FILE_LIMIT)
            except InvalidArgument as exc:
                raise InvalidArgument(f"unable to find user {user or 'root'}: {exc}") from exc
            out.append(None if data is None else data.decode("utf-8", errors="replace"))
    return out[0], out[1]


def check_etc_targets(rootfs: str) -> None:
    """Refuse an image whose /etc/hostname, hosts or resolv.conf (resolved inside *rootfs*) is there but is
    not a regular file: berth mounts its own file over each, and a runtime would block on a FIFO.

    Raises:
        NotRegularFile: "cannot set up /etc/hosts in the container: /etc/hosts is not a regular file (a FIFO)".
        SymlinkLoop: a link loop on the way.
    """
    try:
        root = fstree.Root(rootfs)
    except (FileNotFoundError, NotADirectoryError):
        return
    with root:
        for name in ("hostname", "hosts", "resolv.conf"):
            st = fstree.stat_in(root, f"/etc/{name}")
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(f"cannot set up /etc/{name} in the container: "
                                     f"/etc/{name} is not a regular file ({fstree.kind_of(st.st_mode)})")


def mount_root(m: OverlayMount) -> None:
    for d in (m.upper, m.work, m.target):
        os.makedirs(d, exist_ok=True)
    mount.mount_overlay(list(m.lower), m.upper, m.work, m.target)


def unmount_root(m: OverlayMount) -> None:
    mount.unmount(m.target)


async def remove_bundle(directory: str) -> None:
    """A removed container's directory: its root unmounted, then the tree deleted, both in worker threads.

    The unmount comes first (the deletion must never walk into a root still mounted); when it fails the
    directory is left, for the sweep at the next daemon start.
    """
    try:
        await asyncio.to_thread(mount.unmount, os.path.join(directory, ROOTFS))
    except FailedPrecondition:
        log.exception("unmount the root of removed container %s; its directory is left", directory)
        return
    await fs.remove_tree(directory)


def process_args(cfg: ContainerConfig) -> list[str]:
    """Entrypoint + Cmd of a container's Config, as Docker joins them (Path and Args in inspect)."""
    return list(cfg.entrypoint or []) + list(cfg.cmd or [])


def write_etc_files(record: ContainerRecord, bundle: str, network: Any = None,
                    links: Sequence[Link] = ()) -> list[runtime_spec.BindMount]:
    """/etc/hostname, hosts and resolv.conf for the container (*network*: its addresses and DNS, if bridged;
    *links*: its legacy links, a hosts line each)."""
    cfg, host = record.config, record.host
    network_info = network
    hostname = record.hostname
    network = record.network_mode
    if network == "host":
        hostname = cfg.hostname or os.uname().nodename
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    addresses = list(getattr(network_info, "hosts", []) or [])
    if network != "host" and not addresses:
        hosts += f"127.0.1.1\t{hostname}\n"
    for address, name in [*(link.hosts_line() for link in links if link.ip), *addresses]:
        hosts += f"{address}\t{name}\n"
    for extra in host.extra_hosts or []:
        name, _, addr = extra.partition(":")
        hosts += f"{addr}\t{name}\n"
    resolv = read_text("/etc/resolv.conf") or ""
    if network != "host":
        resolv = "".join(line + "\n" for line in resolv.splitlines()
                         if not line.strip().startswith("nameserver 127."))
    embedded = list(getattr(network_info, "nameservers", []) or [])
    if embedded:  # a user-defined network: its resolver answers names, and forwards the rest
        resolv = "".join(f"nameserver {ns}\n" for ns in embedded) + "".join(
            line + "\n" for line in resolv.splitlines() if not line.strip().startswith("nameserver"))
    for dns in host.dns or []:
        resolv = f"nameserver {dns}\n" + resolv
    resolv = hostresources.with_resolv_words(  # --dns-search, --dns-option
        resolv, hostresources.resolv_words(host.extra.get("DnsSearch"), "DnsSearch"),
        hostresources.resolv_words(host.extra.get("DnsOptions"), "DnsOptions"))
    files = {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": resolv}
    mounts = []
    for name, text in files.items():
        path = os.path.join(bundle, name)
        fs.atomic_write(path, text.encode(), durable=False)  # made again at every start: no fsync
        mounts.append(runtime_spec.BindMount(path, f"/etc/{name}", options=("rprivate",)))
    return mounts


def build_spec(record: ContainerRecord, bundle: str, rootfs: str, host_facts: HostFacts,
               namespaces: dict[str, str] | None = None, network: Any = None,
               links: Sequence[Link] = ()) -> runtime_spec.ContainerSpec:
    """Write the bundle's /etc files and return the container's spec.

    Raises:
        InvalidArgument: the user does not exist in the image, or a bind source is unusable.
    """
    cfg, host = record.config, record.host
    passwd_text, group_text = user_files(rootfs, cfg.user)
    check_etc_targets(rootfs)
    uid, gid, groups = passwd.resolve_user(cfg.user, passwd_text, group_text)
    groups = with_group_add(groups, host.group_add, group_text)
    mounts = write_etc_files(record, bundle, network, links)
    tmpfs = [(k, v or "") for k, v in (host.tmpfs or {}).items()]
    for m in record.binds:  # binds, volumes (their _data) and --mount tmpfs
        if m.type == "tmpfs":
            tmpfs.append((m.destination, m.tmpfs_options))
            continue
        if not os.path.lexists(m.source):
            if not m.create_source:
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: '
                                      f'{m.source}')
            os.makedirs(m.source, exist_ok=True)  # as docker -v does for a missing host path
        mounts.append(runtime_spec.BindMount(m.source, m.destination, not m.rw, m.options))
    args = process_args(cfg)
    if host.init:
        mounts.append(runtime_spec.BindMount(INIT_BINARY, INIT_PATH, True))
        args = [INIT_PATH, "--"] + args
    env = merged_env(links, list(cfg.env or []))  # --link variables first: the container's own win
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.insert(0, f"HOSTNAME={record.hostname}")
    if uid != 0 and not any(e.startswith("HOME=") for e in env):
        home = _home(passwd_text, uid)
        env.append(f"HOME={home}")
    elif not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root")
    network = record.network_mode
    resources = resources_of(host, host_facts, block_devices=True)
    hostlimits.check_realtime_budget(host)
    nodes, device_rules = hostlimits.devices(host)  # --device: host nodes, by the user's host paths
    if host.privileged:
        taken = {d.path for d in nodes}
        nodes = tuple(d for d in devices_of_host() if d.path not in taken) + nodes
    security = validate.security_options(host.security_opt)
    spec = runtime_spec.ContainerSpec(
        args=tuple(args), rootfs=rootfs, env=tuple(env), cwd=cfg.working_dir or "/",
        uid=uid, gid=gid, additional_gids=groups,
        hostname=record.hostname if network != "host" else "",
        tty=record.tty, readonly_rootfs=host.readonly_rootfs,
        mounts=tuple(mounts), cap_add=tuple(host.cap_add or ()), cap_drop=tuple(host.cap_drop or ()),
        privileged=host.privileged,
        no_new_privileges=security.no_new_privileges, seccomp_profile=security.seccomp,
        kernel_release=os.uname().release, runtime=record.runtime or "runc",
        seccomp_abis=host_facts.seccomp_abis,
        resources=resources,
        network_mode="host" if network == "host" else (namespaces or {}).get("network", "none"),
        cgroups_path=hostlimits.cgroups_path(host, record.id), host_capabilities=host_facts.capabilities,
        devices=nodes, device_rules=device_rules,
        tmpfs=tuple(tmpfs),
        pid_mode=(namespaces or {}).get("pid", ""), ipc_mode=(namespaces or {}).get("ipc", ""),
        uts_mode=(namespaces or {}).get("uts", ""),
    )
    return hostlimits.process(spec, host, network)  # ulimits, /dev/shm size, sysctls, oom_score_adj


def with_group_add(groups: tuple[int, ...], group_add: list[str] | None, group_text: str | None) -> tuple[int, ...]:
    """The user's supplementary gids, then `HostConfig.GroupAdd`'s (the container's process and its execs).

    Raises:
        InvalidArgument: "Unable to find group X: no matching entries in group file".
    """
    extra = group_add or []
    if not isinstance(extra, list) or not all(isinstance(g, str) for g in extra):
        raise InvalidArgument("HostConfig.GroupAdd: expected an array of group names or ids")
    return groups + tuple(g for g in passwd.resolve_groups(extra, group_text) if g not in groups)


def devices_of_host() -> tuple[runtime_spec.Device, ...]:
    """The host's device nodes, for a privileged container."""
    return devices.host_devices()


def resources_of(host: HostConfig, host_facts: HostFacts, block_devices: bool = False) -> runtime_spec.Resources:
    """HostConfig's limits as runtime_spec.Resources (*block_devices*: with the Blkio*Device throttles,
    each path resolved by a stat: blocking)."""
    base = runtime_spec.Resources(
        memory=host.memory, memory_swap=host.memory_swap, nano_cpus=host.nano_cpus, cpu_shares=host.cpu_shares,
        cpu_quota=host.cpu_quota, cpu_period=host.cpu_period, pids_limit=host.pids_limit or 0,
        swap_accounting=host_facts.swap_accounting, nofile=host_facts.nofile,
        disable_oom_killer=bool(host.oom_kill_disable),
    )
    return hostlimits.resources(base, host, host_facts.cgroup, block_devices)


def _home(passwd_text: str | None, uid: int) -> str:
    for line in (passwd_text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5] or "/"
    return "/"


def write_config(spec: runtime_spec.ContainerSpec, bundle: str) -> None:
    """The bundle's config.json: *spec* as the OCI runtime reads it, for the host's architecture."""
    config = runtime_spec.build(spec, os.uname().machine)  # the host's: its seccomp architectures
    fs.atomic_write(os.path.join(bundle, "config.json"), json.dumps(config).encode(), durable=False)  # likewise
