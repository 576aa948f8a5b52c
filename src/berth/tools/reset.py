"""`berth system reset`: remove everything a data root put on the host, then the root itself.

Strategy: run on the host, as root, with berthd stopped (`guard` holds the root's pid-file lock,
the one berthd takes, for the whole reset, so no berthd starts meanwhile; it refuses while a
berthd holds it or a berthd process names the root). Then, in the order that lets each step
succeed: the runtimes delete their containers (`runc`/`runsc --root <root>/runtime/<name>
delete --force`), whatever still runs for the root is killed (processes that name the root in
their argv, whose root directory lies under it, or in its containers' cgroups; frozen cgroups are
thawed first), mounts under the root are unmounted deepest first (lazily when busy), the bridges
of the root's networks (read from its database, read-only) and their containers' veths and taps
are deleted, its nftables tables (ip and ip6), the containers' emptied cgroups, the VM templates
of an explicit --vm-dir (one shared by every root is left alone), and last the data root, by
descriptor, never following a symlink and never descending into a mount that is still there.
Every step says what it removed through `say`; what could not be removed is collected in the
Outcome, which decides the exit code. Decisions on the facts are berth.tools.resetplan's.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass

from berth.errors import BerthError, Conflict, FailedPrecondition
from berth.host import fs, leftovers, mount, nftables, proc
from berth.metadata import readonly
from berth.tools import resetplan
from berth.tools.resetplan import Outcome

Say = Callable[[str], None]
KILL_WAIT = 10.0  # seconds to wait for killed processes to be gone
RUNTIMES = {"runc": (), "runsc": ("--ignore-cgroups",)}


@dataclass(frozen=True, slots=True)
class Options:
    root: str
    vm_dir: str | None = None  # None: not given (templates are shared by every root: left alone)
    bridge: str | None = None


def guard(root: str) -> int | None:
    """Refuse while a berthd serves *root*; return the held lock on its pid file (None: no pid file).

    Raises:
        Conflict: a berthd holds the root (its pid and how to stop it in the message).
    """
    stop = ("stop it first (`systemctl stop berthd`, or `kill {pid}`, the pid in "
            f"{os.path.join(root, 'berthd.pid')}), then run the reset again")
    for p in leftovers.processes():
        served = resetplan.berthd_root(p.argv)
        if served is not None and os.path.abspath(served) == root and p.pid != os.getpid():
            raise Conflict(f"a berthd (pid {p.pid}) is serving {root}: " + stop.format(pid=p.pid))
    path = os.path.join(root, "berthd.pid")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FailedPrecondition(f"cannot open {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise Conflict(f"a berthd (pid {pid}) is serving {root}: " + stop.format(pid=pid)) from None
    return fd


def check_root(root: str) -> str:
    """The root to reset, absolute; refuses a symlink, a non-directory and a directory berth did not make.

    Raises:
        InvalidArgument: a system directory. FailedPrecondition: not a berth data root.
    """
    path = resetplan.check_root(root)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path  # gone already: what it left on the host can still be removed
    if stat.S_ISLNK(st.st_mode):
        raise FailedPrecondition(f"{path} is a symbolic link: give the data root's real path "
                                 f"({os.path.realpath(path)}?); reset never follows a link")
    if not stat.S_ISDIR(st.st_mode):
        raise FailedPrecondition(f"{path} is not a directory: not a berth data root")
    entries = os.listdir(path)
    if entries and not resetplan.looks_like_root(entries):
        raise FailedPrecondition(f"{path} does not look like a berth data root (no berthd.pid, berth.db, "
                                 "containers/ or blobs/ in it): nothing removed")
    return path


def _run(argv: list[str]) -> proc.Result:
    return asyncio.run(proc.run(argv, timeout=60, check=False))


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def reset(opts: Options, say: Say) -> Outcome:
    """Remove what the root *opts.root* (already checked, and guarded) left on the host, then the root."""
    root, out = opts.root, Outcome()

    def done(line: str) -> None:
        out.done.append(line)
        say(line)

    db = os.path.join(root, "berth.db")
    try:
        networks = [doc for _, doc in readonly.documents(db, "networks")]
        recorded = [cid for cid, _ in readonly.documents(db, "containers")]
    except FailedPrecondition as exc:
        out.failed.append(f"the records in berth.db: {exc}; bridges of user networks may be left "
                          "(`ip -br link show type bridge` lists them; --bridge names the default one)")
        networks, recorded = [], []
    ids = set(recorded) | set(resetplan.container_ids(_listdir(os.path.join(root, "containers"))))

    _delete_runtime_state(root, ids, done, out)
    _kill_processes(root, ids, done, out)
    _unmount_all(root, done, out)
    net_ids = [str(doc.get("Id") or "") for doc in networks]
    _delete_interfaces(resetplan.interface_names(ids, net_ids, _listdir(os.path.join(root, "s"))), done, out)
    _delete_bridges(resetplan.bridge_names(networks, opts.bridge, root), done, out)
    _delete_tables(resetplan.nft_table(root), done, out)
    _remove_cgroups(ids, done, out)
    if opts.vm_dir:
        _remove_templates(os.path.abspath(opts.vm_dir), done, out)
    else:
        say("VM templates: left in place (a --vm-dir is shared by every data root; "
            "pass --vm-dir DIR to remove the templates in it)")
    _remove_root(root, done, out)
    return out


def _delete_runtime_state(root: str, ids: set[str], done: Say, out: Outcome) -> None:
    for name, extra in RUNTIMES.items():
        state = os.path.join(root, "runtime", name)
        held = resetplan.container_ids(_listdir(state))
        if not held:
            continue
        for cid in held:
            ids.add(cid)
            try:
                res = _run([name, "--root", state, *extra, "delete", "--force", cid])
            except FailedPrecondition:
                out.failed.append(f"{name} is not installed: its containers in {state} were killed instead")
                break
            if res.returncode == 0:
                done(f"Deleted {name} container {cid[:12]}")
            else:
                done(f"{name} could not delete container {cid[:12]} "
                     f"({res.stderr.decode(errors='replace').strip()[-200:]}); killing its processes")


def _kill_processes(root: str, ids: set[str], done: Say, out: Outcome) -> None:
    spare = leftovers.ancestors(os.getpid())
    deadline = time.monotonic() + KILL_WAIT
    killed: set[int] = set()
    while True:
        targets: dict[int, str] = {}
        for cid in ids:
            for d in leftovers.cgroup_dirs(cid):
                if leftovers.thaw(d):
                    done(f"Thawed frozen cgroup {d}")
                for pid in leftovers.cgroup_pids(d):
                    targets.setdefault(pid, f"in cgroup of container {cid[:12]}")
        for p in leftovers.processes():
            if p.pid in spare or not p.argv:
                continue
            if resetplan.mentions(p.argv, root):
                targets[p.pid] = p.name
            elif p.root and resetplan.mentions([p.root], root):
                targets[p.pid] = f"{p.name}, in a container"
        targets = {pid: why for pid, why in targets.items() if pid not in spare and proc.pid_alive(pid)}
        if not targets:
            return
        if time.monotonic() > deadline:
            out.failed.append("processes still running: " + ", ".join(
                f"{pid} ({why})" for pid, why in sorted(targets.items())))
            return
        for pid, why in sorted(targets.items()):
            if leftovers.kill(pid) and pid not in killed:
                killed.add(pid)
                done(f"Killed process {pid} ({why})")
        time.sleep(0.1)


def _unmount_all(root: str, done: Say, out: Outcome) -> None:
    for _ in range(5):
        points = resetplan.unmount_order(mount.mounts_under(root), root)
        if not points:
            return
        for point in points:
            try:
                mount.unmount(point, lazy=False)
                done(f"Unmounted {point}")
            except FailedPrecondition:
                try:
                    mount.unmount(point, lazy=True)
                    done(f"Unmounted {point} (lazily: it was busy)")
                except FailedPrecondition as exc:
                    out.failed.append(str(exc))
                    return
    left = mount.mounts_under(root)
    if left:
        out.failed.append("mounts left under the root: " + ", ".join(sorted(set(left))))


def _delete_interfaces(names: list[str], done: Say, out: Outcome) -> None:
    for name in names:
        try:
            kind = leftovers.link_kind(name)
            if kind is None:
                continue
            if not resetplan.is_port_to_remove(name, kind):
                out.failed.append(f"interface {name} is a {kind or 'device'}, not berth's veth or tap: left alone")
                continue
            leftovers.delete_link(name)
            done(f"Deleted interface {name} (a container's {kind})")
        except BerthError as exc:
            out.failed.append(f"interface {name}: {exc}")


def _delete_bridges(names: list[str], done: Say, out: Outcome) -> None:
    for name in names:
        try:
            kind = leftovers.link_kind(name)
            if kind is None:
                continue
            if kind != "bridge":
                out.failed.append(f"interface {name} is a {kind or 'device'}, not a bridge: left alone")
                continue
            for port, port_kind in leftovers.bridge_ports(name):
                if resetplan.is_port_to_remove(port, port_kind):
                    leftovers.delete_link(port)
                    done(f"Deleted interface {port} (a container's {port_kind} on {name})")
            leftovers.delete_link(name)
            done(f"Deleted bridge {name}")
        except BerthError as exc:
            out.failed.append(f"bridge {name}: {exc}")


def _delete_tables(table: str, done: Say, out: Outcome) -> None:
    try:
        listing = _run(["nft", "list", "tables"])
    except FailedPrecondition:
        return  # no nft: no table either
    families = resetplan.nft_families(listing.stdout.decode(errors="replace"), table)
    if not families:
        return
    try:
        asyncio.run(nftables.remove_all(table=table))
    except BerthError as exc:
        out.failed.append(f"nftables table {table}: {exc}")
        return
    for family in families:
        done(f"Deleted nftables table {family} {table}")


def _remove_cgroups(ids: set[str], done: Say, out: Outcome) -> None:
    for cid in sorted(ids):
        for d in leftovers.cgroup_dirs(cid):
            left = leftovers.remove_cgroup(d)
            if left:
                out.failed.append(f"cgroup {d} still has processes: left in place")
            else:
                done(f"Removed cgroup {d}")
    leftovers.remove_parent_if_empty()


def _remove_templates(vm_dir: str, done: Say, out: Outcome) -> None:
    templates = os.path.join(vm_dir, "templates")
    try:
        st = os.lstat(templates)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        out.failed.append(f"{templates} is not a directory (a link?): left alone")
        return
    if mount.mounts_under(templates):
        out.failed.append(f"{templates} has mounts under it: left in place")
        return
    try:  # the lock template builds and clones take (vm.templatefiles): not while one is at work
        lock = os.open(os.path.join(templates, ".lock"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        lock = None
    except OSError as exc:
        out.failed.append(f"{templates}/.lock: {exc.strerror}: left in place")
        return
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fs.rmtree(templates)
    except BlockingIOError:
        out.failed.append(f"{templates}: a template is being built or cloned (another berthd?): left in place")
        return
    finally:
        release(lock)
    if os.path.lexists(templates):
        out.failed.append(f"could not remove all of {templates}")
    else:
        done(f"Removed VM templates {templates} (the kernel and initramfs prepared in {vm_dir} stay)")


def _remove_root(root: str, done: Say, out: Outcome) -> None:
    if not os.path.lexists(root):
        return
    mounted = mount.mounts_under(root)
    if not mounted:
        fs.rmtree(root)
    else:  # never through a mount: remove what holds none, leave the rest and say so
        for name in _listdir(root):
            sub = os.path.join(root, name)
            if not any(m == sub or m.startswith(sub + "/") for m in mounted):
                fs.rmtree(sub)
        out.failed.append(f"{root}: left in place, mounts are still under it ({', '.join(sorted(set(mounted)))})")
        return
    if os.path.lexists(root):
        left = sorted(_listdir(root))[:10]
        out.failed.append(f"could not remove all of {root} (left: {', '.join(left) or 'the directory'})")
    else:
        done(f"Removed data root {root}")


def release(fd: int | None) -> None:
    """Let go of the lock `guard` took."""
    if fd is not None:
        os.close(fd)
