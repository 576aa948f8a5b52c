"""A removed container's directory goes with its root unmounted first (services.bundle.remove_bundle)."""

from __future__ import annotations

import asyncio

from berth.errors import FailedPrecondition
from berth.services import bundle


def test_an_unmounted_bundle_is_deleted(tmp_path):
    d = tmp_path / "c"
    (d / "rootfs").mkdir(parents=True)
    (d / "upper" / "etc").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    asyncio.run(bundle.remove_bundle(str(d)))
    assert not d.exists()


def test_a_root_that_will_not_unmount_keeps_its_directory(tmp_path, monkeypatch):
    d = tmp_path / "c"
    (d / "rootfs").mkdir(parents=True)
    seen = []

    def refuse(target: str) -> None:
        seen.append(target)
        raise FailedPrecondition(f"unmount {target}: Device or resource busy")
    monkeypatch.setattr(bundle.mount, "unmount", refuse)
    asyncio.run(bundle.remove_bundle(str(d)))
    assert seen == [str(d / "rootfs")]
    assert d.exists()  # never deleted through a root that may still be mounted
