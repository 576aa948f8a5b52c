"""Prepare what a utility VM boots from, once, in one directory.

    python -m berth.vm.prepare --dir DIR [--refresh-kernel] [--compress]

Strategy: three steps, each skipped when its output is there and its inputs are
unchanged, each publishing its output with an atomic rename, under an flock so
two preparers of one directory do not race:

  1. kernel  -- apt-get download the newest Debian 6.1 generic kernel (into
     DIR/debs), dpkg-deb -x it into DIR/kernel-pkg, write DIR/vmlinux and the
     needed modules (dependencies first) into DIR/modules, then drop kernel-pkg
     (400 MB) unless asked to keep it.
  2. agent   -- gcc -static the guest agent into DIR/agent (keyed by the source's hash).
  3. initramfs -- DIR/initramfs.cpio from the agent, busybox and the modules.
  4. monitor -- gcc the host-side per-container monitor into DIR/berth-vm-monitor
     (dynamic: every container's monitor shares libc's pages; keyed like the agent).

DIR/manifest.json records what each step made. Missing host pieces raise
FailedPrecondition naming the Debian package to install.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import FailedPrecondition
from berth.vm import initramfs, kernel
from berth.vm.kernel import run_tool

AGENT_SOURCE = Path(__file__).with_name("agent") / "agent.c"
MONITOR_SOURCE = Path(__file__).with_name("monitor") / "monitor.c"
MONITOR_NAME = "berth-vm-monitor"
MONITOR_GCC_FLAGS = ("-O2", "-s", "-Wall", "-Wextra")
BUSYBOX = Path("/bin/busybox")
LIBC_STATIC = Path("/usr/lib/x86_64-linux-gnu/libc.a")
QEMU = "qemu-system-x86_64"
GCC_FLAGS = ("-static", "-O2", "-s", "-Wall")

# program or file -> Debian package providing it
HOST_PIECES: dict[str, str] = {
    "apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "gcc": "gcc",
    str(LIBC_STATIC): "libc6-dev", str(BUSYBOX): "busybox-static", QEMU: "qemu-system-x86",
}


@dataclass(frozen=True, slots=True)
class Artifacts:
    vmlinux: Path
    initramfs: Path
    kernel_version: str


def missing_host_pieces(*, qemu: bool = False) -> list[str]:
    """Return 'piece (apt-get install pkg)' for each host piece that is missing."""
    out = []
    for piece, pkg in HOST_PIECES.items():
        if piece == QEMU and not qemu:
            continue
        present = Path(piece).exists() if piece.startswith("/") else shutil.which(piece) is not None
        if not present:
            out.append(f"{piece} (apt-get install {pkg})")
    if BUSYBOX.exists() and kernel.elf_section(BUSYBOX.read_bytes(), ".interp"):
        out.append(f"a static {BUSYBOX} (apt-get install busybox-static)")
    return out


def check_host(*, qemu: bool = False) -> None:
    """Raise FailedPrecondition listing every missing piece."""
    missing = missing_host_pieces(qemu=qemu)
    if missing:
        raise FailedPrecondition("VM isolation needs: " + ", ".join(missing))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    initramfs.write(path, json.dumps(manifest, indent=2, sort_keys=True).encode())


def _kernel_step(vm_dir: Path, manifest: dict[str, Any], *, refresh: bool, keep_package: bool) -> None:
    have = manifest.get("kernel")
    same_modules = isinstance(have, dict) and have.get("wanted") == list(kernel.WANTED_MODULES)
    if (not refresh and same_modules and (vm_dir / "vmlinux").is_file()
            and (vm_dir / "modules" / "order").is_file()):
        return
    package = kernel.resolve_package()
    version = kernel.kernel_version(package)
    if isinstance(have, dict) and have.get("package") == package and (vm_dir / "vmlinux").is_file() \
            and (vm_dir / "modules" / "order").is_file() and same_modules:
        return  # refresh found nothing newer
    deb = kernel.download(package, vm_dir / "debs")
    pkg_dir = vm_dir / "kernel-pkg"
    shutil.rmtree(pkg_dir, ignore_errors=True)  # may hold an older kernel
    tree = kernel.KernelTree(kernel.unpack(deb, pkg_dir), version)
    if not tree.vmlinuz.is_file():
        raise FailedPrecondition(f"{deb.name} has no boot/vmlinuz-{version}")
    mods = tree.select_modules()
    mod_tmp = vm_dir / "modules.tmp"
    shutil.rmtree(mod_tmp, ignore_errors=True)
    mod_tmp.mkdir()
    for name, path in mods:
        (mod_tmp / f"{name}.ko").write_bytes(kernel.read_module(path))
    (mod_tmp / "order").write_text("".join(f"{name}\n" for name, _ in mods))
    initramfs.write(vm_dir / "vmlinux", kernel.extract_vmlinux(tree.vmlinuz.read_bytes()))
    config = tree.root / "boot" / f"config-{version}"
    if config.is_file():
        initramfs.write(vm_dir / "kernel-config", config.read_bytes())
    shutil.rmtree(vm_dir / "modules", ignore_errors=True)
    mod_tmp.rename(vm_dir / "modules")
    if not keep_package:
        shutil.rmtree(pkg_dir, ignore_errors=True)
        for old in (vm_dir / "debs").glob("linux-image-*.deb"):
            if old != deb:
                old.unlink()
    manifest["kernel"] = {"package": package, "version": version, "deb": deb.name,
                          "modules": [name for name, _ in mods], "wanted": list(kernel.WANTED_MODULES)}
    manifest.pop("initramfs", None)


def _agent_step(vm_dir: Path, manifest: dict[str, Any]) -> None:
    source = AGENT_SOURCE.read_bytes()
    key = _sha256(source + " ".join(GCC_FLAGS).encode())
    if manifest.get("agent", {}).get("source_sha256") == key and (vm_dir / "agent").is_file():
        return
    tmp = vm_dir / "agent.tmp"
    run_tool(["gcc", *GCC_FLAGS, "-o", str(tmp), str(AGENT_SOURCE)], timeout=300)
    tmp.rename(vm_dir / "agent")
    manifest["agent"] = {"source_sha256": key, "sha256": _sha256((vm_dir / "agent").read_bytes())}


def monitor_binary(vm_dir: Path) -> Path:
    """Where `prepare` puts the C monitor that berth.vm.shim execs into."""
    return Path(vm_dir) / MONITOR_NAME


def _monitor_step(vm_dir: Path, manifest: dict[str, Any]) -> None:
    source = MONITOR_SOURCE.read_bytes()
    key = _sha256(source + " ".join(MONITOR_GCC_FLAGS).encode())
    out = monitor_binary(vm_dir)
    if manifest.get("monitor", {}).get("source_sha256") == key and out.is_file():
        return
    tmp = vm_dir / f"{MONITOR_NAME}.tmp"
    run_tool(["gcc", *MONITOR_GCC_FLAGS, "-o", str(tmp), str(MONITOR_SOURCE)], timeout=300)
    tmp.rename(out)  # running monitors keep the old file
    manifest["monitor"] = {"source_sha256": key}


def _initramfs_step(vm_dir: Path, manifest: dict[str, Any], *, compress: bool, busybox: bool) -> None:
    order = (vm_dir / "modules" / "order").read_text().split()
    modules = [(name, (vm_dir / "modules" / f"{name}.ko").read_bytes()) for name in order]
    agent = (vm_dir / "agent").read_bytes()
    bb = BUSYBOX.read_bytes() if busybox else None
    key = _sha256(b"".join([agent, bb or b"", repr(compress).encode(),
                            *(n.encode() + _sha256(d).encode() for n, d in modules)]))
    out = vm_dir / "initramfs.cpio"
    if manifest.get("initramfs", {}).get("inputs_sha256") == key and out.is_file():
        return
    initramfs.write(out, initramfs.build(agent, modules, busybox=bb, compress=compress))
    manifest["initramfs"] = {"inputs_sha256": key, "size": out.stat().st_size, "compressed": compress}


def prepare(vm_dir: Path, *, refresh_kernel: bool = False, keep_package: bool = False,
            compress: bool = False, busybox: bool = True) -> Artifacts:
    """Make (or reuse) DIR/vmlinux, DIR/initramfs.cpio and the monitor; see the module docstring.

    Raises:
        FailedPrecondition: a host program or package is missing, or apt has no 6.1 kernel.
        CommandFailed: apt-get, dpkg-deb or gcc failed.
    """
    vm_dir = Path(vm_dir)
    vm_dir.mkdir(parents=True, exist_ok=True)
    with open(vm_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest_path = vm_dir / "manifest.json"
        manifest = _load_manifest(manifest_path)
        needs_kernel = refresh_kernel or not (vm_dir / "vmlinux").is_file() or "kernel" not in manifest
        missing = [m for m in missing_host_pieces()
                   if needs_kernel or not m.startswith(("apt", "dpkg"))]
        if missing:
            raise FailedPrecondition("preparing VM isolation needs: " + ", ".join(missing))
        _kernel_step(vm_dir, manifest, refresh=refresh_kernel, keep_package=keep_package)
        _save_manifest(manifest_path, manifest)
        _agent_step(vm_dir, manifest)
        _save_manifest(manifest_path, manifest)
        _initramfs_step(vm_dir, manifest, compress=compress, busybox=busybox)
        _save_manifest(manifest_path, manifest)
        _monitor_step(vm_dir, manifest)
        _save_manifest(manifest_path, manifest)
        return Artifacts(vm_dir / "vmlinux", vm_dir / "initramfs.cpio", manifest["kernel"]["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth.vm.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the artifacts go (reused)")
    parser.add_argument("--refresh-kernel", action="store_true", help="look for a newer 6.1 kernel")
    parser.add_argument("--keep-package", action="store_true", help="keep the unpacked kernel package")
    parser.add_argument("--compress", action="store_true", help="gzip the initramfs")
    args = parser.parse_args(argv)
    try:
        art = prepare(args.dir, refresh_kernel=args.refresh_kernel, keep_package=args.keep_package,
                      compress=args.compress)
    except FailedPrecondition as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"vmlinux": str(art.vmlinux), "initramfs": str(art.initramfs),
                      "kernel_version": art.kernel_version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
