from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from berth.errors import InvalidArgument
from berth.vm import kernel

MODULES_DEP = """\
kernel/drivers/virtio/virtio_ring.ko.xz:
kernel/drivers/virtio/virtio.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/virtio/virtio_mmio.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/drivers/char/virtio_console.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/net/9p/9pnet.ko.xz:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/net/9p/9pnet.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
kernel/fs/netfs/netfs.ko.xz:
kernel/fs/fscache/fscache.ko.xz: kernel/fs/netfs/netfs.ko.xz
kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/fscache/fscache.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/drivers/net/virtio-net.ko.xz: kernel/drivers/virtio/virtio.ko.xz kernel/net/core/failover.ko.xz
"""


def test_parse_modules_dep() -> None:
    paths, deps = kernel.parse_modules_dep(MODULES_DEP)
    assert paths["9p"] == "kernel/fs/9p/9p.ko.xz"
    assert deps["9p"] == ["9pnet", "fscache", "netfs"]
    assert deps["virtio_ring"] == []
    assert "virtio_net" in deps  # dashes read as underscores


def test_load_order_puts_dependencies_first() -> None:
    _, deps = kernel.parse_modules_dep(MODULES_DEP)
    order = kernel.load_order([m for m in kernel.WANTED_MODULES if m != "virtio_net"], deps)
    assert order == ["virtio_ring", "virtio", "virtio_mmio", "virtio_console", "9pnet", "9pnet_virtio",
                     "netfs", "fscache", "9p"]
    for name in order:
        for dep in deps[name]:
            assert order.index(dep) < order.index(name)


def test_load_order_skips_builtins_and_reports_missing_and_cycles() -> None:
    _, deps = kernel.parse_modules_dep(MODULES_DEP)
    assert kernel.load_order(["virtio_mmio"], deps, builtin=["kernel/drivers/virtio/virtio_ring.ko"]) == [
        "virtio", "virtio_mmio"]
    with pytest.raises(InvalidArgument, match="failover not found"):
        kernel.load_order(["virtio-net"], deps)
    with pytest.raises(InvalidArgument, match="cycle"):
        kernel.load_order(["a"], {"a": ["b"], "b": ["a"]})


def test_module_name() -> None:
    assert kernel.module_name("kernel/fs/9p/9p.ko.xz") == "9p"
    assert kernel.module_name("virtio-rng.ko") == "virtio_rng"
    assert kernel.module_name("x.ko.zst") == "x"


def _tiny_elf(sections: dict[str, bytes]) -> bytes:
    """A 64-bit little-endian ELF holding only the given sections (enough for elf_section)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    body = bytearray(b"\0" * 64)
    offsets = []
    for data in [*sections.values(), names]:
        offsets.append((len(body), len(data)))
        body += data
    shoff = len(body)
    headers = [b"\0" * 64]
    name_off = 1
    for (off, size), name in zip(offsets, [*sections, ".shstrtab"]):
        headers.append(struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, size, 0, 0, 1, 0))
        name_off += len(name) + 1
    body += b"".join(headers)
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                                 len(headers), len(headers) - 1)
    body[:64] = header
    return bytes(body)


def test_modinfo_depends_from_elf() -> None:
    modinfo = b"license=GPL\0depends=virtio,9pnet,virtio_ring\0intree=Y\0name=9pnet_virtio\0"
    ko = _tiny_elf({".text": b"\x90" * 10, ".modinfo": modinfo})
    assert kernel.parse_modinfo_depends(ko) == ["virtio", "9pnet", "virtio_ring"]
    assert kernel.parse_modinfo_depends(_tiny_elf({".modinfo": b"depends=\0"})) == []
    assert kernel.elf_section(ko, ".nothing") == b""
    with pytest.raises(InvalidArgument):
        kernel.elf_section(b"MZ not an elf", ".modinfo")


def _bzimage(payload: bytes, *, with_header: bool = True) -> bytes:
    setup_sects = 3
    img = bytearray(b"\0" * ((setup_sects + 1) * 512))
    img[0x1F1] = setup_sects
    if with_header:
        img[0x202:0x206] = b"HdrS"
        struct.pack_into("<H", img, 0x206, 0x20F)
        struct.pack_into("<II", img, 0x248, 0x100, len(payload))
    return bytes(img) + b"\0" * 0x100 + payload + b"\0" * 64


def test_extract_vmlinux_xz_via_header_and_gzip_via_scan() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 40
    assert kernel.extract_vmlinux(_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ))) == elf
    assert kernel.extract_vmlinux(_bzimage(gzip.compress(elf), with_header=False)) == elf
    with pytest.raises(InvalidArgument):
        kernel.extract_vmlinux(_bzimage(gzip.compress(b"not an elf")))


DEPENDS_OUT = """linux-image-amd64
  Depends: linux-image-6.1.0-56-amd64
"""
SEARCH_OUT = """linux-image-6.1.0-47-amd64-dbg - Debug symbols for linux-image-6.1.0-47-amd64
linux-image-6.1.0-47-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-50-cloud-amd64 - Linux 6.1 for x86-64 cloud (signed)
linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.1.0-50-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.12.9-amd64 - Linux 6.12 for 64-bit PCs (signed)
"""


def test_package_resolution_parsers() -> None:
    assert kernel.parse_depends(DEPENDS_OUT) == "linux-image-6.1.0-56-amd64"
    assert kernel.parse_depends("linux-image-amd64\n  Depends: linux-image-6.12.9+deb13-amd64\n") is None
    assert kernel.parse_search(SEARCH_OUT) == "linux-image-6.1.0-47-amd64"
    assert kernel.kernel_version("linux-image-6.1.0-56-amd64") == "6.1.0-56-amd64"
    with pytest.raises(InvalidArgument):
        kernel.kernel_version("linux-image-6.1.0-56-cloud-amd64")
