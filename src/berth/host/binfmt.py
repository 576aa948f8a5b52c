"""Foreign-architecture programs under qemu-user, through the kernel's binfmt_misc.

Strategy: binfmt_misc maps a byte pattern at the start of a file (here the ELF
header's class, byte order and machine) to an interpreter. For containers the
entry needs the F (fix-binary) flag: the kernel then opens the interpreter once,
at registration, in berth's mount namespace, so it also runs binaries inside a
container whose root has no qemu at all. Without F the interpreter is looked up
by path inside the container at every exec, and fails there.

The decision is pure (`plan`), made from the entries the kernel lists and the
ELF table below; only `ensure_emulator` reads /proc and writes to it, under an
flock so that concurrent callers (threads or processes) take turns.

Facts the plan relies on (checked on Linux 6.x, fs/binfmt_misc.c): a new entry
goes to the head of the kernel's list and the list is searched from the head,
so the entry registered last wins when several match. Berth never touches an
entry that is not its own: when another one matches without F, berth registers
its own again so that it is the newest, and says how to fix the other.

Debian 12's qemu-user-static ships both /usr/lib/binfmt.d/qemu-*.conf
(systemd-binfmt, flags OPF) and /usr/share/binfmts/qemu-* (binfmt-support,
fix_binary yes), both naming /usr/libexec/qemu-binfmt/<arch>-binfmt-P; neither
registers anything where systemd is not PID 1 and binfmt-support is absent, nor
in a container. Either way the entry is called qemu-<arch> and has F, so berth
uses it when present; otherwise it registers berth-qemu-<arch> itself, with the
same interpreter and flags P (keep argv[0]), O (pass the binary as an fd) and F.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from berth.errors import FailedPrecondition, InvalidArgument, NotImplemented_
from berth.host import mount as host_mount
from berth.oci import platform

log = logging.getLogger(__name__)

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
LOCK_PATH = Path("/run/lock/berth-binfmt.lock")
FLAGS = "POF"
_CONTROL_FILES = frozenset({"register", "status"})


# --------------------------------------------------------------------------- #
# The ELF table: which header bytes mean "a Linux program for this machine".


@dataclass(frozen=True, slots=True)
class ElfFormat:
    """An architecture's ELF identity: class (32/64 bit), byte order and e_machine."""

    qemu: str          # qemu-user name: aarch64, arm, x86_64, ...
    bits: int          # 32 or 64 (EI_CLASS 1 or 2)
    big_endian: bool   # EI_DATA 2 when true, 1 otherwise
    machine: int       # e_machine

    def magic(self) -> bytes:
        """The first 20 bytes of an executable (ET_EXEC) for this architecture."""
        order = ">" if self.big_endian else "<"
        ident = b"\x7fELF" + bytes([1 if self.bits == 32 else 2, 2 if self.big_endian else 1, 1, 0]) + bytes(8)
        return ident + struct.pack(order + "HH", 2, self.machine)

    def mask(self) -> bytes:
        """Which bits of magic() must match: all but EI_OSABI and the EXEC/DYN bit of e_type."""
        e_type = b"\xff\xfe" if self.big_endian else b"\xfe\xff"
        return b"\xff" * 7 + b"\x00" + b"\xff" * 8 + e_type + b"\xff\xff"


# e_machine numbers from the ELF specification / <elf.h>.
ELF_FORMATS: dict[str, ElfFormat] = {f.qemu: f for f in (
    ElfFormat("x86_64", 64, False, 62),
    ElfFormat("i386", 32, False, 3),
    ElfFormat("aarch64", 64, False, 183),
    ElfFormat("arm", 32, False, 40),
    ElfFormat("ppc64le", 64, False, 21),
    ElfFormat("ppc64", 64, True, 21),
    ElfFormat("s390x", 64, True, 22),
    ElfFormat("riscv64", 64, False, 243),
    ElfFormat("mips64el", 64, False, 8),
    ElfFormat("loongarch64", 64, False, 258),
)}


# --------------------------------------------------------------------------- #
# Pure parsing and formatting.


