"""Templates of utility VMs: boot once per configuration, then start containers from clones.

    async with template.start_vm(artifacts, vm_dir, shares={"rootfs": root}) as vm:
        await vm.run(["uname", "-r"], rootfs_tag="rootfs")

Strategy: a template is a VM booted to its waiting agent with guest RAM in a
file on /dev/shm mapped shared, then saved (device state only, ~150 KB) and
stopped; `UtilityVM.restore` maps that RAM file privately in each clone, so
clones share every page they do not write. A clone must have the template's
devices, so the configuration key is the identity of the kernel, the
initramfs and QEMU (path, inode, size, mtime), the kernel command line, the
memory size and the sorted list of 9p share tags.

On disk, under `<vm_dir>/templates/`:

    .lock                 shared while a clone pins a template's files, exclusive to swap/clean
    <key>.lock            exclusive while that key's template is being built
    <key>/template.json   what the template is (written last, published by renaming the dir)
    <key>/state           the saved device state
    <key>.broken          a restore failed twice: clones of <key> are refused for a while
    .build-<key>/         a build in progress (or a crashed one, removed by the next build)

and the RAM at `/dev/shm/berth-templates/<vm_dir id>/<key>.<nonce>.ram` (tmpfs:
the RAM file must not be disk-backed; clones map it). /dev/shm is world-writable,
so before a template is built every level is checked (`ram_dir`): /dev/shm a
root-owned sticky directory, `berth-templates` and `<vm_dir id>` real
directories (not symlinks) owned by root, mode 0700 (tightened if wider); a
level made by anyone else makes the build fail, and containers cold-boot. The
templates directory under vm_dir is 0700 too. A new template never overwrites a file a
running clone maps: it gets a new nonce, and the old RAM file is unlinked
(running clones keep the inode). Each build removes the templates of other
kernels/initramfs/QEMU ("no longer current"), all but the MAX_TEMPLATES most
recently used (each costs its guest's touched RAM in /dev/shm), and any
orphaned RAM file whose key is not being built. `clone()` rebuilds a template that fails to restore
once, then raises `TemplateUnavailable` (an `Unavailable`) *before* yielding;
`start_vm()` catches exactly that and cold-boots instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import (
    BerthError,
    CommandFailed,
    FailedPrecondition,
    InvalidArgument,
    Unavailable,
)
from berth.host import fs
from berth.vm.boot import UtilityVM, host_tsc_khz, kernel_cmdline
from berth.vm.prepare import QEMU, Artifacts

log = logging.getLogger(__name__)

FORMAT = 3  # bump when what a template holds or how clones start changes
SHM_ROOT = Path("/dev/shm/berth-templates")
BROKEN_SECONDS = 600.0  # how long a template that failed to restore twice is not retried
MAX_TEMPLATES = 4  # per vm_dir; each holds its guest's touched RAM (~100 MiB at 256 MiB) in /dev/shm
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,31}")
_KEY = re.compile(r"[0-9a-f]{16}")


class TemplateUnavailable(Unavailable):
    """No clone could be started (template build or restore failed); cold-boot instead."""


# ---- identity ----------------------------------------------------------------------------

def file_identity(path: Path) -> list[Any]:
    """What changes when a file is replaced: resolved path, inode, size, mtime."""
    real = Path(path).resolve()
    st = real.stat()
    return [str(real), st.st_ino, st.st_size, st.st_mtime_ns]


def artifacts_id(artifacts: Artifacts, qemu_binary: Path) -> str:
    """The identity of what a template's state depends on beyond its configuration."""
    doc = [FORMAT, file_identity(artifacts.vmlinux), file_identity(artifacts.initramfs),
           file_identity(qemu_binary), artifacts.kernel_version]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def normalize_tags(share_tags: Sequence[str]) -> tuple[str, ...]:
    tags = tuple(sorted(share_tags))
    if len(set(tags)) != len(tags) or not all(_TAG.fullmatch(t) for t in tags):
        raise InvalidArgument(f"invalid 9p share tags for a template: {list(share_tags)}")
    return tags


def config_key(art_id: str, *, mem_mib: int, share_tags: Sequence[str], cmdline: str, vcpus: int = 1,
               nic: bool = False) -> str:
    """The template key: artifacts identity + memory size + sorted share tags + command line + vCPUs + a NIC."""
    doc = [art_id, int(mem_mib), list(normalize_tags(share_tags)), cmdline, int(vcpus), bool(nic)]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def shm_dir(vm_dir: Path) -> Path:
    """Where this vm_dir's template RAM files live (tmpfs)."""
    return SHM_ROOT / hashlib.sha256(str(Path(vm_dir).resolve()).encode()).hexdigest()[:12]


