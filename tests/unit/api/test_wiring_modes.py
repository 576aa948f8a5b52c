"""The data root's modes (berth.api.wiring.private_tree), on real directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from berth.api.wiring import PRIVATE_MODES, private_tree


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_a_new_root_gets_its_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    private_tree(str(root))
    assert _mode(root) == 0o710
    for name, mode in PRIVATE_MODES.items():
        assert _mode(root / name) == mode, name
    assert _mode(root / "containers") == 0o700 and _mode(root / "volumes") == 0o701


def test_an_existing_wide_root_is_tightened_and_inner_modes_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "containers" / "abc").mkdir(parents=True)
    (root / "volumes" / "v" / "_data").mkdir(parents=True)
    for d in (root, root / "containers", root / "volumes", root / "volumes" / "v" / "_data"):
        os.chmod(d, 0o777)
    private_tree(str(root))
    assert _mode(root) == 0o710 and _mode(root / "containers") == 0o700 and _mode(root / "volumes") == 0o701
    assert _mode(root / "volumes" / "v" / "_data") == 0o777  # what container users write to keeps its mode
