"""Tests for berth.builder.imagetree: an image read through overlay-style layers (the `image` fixture)."""

from __future__ import annotations

from berth_builder_conftest import PASSWD

from berth.builder.imagetree import ImageTree


def test_image_tree_reads_overlay_layers(image: ImageTree) -> None:
    assert image.read_text("/etc/passwd") == PASSWD
    assert image.lstat("/opt/old") is None and image.lstat("/opt/new") is not None  # opaque
    assert image.lstat("/gone") is None and image.lstat("/gone/f") is None            # whiteout
    assert image.resolve("/bin/sh") == "/usr/bin/sh"
    assert image.is_dir("/bin") and image.is_dir("/etc") and not image.is_dir("/etc/hosts")
    assert image.lstat("/etc/hosts") is not None and image.lstat("/etc/passwd") is not None
