"""The published templates of a vm_dir: reading them, marking the broken, removing the stale.

    removed = remove_stale(vm_dir, current_artifacts_id)

Strategy: a template exists once its directory `<key>` holds template.json
(a build publishes it by renaming; see berth.vm.templatefiles for the layout);
`load_template` reads the record and no more, so a caller checks the files with
`Template.complete`. Each build removes the templates of other
kernels/initramfs/QEMU ("no longer current"), all but the MAX_TEMPLATES most
recently used (each costs its guest's touched RAM in /dev/shm), and any
orphaned RAM file whose key is not being built; `remove_stale` does all of it
under the templates' exclusive lock and leaves alone every key whose build lock
is held. A configuration whose clones failed to restore even after a rebuild
gets a `<key>.broken` marker, and is not tried again for BROKEN_SECONDS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path

from berth.errors import InvalidArgument
from berth.vm.template import Template
from berth.vm.templatefiles import flock, lock_free, shm_dir

BROKEN_SECONDS = 600.0  # how long a template that failed to restore twice is not retried
MAX_TEMPLATES = 4  # per vm_dir; each holds its guest's touched RAM (~100 MiB at 256 MiB) in /dev/shm
_KEY = re.compile(r"[0-9a-f]{16}")


def load_template(vm_dir: Path, key: str) -> Template | None:
    """The published template for *key*, if any (complete or not)."""
    d = Path(vm_dir) / "templates" / key
    try:
        doc = json.loads((d / "template.json").read_text())
        return Template.from_json(doc, dir=d, vm_dir=Path(vm_dir))
    except (OSError, ValueError, InvalidArgument):
        return None


def remove_template_dir(d: Path) -> None:
    """Remove the template directory *d* and the RAM file its record names."""
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
    with flock(root / ".lock", fcntl.LOCK_EX):
        current: list[tuple[float, Path, Template]] = []
        for entry in sorted(root.iterdir()):
            name = entry.name
            if entry.is_dir() and _KEY.fullmatch(name):
                tpl = load_template(vm_dir, name)
                if tpl is not None and tpl.artifacts_id == current_artifacts_id:
                    with contextlib.suppress(OSError):
                        current.append((entry.stat().st_mtime, entry, tpl))
                    continue
                if not lock_free(root / f"{name}.lock"):
                    continue  # being rebuilt right now
                remove_template_dir(entry)
                removed.append(name)
            elif entry.is_dir() and name.startswith(".build-"):
                if lock_free(root / f"{name[len('.build-'):]}.lock"):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(name)
            elif entry.is_dir() and name.startswith(".old-"):
                remove_template_dir(entry)
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
            if i < keep or not lock_free(root / f"{entry.name}.lock"):
                referenced.add(tpl.memory_file)
            else:
                remove_template_dir(entry)
                removed.append(entry.name)
        for entry in sorted(root.glob("*.lock")):
            key = entry.name[:-len(".lock")]
            if _KEY.fullmatch(key) and not (root / key).exists() and not (root / f".build-{key}").exists() \
                    and lock_free(entry):
                entry.unlink(missing_ok=True)
        shm = shm_dir(vm_dir)
        if shm.is_dir():
            for ram in sorted(shm.glob("*.ram")):
                key = ram.name.split(".", 1)[0]
                if ram in referenced or not lock_free(root / f"{key}.lock"):
                    continue
                ram.unlink(missing_ok=True)
                removed.append(str(ram))
            with contextlib.suppress(OSError):
                shm.rmdir()  # only when empty
    return removed


def remove_all(vm_dir: Path) -> list[str]:
    """Remove every template of *vm_dir* (e.g. when VM isolation is switched off)."""
    return remove_stale(vm_dir, None)


def broken(root: Path, key: str) -> str | None:
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


def mark_broken(root: Path, key: str, art_id: str, error: str) -> None:
    """Refuse clones of *key* for BROKEN_SECONDS (see `broken`), saying *error* as the reason."""
    tmp = root / f".{key}.broken.{os.getpid()}"
    tmp.write_text(json.dumps({"at": time.time(), "artifacts_id": art_id, "error": error[-2000:]}))
    os.replace(tmp, root / f"{key}.broken")
