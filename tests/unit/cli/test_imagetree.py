"""`berth images --tree` draws what the docker CLI (28.2.2) draws, byte for byte.

The *.golden files in imagetree_cases/ are the docker CLI's own output for the *.json listings
beside them (served as GET /images/json?manifests=1), on a pipe and on terminals of a given width
(where colours and the width apply), with and without -a.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.cli import imagetree

CASES = Path(__file__).parent / "imagetree_cases"

# golden name -> (listing, terminal columns (0: a pipe), -a)
GOLDEN = {
    "multi-pipe": ("multi", 0, False),
    "multi-tty100": ("multi", 100, False),
    "multi-tty50": ("multi", 50, False),
    "plain-pipe": ("plain", 0, False),
    "plain-pipe-all": ("plain", 0, True),
    "variants-pipe-all": ("variants", 0, True),
    "variants-tty35-all": ("variants", 35, True),
    "variants-tty20": ("variants", 20, False),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_tree_is_what_the_docker_cli_prints(name: str) -> None:
    listing, columns, all_ = GOLDEN[name]
    images = json.loads((CASES / f"{listing}.json").read_text())
    got = imagetree.render(imagetree.tree_view(images, all_), terminal=columns > 0, columns=columns)
    assert got == (CASES / f"{name}.golden").read_text(encoding="utf-8")


def test_a_dangling_image_shows_only_with_all() -> None:
    images = [{"Id": "sha256:" + "a" * 64, "RepoTags": [], "RepoDigests": [], "Created": 1, "Size": 0,
               "Containers": 0},
              {"Id": "sha256:" + "b" * 64, "RepoTags": ["<none>:<none>"], "RepoDigests": ["<none>@<none>"],
               "Created": 1, "Size": 0, "Containers": 0},
              {"Id": "sha256:" + "c" * 64, "RepoTags": [], "RepoDigests": ["r@sha256:" + "c" * 64],
               "Created": 1, "Size": 0, "Containers": 0}]
    assert [t.details.id[7] for t in imagetree.tree_view(images).images] == ["c"]
    assert len(imagetree.tree_view(images, all_=True).images) == 3


def test_attestations_add_content_but_no_row() -> None:
    images = [{"Id": "sha256:" + "a" * 64, "RepoTags": ["a:1"], "Created": 1, "Size": 10, "Containers": 0,
               "Manifests": [
                   {"ID": "sha256:1", "Kind": "image", "Available": True, "Size": {"Total": 30, "Content": 20},
                    "ImageData": {"Platform": {"os": "linux", "architecture": "amd64"}, "Containers": ["x"]}},
                   {"ID": "sha256:2", "Kind": "attestation", "Available": True, "Size": {"Total": 5, "Content": 5},
                    "AttestationData": {"For": "sha256:1"}}]}]
    [top] = imagetree.tree_view(images).images
    assert top.details.content_size == "25B" and top.details.in_use and len(top.children) == 1


@pytest.mark.parametrize(("size", "text"), [(0, "0B"), (999, "999B"), (1000, "1kB"), (4567890, "4.57MB"),
                                            (999500, "1e+03kB"), (123456789012, "123GB")])
def test_sizes_are_go_3_significant_digits(size: int, text: str) -> None:
    assert imagetree.human_size(size) == text


@pytest.mark.parametrize(("platform", "text"), [
    ({"os": "linux", "architecture": "arm", "variant": "v7"}, "linux/arm/v7"),
    ({"os": "linux", "architecture": "amd64"}, "linux/amd64"),
    ({"os": "", "architecture": "arm"}, "unknown"),
    ({"os": "linux", "architecture": "../x"}, "x"),
    (None, "unknown"),
])
def test_platforms_read_as_containerd_formats_them(platform: object, text: str) -> None:
    assert imagetree.format_platform(platform) == text


def test_a_hostile_platform_cannot_drive_the_terminal() -> None:
    images = [{"Id": "sha256:" + "a" * 64, "RepoTags": ["a:1"], "Created": 1, "Size": 0, "Containers": 0,
               "Manifests": [{"ID": "sha256:1", "Kind": "image", "Available": True, "Size": {},
                              "ImageData": {"Platform": {"os": "linux", "architecture": "x\x1b]0;pwned\x07"}}}]},
              {"Id": 7, "RepoTags": "nope", "Manifests": "junk", "Size": "big"}, "junk"]
    out = imagetree.render(imagetree.tree_view(images, all_=True))  # type: ignore[arg-type]
    assert "\x1b]" not in out and "\x07" not in out and "linux/x?]0;pwned?" in out
