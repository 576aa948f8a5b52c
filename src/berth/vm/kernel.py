"""Find and fetch the guest kernel: Debian's 6.1 generic kernel, never the host's /boot.

Strategy: the kernel package is downloaded (`apt-get download`, not installed) and
unpacked with `dpkg-deb -x` into a directory of our own. Everything after that is
pure Python: the bzImage header says where the compressed payload is (we also
scan for the xz/gzip/zstd magic as a fallback) and the payload is decompressed
to the ELF `vmlinux` that QEMU boots through its PVH entry; modules are chosen
by name and ordered dependencies first, the dependencies read from `modules.dep`
when the package has one, else from each module's own `.modinfo` ELF section
(the `depends=` that modinfo prints; Debian's package ships no modules.dep, it
is made by depmod at install). Parsing is separate from I/O so it can be tested
on samples; the one subprocess helper is `run_tool`.
"""

from __future__ import annotations

import gzip
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from berth.errors import CommandFailed, FailedPrecondition, InvalidArgument

META_PACKAGE = "linux-image-amd64"
SERIES = "6.1"

# What a utility VM needs as modules: the virtio-mmio transport (microvm), the
# virtio-serial agent channel, the 9p root file system and the network card.
WANTED_MODULES = ("virtio_mmio", "virtio_console", "9pnet_virtio", "9p", "virtio_net")

_PKG_RE = re.compile(r"^linux-image-(\d+\.\d+\.\d+-(\d+)-amd64)$")

ELF_MAGIC = b"\x7fELF"
_XZ = b"\xfd7zXZ\x00"
_GZ = b"\x1f\x8b\x08"
_ZSTD = b"\x28\xb5\x2f\xfd"