def ram_dir(vm_dir: Path) -> Path:
    """`shm_dir(vm_dir)`, created or checked level by level (see the module's docstring).

    Raises:
        FailedPrecondition: a level is a symlink, not a directory, owned by another user,
            or /dev/shm is writable by others without the sticky bit.
    """
    base = SHM_ROOT.parent
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or \
            (st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX):
        raise FailedPrecondition(f"{base} must be a root-owned directory, sticky when world-writable")
    fs.private_dir(str(SHM_ROOT), 0o700)
    d = shm_dir(vm_dir)
    fs.private_dir(str(d), 0o700)
    return d


def templates_dir(vm_dir: Path) -> Path:
    """`<vm_dir>/templates`, created or tightened to 0700 (root only)."""
    d = Path(vm_dir) / "templates"
    fs.private_dir(str(d), 0o700)
    return d


# ---- the template --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Template:
    """A saved template VM; `UtilityVM.restore(template, ...)` starts clones of it."""

    key: str
    dir: Path
    vm_dir: Path
    artifacts: Artifacts
    artifacts_id: str
    mem_mib: int
    share_tags: tuple[str, ...]
    cmdline: str
    kernel_release: str
    memory_file: Path
    nonce: str
    created: float
    vcpus: int = 1
    nic: bool = False  # the VM has a virtio-net card (its tap is each clone's own)

    @property
    def state_file(self) -> Path:
        return self.dir / "state"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "artifacts_id": self.artifacts_id,
                "vmlinux": str(self.artifacts.vmlinux), "initramfs": str(self.artifacts.initramfs),
                "kernel_version": self.artifacts.kernel_version, "mem_mib": self.mem_mib,
                "share_tags": list(self.share_tags), "cmdline": self.cmdline,
                "kernel_release": self.kernel_release, "memory_file": str(self.memory_file),
                "nonce": self.nonce, "created": self.created, "vcpus": self.vcpus, "nic": self.nic}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, dir: Path, vm_dir: Path) -> Template:
        """Raises InvalidArgument when *doc* is not a template of this format."""
        try:
            if doc["format"] != FORMAT:
                raise InvalidArgument(f"template format {doc['format']!r}, want {FORMAT}")
            return cls(key=str(doc["key"]), dir=dir, vm_dir=vm_dir,
                       artifacts=Artifacts(Path(doc["vmlinux"]), Path(doc["initramfs"]),
                                           str(doc["kernel_version"])),
                       artifacts_id=str(doc["artifacts_id"]), mem_mib=int(doc["mem_mib"]),
                       share_tags=tuple(str(t) for t in doc["share_tags"]), cmdline=str(doc["cmdline"]),
                       kernel_release=str(doc["kernel_release"]), memory_file=Path(doc["memory_file"]),
                       nonce=str(doc["nonce"]), created=float(doc["created"]), vcpus=int(doc["vcpus"]),
                       nic=bool(doc["nic"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"bad template.json in {dir}: {exc!r}") from None

    def complete(self) -> bool:
        """Are the template's files there (RAM file of the right size, state)?"""
        try:
            return (self.memory_file.stat().st_size == self.mem_mib << 20
                    and self.state_file.stat().st_size > 0)
        except OSError:
            return False

    @contextlib.contextmanager
    def pin(self, state_copy: Path) -> Iterator[int]:
        """Copy the state to *state_copy* and yield an fd of the RAM file (closed after).

        Done under the templates' shared lock, so a concurrent rebuild or cleanup
        cannot remove the files between reading the template and QEMU opening them.

        Raises:
            Unavailable: the template's files are gone.
        """
        with _flock(self.vm_dir / "templates" / ".lock", fcntl.LOCK_SH):
            try:
                fd = os.open(self.memory_file, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise Unavailable(f"the template's RAM file is gone: {exc}") from None
            try:
                try:
                    shutil.copyfile(self.state_file, state_copy)
                except OSError as exc:
                    raise Unavailable(f"the template's state file is gone: {exc}") from None
                yield fd
            finally:
                os.close(fd)


# ---- locks --------------------------------------------------------------------------------

@contextlib.contextmanager
def _flock(path: Path, how: int) -> Iterator[None]:
    """A blocking flock, for locks only ever held for milliseconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _aflock(path: Path, *, timeout: float) -> AsyncIterator[None]:
    """An exclusive flock awaited without blocking the loop (a template build holds it for seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise TemplateUnavailable(f"timed out after {timeout}s waiting for {path}")
            await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _lock_free(path: Path) -> bool:
    """True when nobody holds the flock on *path* (or it does not exist)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# ---- reading, cleaning ---------------------------------------------------------------------

def load_template(vm_dir: Path, key: str) -> Template | None:
    """The published template for *key*, if any (complete or not)."""
    d = Path(vm_dir) / "templates" / key
    try:
        doc = json.loads((d / "template.json").read_text())
        return Template.from_json(doc, dir=d, vm_dir=Path(vm_dir))
    except (OSError, ValueError, InvalidArgument):
        return None


def _remove_template_dir(d: Path) -> None:
    try:
        doc = json.loads((d / "template.json").read_text())
        ram = Path(doc["memory_file"])
    except (OSError, ValueError, KeyError, TypeError):
        ram = None
    shutil.rmtree(d, ignore_errors=True)
    if ram is not None:
        with contextlib.suppress(OSError):
            ram.unlink()


def remove_stale(vm_dir: Path, current_artifacts_id: str | None, *,
                 keep: int | None = None) -> list[str]:
    """Remove templates whose artifacts are not *current_artifacts_id* (None: all), all but the
    *keep* (default MAX_TEMPLATES) most recently used, leftovers of crashed builds and orphaned
    RAM files; return what was removed. Takes the global lock."""
    keep = MAX_TEMPLATES if keep is None else keep
    root = Path(vm_dir) / "templates"
    removed: list[str] = []
    if not root.is_dir():
        return removed
    with _flock(root / ".lock", fcntl.LOCK_EX):
        current: list[tuple[float, Path, Template]] = []
        for entry in sorted(root.iterdir()):
            name = entry.name
            if entry.is_dir() and _KEY.fullmatch(name):
                tpl = load_template(vm_dir, name)
                if tpl is not None and tpl.artifacts_id == current_artifacts_id:
                    with contextlib.suppress(OSError):
                        current.append((entry.stat().st_mtime, entry, tpl))
                    continue
                if not _lock_free(root / f"{name}.lock"):
                    continue  # being rebuilt right now
                _remove_template_dir(entry)
                removed.append(name)
            elif entry.is_dir() and name.startswith(".build-"):
                if _lock_free(root / f"{name[len('.build-'):]}.lock"):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(name)
            elif entry.is_dir() and name.startswith(".old-"):
                _remove_template_dir(entry)
                removed.append(name)
            elif name.endswith(".broken"):
                try:
                    doc = json.loads(entry.read_text())
                    stale = doc.get("artifacts_id") != current_artifacts_id
                except (OSError, ValueError, AttributeError):
                    stale = True
                if stale:
                    entry.unlink(missing_ok=True)
                    removed.append(name)
        current.sort(key=lambda c: c[0], reverse=True)  # most recently used first
        referenced: set[Path] = set()
        for i, (_, entry, tpl) in enumerate(current):
            if i < keep or not _lock_free(root / f"{entry.name}.lock"):
                referenced.add(tpl.memory_file)
            else:
                _remove_template_dir(entry)
                removed.append(entry.name)
        for entry in sorted(root.glob("*.lock")):
            key = entry.name[:-len(".lock")]
            if _KEY.fullmatch(key) and not (root / key).exists() and not (root / f".build-{key}").exists() \
                    and _lock_free(entry):
                entry.unlink(missing_ok=True)
        shm = shm_dir(vm_dir)
        if shm.is_dir():
            for ram in sorted(shm.glob("*.ram")):
                key = ram.name.split(".", 1)[0]
                if ram in referenced or not _lock_free(root / f"{key}.lock"):
                    continue
                ram.unlink(missing_ok=True)
                removed.append(str(ram))
            with contextlib.suppress(OSError):
                shm.rmdir()  # only when empty
    return removed


def remove_all(vm_dir: Path) -> list[str]:
    """Remove every template of *vm_dir* (e.g. when VM isolation is switched off)."""
    return remove_stale(vm_dir, None)


def _broken(root: Path, key: str) -> str | None:
    """The reason clones of *key* are refused right now, if they are."""
    marker = root / f"{key}.broken"
    try:
        doc = json.loads(marker.read_text())
        if time.time() - float(doc["at"]) < BROKEN_SECONDS:
            return str(doc.get("error", "unknown"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    marker.unlink(missing_ok=True)
    return None


def _mark_broken(root: Path, key: str, art_id: str, error: str) -> None:
    tmp = root / f".{key}.broken.{os.getpid()}"
    tmp.write_text(json.dumps({"at": time.time(), "artifacts_id": art_id, "error": error[-2000:]}))
    os.replace(tmp, root / f"{key}.broken")


# ---- building ----------------------------------------------------------------------------

def _current(artifacts: Artifacts, mem_mib: int, share_tags: Sequence[str],
             vcpus: int = 1, nic: bool = False) -> tuple[str, str, str, tuple[str, ...]]:
    """(artifacts id, key, kernel command line, sorted tags) for this configuration."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise TemplateUnavailable(f"{QEMU} is not installed")
    tags = normalize_tags(share_tags)
    cmdline = kernel_cmdline(host_tsc_khz(), vcpus=vcpus)
    art_id = artifacts_id(artifacts, Path(qemu))
    key = config_key(art_id, mem_mib=mem_mib, share_tags=tags, cmdline=cmdline, vcpus=vcpus, nic=nic)
    return art_id, key, cmdline, tags


async def ensure_template(artifacts: Artifacts, vm_dir: Path, *, mem_mib: int = 256,
                          share_tags: Sequence[str] = ("rootfs",), timeout: float = 120.0,
                          replace: Template | None = None, vcpus: int = 1, nic: bool = False) -> Template:
    """Return the template for this configuration, building it first if needed.

    *replace*: a template that failed to restore; it is rebuilt unless someone
    already replaced it. Two callers at once build one template: the second
    waits on the key's lock and then finds it.

    Raises:
        InvalidArgument: bad share tags.
        TemplateUnavailable: the configuration's clones failed recently, or the build failed.
    """
    vm_dir = Path(vm_dir)
    try:  # checked on every use (a few syscalls): a directory planted meanwhile is never used
        root = templates_dir(vm_dir)
        ram_dir(vm_dir)
    except (BerthError, OSError) as exc:
        raise TemplateUnavailable(f"the template directories are not usable: {exc}") from exc
    art_id, key, cmdline, tags = _current(artifacts, mem_mib, share_tags, vcpus, nic)

    def usable() -> Template | None:
        tpl = load_template(vm_dir, key)
        if tpl is None or not tpl.complete() or tpl.artifacts_id != art_id:
            return None
        if replace is not None and tpl.nonce == replace.nonce:
            return None
        return tpl

    if (reason := _broken(root, key)) is not None:
        raise TemplateUnavailable(f"template restore failed recently, not retried for a while: {reason}")
    if (tpl := usable()) is not None:
        with contextlib.suppress(OSError):
            os.utime(tpl.dir)  # used: what remove_stale keeps
        return tpl
    async with _aflock(root / f"{key}.lock", timeout=timeout + 60):
        if (tpl := usable()) is not None:
            return tpl  # built while we waited
        try:
            tpl = await _build(artifacts, vm_dir, key=key, art_id=art_id, cmdline=cmdline,
                               mem_mib=mem_mib, tags=tags, timeout=timeout, vcpus=vcpus, nic=nic)
        except (BerthError, OSError) as exc:
            _mark_broken(root, key, art_id, f"build: {exc}")
            raise TemplateUnavailable(f"template build failed: {exc}") from exc
    removed = remove_stale(vm_dir, art_id)
    if removed:
        log.info("removed stale VM templates: %s", ", ".join(removed))
    return tpl


async def _build(artifacts: Artifacts, vm_dir: Path, *, key: str, art_id: str, cmdline: str,
                 mem_mib: int, tags: tuple[str, ...], timeout: float, vcpus: int = 1,
                 nic: bool = False) -> Template:
    """Boot, save, stop; publish `<vm_dir>/templates/<key>` atomically. Caller holds the key lock."""
    root = vm_dir / "templates"
    build = root / f".build-{key}"
    shm = ram_dir(vm_dir)
    shutil.rmtree(build, ignore_errors=True)  # a crashed build's leftovers
    build.mkdir(parents=True)
    nonce = secrets.token_hex(6)
    ram = shm / f"{key}.{nonce}.ram"
    empty = build / "empty"  # the template's 9p devices must exist; never mounted
    empty.mkdir()
    started = time.monotonic()
    try:
        async with UtilityVM.boot(artifacts, shares={t: empty for t in tags}, mem_mib=mem_mib,
                                  timeout=timeout, memory_file=ram, vcpus=vcpus,
                                  tap=f"btt{nonce[:8]}" if nic else None) as vm:  # QEMU's own, gone with it
            await vm.save_state(build / "state", timeout=timeout)
            release = vm.kernel_release
        empty.rmdir()
        tpl = Template(key=key, dir=root / key, vm_dir=vm_dir, artifacts=artifacts, artifacts_id=art_id,
                       mem_mib=mem_mib, share_tags=tags, cmdline=cmdline, kernel_release=release,
                       memory_file=ram, nonce=nonce, created=time.time(), vcpus=vcpus, nic=nic)
        (build / "template.json").write_text(json.dumps(tpl.to_json(), indent=2))
        with _flock(root / ".lock", fcntl.LOCK_EX):
            old = root / f".old-{key}-{nonce}"
            with contextlib.suppress(FileNotFoundError):
                (root / key).rename(old)
            build.rename(root / key)
            if old.exists():
                _remove_template_dir(old)  # running clones keep their (unlinked) RAM file
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        with contextlib.suppress(OSError):
            ram.unlink()
        raise
    log.info("built VM template %s (%d MiB, %d vCPU, shares %s) in %.1fs", key, mem_mib, vcpus,
             ",".join(tags), time.monotonic() - started)
    return tpl


# ---- clones ---------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def clone(artifacts: Artifacts, vm_dir: Path, *, shares: Mapping[str, Path], mem_mib: int = 256,
                workdir: Path | None = None, timeout: float = 60.0, vcpus: int = 1,
                readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
    """A clone of this configuration's template (built on first use), with its own *shares*.

    Raises (before yielding):
        TemplateUnavailable: no template could be built, or restoring failed even
            after rebuilding it once. The caller should cold-boot instead.
    """
    vm_dir = Path(vm_dir)
    async with contextlib.AsyncExitStack() as stack:
        vm: UtilityVM | None = None
        tpl: Template | None = None
        failure: BaseException | None = None
        for attempt in range(2):
            tpl = await ensure_template(artifacts, vm_dir, mem_mib=mem_mib, share_tags=tuple(shares),
                                        replace=tpl if attempt else None, vcpus=vcpus, nic=tap is not None)
            try:
                vm = await stack.enter_async_context(
                    UtilityVM.restore(tpl, shares=shares, workdir=workdir, timeout=timeout, readonly=readonly,
                                      tap=tap))
                break
            except (Unavailable, CommandFailed, OSError) as exc:
                failure = exc
                log.warning("restoring VM template %s failed (%s)%s", tpl.key, exc,
                            ": rebuilding it" if attempt == 0 else "")
        if vm is None:
            assert tpl is not None
            _mark_broken(vm_dir / "templates", tpl.key, tpl.artifacts_id, f"restore: {failure}")
            raise TemplateUnavailable(f"template restore failed: {failure}") from failure
        yield vm


@contextlib.asynccontextmanager
async def start_vm(artifacts: Artifacts, vm_dir: Path, *, shares: Mapping[str, Path], mem_mib: int = 256,
                   workdir: Path | None = None, timeout: float = 60.0,
                   templates: bool = True, vcpus: int = 1,
                   readonly: Collection[str] = (), tap: str | None = None) -> AsyncIterator[UtilityVM]:
    """A VM for a container: a template clone when possible, else a cold boot."""
    if templates:
        entered = False
        try:
            async with clone(artifacts, vm_dir, shares=shares, mem_mib=mem_mib, workdir=workdir,
                             timeout=timeout, vcpus=vcpus, readonly=readonly, tap=tap) as vm:
                entered = True
                yield vm
            return
        except TemplateUnavailable as exc:
            if entered:
                raise
            log.warning("starting the VM by cold boot: %s", exc)
    async with UtilityVM.boot(artifacts, shares=shares, mem_mib=mem_mib, workdir=workdir,
                              timeout=timeout, vcpus=vcpus, readonly=readonly, tap=tap) as vm:
        yield vm
