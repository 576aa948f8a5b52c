"""The local store of manifest lists docker's CLI keeps under ~/.docker/manifests (blocking file I/O).

Strategy: the same layout as docker's CLI (cli/manifest/store), so both
CLIs share lists: one directory a list, one file a member, both named by
berth.oci.manifestlist.filesafe, the member files holding docker's JSON
(Entry.to_store). A list's members come back in file-name order, as Go's
os.ReadDir returns them, which is the order docker pushes them in.

Hostility: names come from references and are checked to be one plain
path component; files are opened without following symbolic links, read
with a size cap, and parsed and checked (Entry.from_store) before use;
a list directory with more files than MAX_MEMBERS is refused. Writes go
to a temporary file renamed into place, with docker's modes (0755 dirs,
0644 files). Everything here blocks: callers on an event loop use
asyncio.to_thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from berth.errors import FailedPrecondition, InvalidArgument
from berth.oci import manifestlist as ml

MAX_FILE = 16 << 20   # one member's file: a 4 MiB manifest, base64'd, plus its parsed copy
MAX_MEMBERS = 1024


class ManifestStore:
    """docker's manifest store rooted at *root* (normally $DOCKER_CONFIG/manifests)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _list_dir(self, list_ref: ml.Ref) -> Path:
        return self.root / ml.filesafe(list_ref)

    def exists(self, list_ref: ml.Ref) -> bool:
        """True when the store has a list directory for *list_ref* (even an empty one)."""
        try:
            return stat.S_ISDIR(os.lstat(self._list_dir(list_ref)).st_mode)
        except FileNotFoundError:
            return False

    def get(self, list_ref: ml.Ref, ref: ml.Ref) -> ml.Entry:
        """The member *ref* of list *list_ref*.

        Raises:
            NotFound: no such list or member ("No such manifest: REF", docker's words).
            InvalidArgument: the file is not a valid member.
        """
        path = self._list_dir(list_ref) / ml.filesafe(ref)
        data = _read(path)
        if data is None:
            raise ml.not_found(ref)
        return ml.from_store(data, f"local manifest {path}")

    def get_list(self, list_ref: ml.Ref) -> list[ml.Entry]:
        """Every member of *list_ref*, in file-name order.

        Raises:
            NotFound: no such list. InvalidArgument: a member file is not valid.
        """
        folder = self._list_dir(list_ref)
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise InvalidArgument(f"{folder} is not a directory; remove it")
            names = []
            with os.scandir(folder) as it:
                for item in it:
                    names.append(item.name)
                    if len(names) > MAX_MEMBERS:
                        raise InvalidArgument(f"{folder} holds more than {MAX_MEMBERS} files, more than a "
                                              "manifest list berth reads")
        except FileNotFoundError:
            raise ml.not_found(list_ref) from None
        entries = []
        for name in sorted(names, key=lambda n: n.encode("utf-8", "surrogateescape")):
            if name.startswith(".tmp-"):
                continue  # a write of ours in progress (or interrupted)
            data = _read(folder / name)
            if data is None:
                continue  # removed meanwhile
            entries.append(ml.from_store(data, f"local manifest {folder / name}"))
        return entries

    def save(self, list_ref: ml.Ref, ref: ml.Ref, entry: ml.Entry) -> None:
        """Write member *ref* of list *list_ref* (creating the list), atomically."""
        folder = self._list_dir(list_ref)
        name = ml.filesafe(ref)
        try:
            os.makedirs(folder, mode=0o755, exist_ok=True)
            if os.path.islink(folder):
                raise InvalidArgument(f"{folder} is a symbolic link; remove it")
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(entry.to_store())
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / name)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            raise FailedPrecondition(f"cannot write {folder / name}: {exc.strerror or exc}") from exc

    def remove(self, list_ref: ml.Ref) -> None:
        """Delete list *list_ref* and its members (nothing if it is not there)."""
        folder = self._list_dir(list_ref)
        try:
            if os.path.islink(folder):
                os.unlink(folder)
            else:
                shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FailedPrecondition(f"cannot remove {folder}: {exc.strerror or exc}") from exc


def _read(path: Path) -> bytes | None:
    """The bytes of *path* (a regular file, not followed if a link), at most MAX_FILE; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidArgument(f"{path} is a symbolic link; berth does not follow links in the manifest "
                                  "store: remove it") from None
        raise FailedPrecondition(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument(f"{path} is not a regular file; remove it")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_FILE:
                raise InvalidArgument(f"{path} is larger than {MAX_FILE} bytes, more than a manifest berth reads")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