def run_tool(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 600) -> str:
    """The one door to programs for this module (sync: prepare runs before any loop)."""
    try:
        res = subprocess.run(list(argv), cwd=cwd, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        pkg = {"apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg"}.get(argv[0], argv[0])
        raise FailedPrecondition(f"{argv[0]} is not installed (apt-get install {pkg})") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(list(argv), -1, f"timed out after {timeout}s") from exc
    if res.returncode != 0:
        raise CommandFailed(list(argv), res.returncode, res.stderr.decode(errors="replace"))
    return res.stdout.decode(errors="replace")


# ---- which package ---------------------------------------------------------------

def _abi(name: str) -> int:
    m = _PKG_RE.match(name)
    return int(m.group(2)) if m else -1


def parse_depends(text: str, series: str = SERIES) -> str | None:
    """The generic-kernel package that `apt-cache depends linux-image-amd64` names, if of *series*."""
    for line in text.splitlines():
        line = line.strip().lstrip("|")
        if line.startswith("Depends:"):
            name = line.split(":", 1)[1].strip()
            m = _PKG_RE.match(name)
            if m and m.group(1).startswith(series + "."):
                return name
    return None


def parse_search(text: str, series: str = SERIES) -> str | None:
    """The newest `linux-image-<series>.*-N-amd64` in `apt-cache search` output (not -dbg/-unsigned/cloud/rt)."""
    best: str | None = None
    for line in text.splitlines():
        name = line.split(" - ", 1)[0].strip()
        m = _PKG_RE.match(name)
        if m and m.group(1).startswith(series + ".") and (best is None or _abi(name) > _abi(best)):
            best = name
    return best


def kernel_version(package: str) -> str:
    """`linux-image-6.1.0-56-amd64` -> `6.1.0-56-amd64` (the guest's `uname -r`)."""
    m = _PKG_RE.match(package)
    if not m:
        raise InvalidArgument(f"not a generic kernel image package: {package!r}")
    return m.group(1)


def resolve_package(series: str = SERIES) -> str:
    """Name the newest generic *series* kernel package apt knows about."""
    name = parse_depends(run_tool(["apt-cache", "depends", META_PACKAGE]), series)
    if name is None:
        pattern = rf"^linux-image-{re.escape(series)}\.[0-9]+-[0-9]+-amd64$"
        name = parse_search(run_tool(["apt-cache", "search", "--names-only", pattern]), series)
    if name is None:
        raise FailedPrecondition(
            f"apt knows no linux-image-{series}.*-amd64 package: check /etc/apt/sources.list "
            "for Debian 12 (bookworm) and run apt-get update")
    return name


def download(package: str, cache_dir: Path) -> Path:
    """`apt-get download` *package* into *cache_dir* (reused when already there)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    run_tool(["apt-get", "download", "-q", package], cwd=cache_dir)
    found = sorted(cache_dir.glob(f"{package}_*.deb"))
    if not found:
        raise CommandFailed(["apt-get", "download", package], 0, f"no {package}_*.deb in {cache_dir}")
    return found[-1]


def unpack(deb: Path, dest: Path) -> Path:
    """`dpkg-deb -x` *deb* into *dest* (atomically: a temporary sibling, then a rename)."""
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run_tool(["dpkg-deb", "-x", str(deb), str(tmp)])
    tmp.rename(dest)
    return dest


# ---- vmlinuz -> vmlinux ------------------------------------------------------------

def _payload_bounds(image: bytes) -> tuple[int, int] | None:
    """Offset and length of the compressed payload per the x86 boot protocol (>= 2.08)."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < 0x208:
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if start + length > len(image):
        return None
    return start, length


def _decompress(data: bytes) -> bytes | None:
    try:
        if data.startswith(_XZ):
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            return d.decompress(data)
        if data.startswith(_GZ):
            z = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return z.decompress(data)
        if data.startswith(_ZSTD):
            raise FailedPrecondition("this kernel is zstd-compressed: Python has no zstd decoder; "
                                     "use a Debian 12 6.1 kernel (xz)")
    except (lzma.LZMAError, zlib.error, EOFError, gzip.BadGzipFile):
        return None
    return None


def extract_vmlinux(image: bytes) -> bytes:
    """Return the uncompressed ELF kernel inside a bzImage (*image* = vmlinuz's bytes)."""
    candidates: list[int] = []
    bounds = _payload_bounds(image)
    if bounds is not None:
        candidates.append(bounds[0])
    for magic in (_XZ, _GZ, _ZSTD):
        pos = image.find(magic)
        while pos != -1 and len(candidates) < 16:
            candidates.append(pos)
            pos = image.find(magic, pos + 1)
    for start in dict.fromkeys(candidates):
        out = _decompress(image[start:])
        if out is not None and out.startswith(ELF_MAGIC):
            return out
    raise InvalidArgument("no xz/gzip-compressed ELF kernel found in the image")


# ---- modules -------------------------------------------------------------------------

def module_name(path: str) -> str:
    """`kernel/fs/9p/9p.ko.xz` -> `9p`; dashes count as underscores, as the kernel says."""
    base = path.rsplit("/", 1)[-1]
    base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Parse depmod's modules.dep: ({name: path}, {name: [direct and indirect deps by name]})."""
    paths: dict[str, str] = {}
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        name = module_name(path.strip())
        paths[name] = path.strip()
        deps[name] = [module_name(p) for p in rest.split()]
    return paths, deps


def parse_modinfo_depends(ko: bytes) -> list[str]:
    """The `depends=` of a module, read from its ELF `.modinfo` section."""
    section = elf_section(ko, ".modinfo")
    for field in section.split(b"\0"):
        if field.startswith(b"depends="):
            return [d.replace("-", "_") for d in field[8:].decode().split(",") if d]
    return []


def elf_section(elf: bytes, wanted: str) -> bytes:
    """Bytes of the section named *wanted* in a 64-bit little-endian ELF file (b"" if absent)."""
    if not elf.startswith(ELF_MAGIC) or elf[4] != 2 or elf[5] != 1:
        raise InvalidArgument("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", elf, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    if shoff == 0 or shentsize < 64 or shoff + shnum * shentsize > len(elf):
        raise InvalidArgument("ELF section table out of bounds")

    def header(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize)
        return name, off, size

    _, str_off, str_size = header(shstrndx)
    names = elf[str_off:str_off + str_size]
    for i in range(shnum):
        name_off, off, size = header(i)
        end = names.find(b"\0", name_off)
        if names[name_off:end].decode(errors="replace") == wanted:
            return elf[off:off + size]
    return b""


def load_order(wanted: Iterable[str], deps: Mapping[str, Sequence[str]],
               builtin: Iterable[str] = ()) -> list[str]:
    """Names to load, each after all it depends on (depth-first, stable in *wanted* order).

    Raises InvalidArgument for a module (or dependency) that is neither known nor built in,
    and for a dependency cycle.
    """
    builtin_set = {module_name(b) for b in builtin}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2 or name in builtin_set:
            return
        if state.get(name) == 1:
            raise InvalidArgument(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in deps:
            raise InvalidArgument(f"module {name} not found (needed by {' -> '.join(chain) or 'request'})")
        state[name] = 1
        for dep in deps[name]:
            visit(dep, chain + (name,))
        state[name] = 2
        order.append(name)

    for name in wanted:
        visit(module_name(name), ())
    return order


def read_module(path: Path) -> bytes:
    """A module's bytes, decompressed when it is `.ko.xz` or `.ko.gz`."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        raise FailedPrecondition(f"{path} is zstd-compressed and Python has no zstd decoder")
    return raw


@dataclass(frozen=True, slots=True)
class KernelTree:
    """An unpacked kernel package."""

    root: Path
    version: str

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.version

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    def module_index(self) -> tuple[dict[str, Path], dict[str, list[str]]]:
        """({name: file}, {name: deps}) from modules.dep, else from each module's .modinfo."""
        dep_file = self.moddir / "modules.dep"
        if dep_file.is_file():
            rel, deps = parse_modules_dep(dep_file.read_text())
            return {n: self.moddir / p for n, p in rel.items()}, deps
        files = {module_name(p.name): p for p in (self.moddir / "kernel").rglob("*.ko*")}
        return files, _LazyDeps(files)

    def builtin(self) -> list[str]:
        f = self.moddir / "modules.builtin"
        return f.read_text().split() if f.is_file() else []

    def select_modules(self, wanted: Iterable[str] = WANTED_MODULES) -> list[tuple[str, Path]]:
        """[(name, file)] to load in that order for *wanted* and their dependencies."""
        files, deps = self.module_index()
        return [(n, files[n]) for n in load_order(wanted, deps, self.builtin())]


class _LazyDeps(dict[str, list[str]]):
    """deps read from .modinfo only for the modules visited (reading all 4000 is slow)."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        super().__init__()
        self._files = files

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def __missing__(self, name: str) -> list[str]:
        value = parse_modinfo_depends(read_module(self._files[name]))
        self[name] = value
        return value