@dataclass(frozen=True, slots=True)
class Entry:
    """One binfmt_misc registration, as /proc/sys/fs/binfmt_misc/<name> shows it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes
    extension: str = ""    # set for extension (E) entries, which have no magic


def parse_entry(text: str, name: str = "") -> Entry:
    """Parse the text of /proc/sys/fs/binfmt_misc/<name>.

    Raises:
        InvalidArgument: the text is not in the kernel's format.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0] not in ("enabled", "disabled"):
        raise InvalidArgument(f"binfmt_misc entry {name!r}: first line is not enabled/disabled: {text[:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "interpreter" not in fields:
        raise InvalidArgument(f"binfmt_misc entry {name!r} names no interpreter: {text[:80]!r}")
    try:
        magic = bytes.fromhex(fields.get("magic", ""))
        mask = bytes.fromhex(fields.get("mask", ""))
        offset = int(fields.get("offset", "0"))
    except ValueError as exc:
        raise InvalidArgument(f"binfmt_misc entry {name!r}: bad magic, mask or offset ({exc})") from None
    return Entry(name=name, enabled=lines[0] == "enabled", interpreter=fields["interpreter"],
                 flags=fields.get("flags", ""), offset=offset, magic=magic, mask=mask,
                 extension=fields.get("extension", ""))


def _escape(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def register_line(name: str, arch: str, interpreter: str, flags: str = FLAGS) -> str:
    """The line to write to binfmt_misc's register file for *arch* (a qemu-user name).

    Gives ":name:M:0:magic:mask:interpreter:flags", bytes written as \\xHH.

    Raises:
        InvalidArgument: unknown arch, or a name or interpreter binfmt_misc cannot take.
    """
    fmt = ELF_FORMATS.get(arch)
    if fmt is None:
        raise InvalidArgument(f"no ELF pattern for {arch!r}: berth knows {', '.join(sorted(ELF_FORMATS))}")
    if not name or name in (".", "..") or any(c in name for c in ":/\n") or len(name) > 200:
        raise InvalidArgument(f"bad binfmt_misc name {name!r}: no ':' or '/', not '.' or '..'")
    if not interpreter.startswith("/") or any(c in interpreter for c in ":\n"):
        raise InvalidArgument(f"bad interpreter {interpreter!r}: an absolute path without ':'")
    return f":{name}:M:0:{_escape(fmt.magic())}:{_escape(fmt.mask())}:{interpreter}:{flags}"


def handles(entry: Entry, fmt: ElfFormat) -> bool:
    """True when *entry* would claim an executable of *fmt*'s architecture."""
    if entry.extension or not entry.magic:
        return False
    sample = fmt.magic()
    mask = entry.mask or b"\xff" * len(entry.magic)
    end = entry.offset + len(entry.magic)
    if entry.offset < 0 or end > len(sample) or len(mask) != len(entry.magic):
        return False
    window = sample[entry.offset:end]
    return all((s & m) == (e & m) for s, m, e in zip(window, mask, entry.magic, strict=True))


def is_static_elf(data: bytes) -> bool:
    """True when the ELF image starting *data* has no PT_INTERP (needs no dynamic loader).

    *data* must hold the ELF header and program headers (the first 64 KiB do, in practice).

    Raises:
        InvalidArgument: not an ELF file, or the program headers lie beyond *data*.
    """
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise InvalidArgument("not an ELF file")
    order = ">" if data[5] == 2 else "<"
    if data[4] == 2:
        phoff, = struct.unpack_from(order + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(order + "I", data, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 42)
    if phoff + phentsize * phnum > len(data):
        raise InvalidArgument("ELF program headers lie beyond the bytes given")
    pt_interp = 3
    return all(struct.unpack_from(order + "I", data, phoff + i * phentsize)[0] != pt_interp
               for i in range(phnum))


def our_names(arch: str) -> tuple[str, str]:
    """The two names berth registers *arch* under (it alternates to move to the front)."""
    return (f"berth-qemu-{arch}", f"berth-qemu-{arch}-2")


@dataclass(frozen=True, slots=True)
class Plan:
    """What ensure_emulator does for one architecture, decided from the kernel's entries.

    Either *use* an entry that already works (removing *remove_after*, stale entries
    of berth's), or remove *remove_first*, register berth's entry as *register*, then
    remove *remove_after*. *blockers* are other entries without F that break containers.
    """

    use: Entry | None = None
    register: str = ""
    remove_first: tuple[str, ...] = ()
    remove_after: tuple[str, ...] = ()
    blockers: tuple[Entry, ...] = ()


def plan(arch: str, entries: list[Entry], interpreter_ok: Callable[[str], bool]) -> Plan:
    """Decide how to get a fix-binary handler for *arch* in front of the kernel's list.

    *interpreter_ok(path)* says whether another party's interpreter exists on the host.
    """
    fmt = ELF_FORMATS[arch]
    names = our_names(arch)
    mine = [e for e in entries if e.name in names]
    good = [e for e in mine if e.enabled and "F" in e.flags and handles(e, fmt)]
    foreign = [e for e in entries if e.name not in names and e.enabled and handles(e, fmt)]
    blockers = tuple(e for e in foreign if "F" not in e.flags)
    if not blockers:
        stale = tuple(e.name for e in mine if e not in good[:1])
        if good:
            return Plan(use=good[0], remove_after=stale)
        usable = [e for e in foreign if interpreter_ok(e.interpreter)]
        if usable:
            return Plan(use=usable[0], remove_after=stale)
    # Register ours now, so it is the newest entry and the kernel tries it first.
    taken = {e.name for e in mine}
    free = [n for n in names if n not in taken]
    if free:
        return Plan(register=free[0], remove_after=tuple(e.name for e in mine), blockers=blockers)
    reuse = next((e.name for e in mine if e not in good), names[1])
    return Plan(register=reuse, remove_first=(reuse,),
                remove_after=tuple(n for n in names if n != reuse), blockers=blockers)


def runs_natively(wanted: platform.Platform, host: platform.Platform) -> bool:
    """True when *wanted*'s programs need no emulator on *host*.

    The same architecture always counts as native, whatever the variants say:
    an emulator registered for the host's own ELF machine would capture every
    program on the host. x86-64 kernels also run i386 programs.
    """
    w, h = platform.normalize(wanted), platform.normalize(host)
    if w.architecture == h.architecture:
        return True
    return (h.architecture, w.architecture) == ("amd64", "386")


# --------------------------------------------------------------------------- #
# I/O: reading and changing the kernel's table.


def read_entries(root: Path = BINFMT_DIR) -> list[Entry]:
    """Every registration binfmt_misc at *root* lists (entries removed meanwhile are skipped)."""
    out = []
    for name in sorted(os.listdir(root)):
        if name in _CONTROL_FILES:
            continue
        try:
            text = (root / name).read_text()
        except FileNotFoundError:
            continue
        try:
            out.append(parse_entry(text, name))
        except InvalidArgument as exc:
            log.warning("ignoring binfmt_misc entry %s: %s", name, exc)
    return out


def ensure_mounted(root: Path = BINFMT_DIR) -> None:
    """Mount binfmt_misc at *root* unless it is there already.

    Raises:
        FailedPrecondition: the kernel has no binfmt_misc, or the mount was refused.
    """
    if (root / "register").exists():
        return
    if not root.is_dir():
        raise FailedPrecondition(
            f"this kernel has no binfmt_misc ({root} is missing): load it with `modprobe binfmt_misc`, "
            "or run foreign-architecture images on a host of their architecture")
    try:
        host_mount.mount("binfmt_misc", str(root), "binfmt_misc")
    except FailedPrecondition as exc:
        raise FailedPrecondition(
            f"cannot mount binfmt_misc on {root} ({exc}): run berthd as root, or mount it yourself "
            f"with `mount -t binfmt_misc binfmt_misc {root}`") from exc


def find_interpreter(arch: str) -> Path | None:
    """A static qemu-user for *arch* on this host (Debian's binfmt name first), or None."""
    for candidate in (Path(f"/usr/libexec/qemu-binfmt/{arch}-binfmt-P"), Path(f"/usr/bin/qemu-{arch}-static")):
        try:
            with open(candidate, "rb") as f:
                head = f.read(65536)
        except OSError:
            continue
        try:
            static = is_static_elf(head)
        except InvalidArgument:
            continue
        if static:
            return candidate
        log.debug("%s is dynamically linked: it cannot run inside containers", candidate)
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, text: str, what: str) -> None:
    """Write *text* to a binfmt_misc file in one write(2); removing what is gone already is fine."""
    removing = text == "-1"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        if removing and exc.errno == errno.ENOENT:
            return
        hint = {errno.EEXIST: "another program registered the same name meanwhile: try again",
                errno.ENOENT: "the interpreter is missing: reinstall qemu-user-static",
                errno.EPERM: "only root (in the host's user namespace) may change binfmt_misc",
                errno.EACCES: "only root may change binfmt_misc"}.get(exc.errno or 0, "see the kernel log")
        raise FailedPrecondition(f"binfmt_misc: {what} failed: {os.strerror(exc.errno or 0)} ({hint})") from exc


def _machine_name(p: platform.Platform) -> str:
    try:
        return platform.uname_machine(p)
    except NotImplemented_:
        return str(p)


def ensure_emulator(wanted: platform.Platform, *, root: Path = BINFMT_DIR,
                    lock_path: Path = LOCK_PATH, host: platform.Platform | None = None) -> Path | None:
    """Make the kernel run *wanted*'s programs, inside containers too; return the emulator.

    Returns None when this host runs them natively, else the qemu-user interpreter
    of the binfmt_misc entry that now handles them (berth's own, or another fix-binary
    one already registered). Idempotent; concurrent callers take turns on an flock.
    Blocking (file I/O and a lock held for milliseconds): from async code, call it
    through asyncio.to_thread.

    Raises:
        InvalidArgument: *wanted* is not a Linux platform.
        NotImplemented_: berth knows no emulator for that architecture.
        FailedPrecondition: binfmt_misc is missing or disabled, qemu-user-static is
            not installed, or the kernel refused the registration.
    """
    here = host or platform.host()
    want = platform.normalize(wanted)
    if want.os != "linux":
        raise InvalidArgument(f"berth runs Linux images only; {want} needs a {want.os} host")
    if runs_natively(want, here):
        return None
    arch = platform.qemu_user_name(want)
    if arch not in ELF_FORMATS:
        raise NotImplemented_(f"berth has no binfmt_misc pattern for {want}: run it on a host of that architecture")
    with _locked(lock_path):
        ensure_mounted(root)
        if (root / "status").read_text().strip() != "enabled":
            raise FailedPrecondition(f"binfmt_misc is disabled on this host, so {want} programs cannot run: "
                                     f"enable it with `echo 1 > {root}/status`")
        decided = plan(arch, read_entries(root), lambda p: os.path.exists(p))
        if decided.use is not None:
            for name in decided.remove_after:
                _write(root / name, "-1", f"remove {name}")
            return Path(decided.use.interpreter)
        interpreter = find_interpreter(arch)
        if interpreter is None:
            raise FailedPrecondition(
                f"running {want} images on this {_machine_name(here)} host needs "
                "qemu-user-static: apt-get install qemu-user-static")
        for name in decided.remove_first:
            _write(root / name, "-1", f"remove {name}")
        _write(root / "register", register_line(decided.register, arch, str(interpreter)),
               f"registering {decided.register} ({interpreter})")
        for name in decided.remove_after:
            _write(root / name, "-1", f"remove {name}")
        log.info("registered binfmt_misc entry %s: %s programs run under %s", decided.register, want, interpreter)
        if decided.blockers:
            names = ", ".join(e.name for e in decided.blockers)
            log.warning(
                "binfmt_misc entries %s run %s programs without the F (fix-binary) flag, so they fail in "
                "containers that have no %s inside; berth registered %s ahead of them. To fix this for good, "
                "disable them (`update-binfmts --disable NAME`, or `echo -1 > %s/NAME`) or register them "
                "again with F", names, want, decided.blockers[0].interpreter, decided.register, root)
        return interpreter
