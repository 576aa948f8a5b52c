"""prune removes what .dockerignore excludes from an extracted context, at any depth."""

from __future__ import annotations

import io

import pytest
from berth_builder_conftest import _info, _tar

from berth.builder.contexttar import extract_context


def _deep_tar(levels: int, *extra: tuple[str, bytes]) -> io.BytesIO:
    return _tar((_info("/".join(["d"] * levels) + "/f"), b"x"), *((_info(n), b) for n, b in extra))


@pytest.mark.parametrize("pattern", ["d", "d/d/d/**", "**/f"])
def test_prune_walks_a_context_nested_thousands_deep(tmp_path, pattern):
    # A hostile context: 1500 levels (shutil.rmtree and a recursive walk give up at about a thousand).
    from berth.builder.ignore import parse_dockerignore, prune
    root = tmp_path / "ctx"
    from berth.host import fs
    try:
        extract_context(_deep_tar(1500, ("keep.txt", b"k")), root)
        assert prune(root, parse_dockerignore(pattern + "\n")) >= 1
        assert (root / "keep.txt").exists()
        assert not (root / "/".join(["d"] * 1500) / "f").exists()
    finally:
        fs.rmtree(str(root))  # pytest's own clean-up of tmp_path recurses


def test_prune_keeps_what_is_re_included_and_drops_emptied_directories(tmp_path):
    from berth.builder.ignore import parse_dockerignore, prune
    root = tmp_path / "ctx"
    extract_context(_tar((_info("a/keep"), b"1"), (_info("a/drop"), b"2"), (_info("b/sub/x"), b"3"),
                         (_info("c.txt"), b"4")), root)
    prune(root, parse_dockerignore("a\n!a/keep\nb\n!nothing\n"))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["a", "a/keep", "c.txt"]
