"""COPY and ADD: writing files from a source tree into a new image layer.

Strategy: this module decides what goes where, and leaves the writing to a
LayerWriter (berth.builder.layerwriter). A relative destination is taken from
the WORKDIR. It is a directory when it ends in "/" (or is "." / ".."), when
several sources are copied, or when it already is a directory in the image;
it is resolved in the image's scope, symlinks included. Sources (as
berth.builder.sources.find_sources returns them) are resolved in the scope of
their root too: a named symlink is followed, but never out of the root. A
directory source copies its contents; a file goes inside a directory
destination under its own (named) base name, or becomes the destination
file. ADD extracts a local tar archive (plain, gzip, bzip2 or xz, recognised
by content, as Docker's ADD does; anything else is copied as a file) into the
destination directory; files of the daemon's (ADD's downloads, heredoc
bodies) come in `files` and are copied by name, never unpacked.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
from pathlib import Path
from typing import Callable, Sequence

from berth.builder.imagetree import ImageTree, image_parts
from berth.builder.layerwriter import LayerWriter
from berth.builder.owners import Owner
from berth.builder.scope import relative_parts, resolve_in_dir
from berth.errors import FailedPrecondition, InvalidArgument


def dest_path(dest: str, workdir: str) -> tuple[str, bool]:
    """The absolute, cleaned destination and whether it is written as a directory ("/", ".").

    A relative *dest* is taken from *workdir*; ".." stops at "/".
    """
    as_dir = dest in ("", ".", "..") or dest.endswith(("/", "/.", "/.."))
    full = dest if dest.startswith("/") else posixpath.join("/", workdir or "/", dest)
    return posixpath.normpath("/" + full.lstrip("/")), as_dir


def _source(source_root: Path, source: Path, instruction: str) -> tuple[list[str], str, os.stat_result]:
    """The named components of *source*, its resolved path on the host, and that path's lstat."""
    named = relative_parts(source_root, source)
    if named is None:
        raise InvalidArgument(f"{instruction} failed: forbidden path outside the build context: {source}")
    real = resolve_in_dir(source_root, named)
    path = os.path.join(os.fspath(source_root), *real)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidArgument(f"{instruction} failed: file not found in the source: stat {'/'.join(named) or '.'}: "
                              "file does not exist") from None
    return named, path, st


def _is_archive(path: str) -> bool:
    """True when *path* is a tar with at least one entry (plain, gzip, bzip2 or xz): Docker's test."""
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return False


def _copy(layer: Path, sources: Sequence[Path], source_root: Path, dest: str, *, workdir: str,
          dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
          image: ImageTree | None, instruction: str, unpack: bool, files: Sequence[Path]) -> None:
    if not sources and not files:
        raise InvalidArgument(f"{instruction} failed: no source files were specified")
    if chmod is not None and not 0 <= chmod <= 0o7777:
        raise InvalidArgument(f"{instruction} failed: --chmod={chmod:o} is not a file mode (0000-7777)")
    writer = LayerWriter(layer, image, owner, chmod, instruction)
    path, as_dir = dest_path(dest, workdir)
    real = writer.resolve(image_parts(path))
    into_dir = as_dir or len(sources) + len(files) > 1 or dest_is_dir(path) or writer.is_dir(real)
    try:
        for source in sources:
            named, src, st = _source(source_root, source, instruction)
            if stat.S_ISDIR(st.st_mode):
                writer.copy_tree(src, writer.ensure_dir(real, dest=True))
            elif unpack and stat.S_ISREG(st.st_mode) and _is_archive(src):
                writer.extract(src, "/".join(named), writer.ensure_dir(real, dest=True))
            elif into_dir:
                name = named[-1] if named else posixpath.basename(src)
                writer.copy_entry(src, st, [*writer.ensure_dir(real, dest=True), name])
            else:
                if not real:
                    raise writer.error(f"cannot replace / with the file {'/'.join(named)}")
                writer.copy_entry(src, st, [*writer.ensure_dir(real[:-1]), real[-1]])
        for file in files:
            st = os.lstat(file)
            if not stat.S_ISREG(st.st_mode):
                raise writer.error(f"{file} is not a regular file")
            if into_dir:
                writer.copy_entry(os.fspath(file), st, [*writer.ensure_dir(real, dest=True), Path(file).name])
            elif not real:
                raise writer.error(f"cannot replace / with the file {Path(file).name}")
            else:
                writer.copy_entry(os.fspath(file), st, [*writer.ensure_dir(real[:-1]), real[-1]])
        writer.finish_dirs()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise FailedPrecondition(f"{instruction} failed: no space left on the device holding {layer}; "
                                     "free some space and build again") from exc
        raise


def copy_into(layer: Path, sources: list[Path], source_root: Path, dest: str, *, workdir: str,
              dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
              image: ImageTree | None = None, instruction: str = "COPY", files: Sequence[Path] = ()) -> None:
    """Carry out COPY: write *sources* into the empty layer directory *layer*.

    Args:
        layer: the new layer's directory (empty; written as root).
        sources: paths below *source_root*, as find_sources/Context.sources return them.
        source_root: the build context's root, or the root of the stage or image of --from.
        dest: the destination as written (after variable expansion).
        workdir: the image's WORKDIR, for a relative *dest*.
        dest_is_dir: whether an absolute path is a directory in the image (symlinks followed).
        owner: --chown's ids (resolve_owner), or None for 0:0.
        chmod: --chmod's mode bits, or None to keep each file's mode.
        image: the image below the layer; with it, symlinks on the destination path are
            followed and directories recreated in the layer keep the image's mode and owner.
        instruction: "COPY" or "ADD", for messages.
        files: more sources that are not below *source_root*: regular files of the daemon's
            (ADD's downloads, heredoc bodies), copied under their own name after *sources*,
            never unpacked; they count towards "several sources make a directory".
    Raises:
        InvalidArgument: a source is missing or outside *source_root*, or the destination
            runs into a file of the image.
        FailedPrecondition: the disk filled up.
    """
    _copy(layer, sources, source_root, dest, workdir=workdir, dest_is_dir=dest_is_dir, owner=owner,
          chmod=chmod, image=image, instruction=instruction, unpack=False, files=files)


def add_into(layer: Path, sources: list[Path], source_root: Path, dest: str, *, workdir: str,
             dest_is_dir: Callable[[str], bool], owner: Owner | None, chmod: int | None,
             image: ImageTree | None = None, files: Sequence[Path] = ()) -> None:
    """Carry out ADD: as copy_into, but local tar archives among *sources* are extracted into *dest*.

    Downloads go in *files*: Docker never unpacks an archive fetched from a URL.

    Raises:
        InvalidArgument: as copy_into, or an archive with an entry that would leave the
            destination, a symlink escaping it, or a hard link to nothing earlier.
    """
    _copy(layer, sources, source_root, dest, workdir=workdir, dest_is_dir=dest_is_dir, owner=owner,
          chmod=chmod, image=image, instruction="ADD", unpack=True, files=files)


__all__ = ["add_into", "copy_into", "dest_path"]
