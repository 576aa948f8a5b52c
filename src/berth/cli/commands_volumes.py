"""Storage verbs: `volume create/ls/inspect/rm/prune` and `cp`.

Strategy: `volume` verbs are thin mappings onto /volumes. `cp` does on this
side what docker's CLI does: it asks the daemon about the container path
(HEAD .../archive) and, from that and the local path, decides which directory
receives the archive and under which name its top entry lands (`dir`, `dir/.`,
a new name, `-` for a tar on stdin/stdout); the daemon only ever extracts into
an existing directory or sends a path as a tar. Tars are built with tarfile
into a spooled temporary file (so the upload has a length); a tar coming from
the container is extracted here only below the destination, never through a
symlink, with the files owned by whoever runs the command (docker's rule).
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from berth.cli import groups
from berth.cli.common import Ctx, StatusError, describe, for_each
from berth.cli.gotemplate import Template
from berth.cli.parser import Parser, filter_flag
from berth.cli.tables import go_json, render_listing
from berth.cli.units import human_size
from berth.client.errors import NotFoundError
from berth.image import archive

VOLUMES_DEFAULT = "table {{.Driver}}\t{{.Name}}"
VOLUMES_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
                   "Labels": "LABELS", "CreatedAt": "CREATED AT", "Size": "SIZE", "Links": "LINKS"}
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27


def _filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise StatusError(125, f"berth: bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key or (what == "opt" and not sep):
            raise StatusError(125, f'invalid argument "{item}" for "--{what}" flag: expected key=value')
        out[key] = value
    return out


# --------------------------------------------------------------------------- volume


def cmd_volume(ctx: Ctx, argv: list[str]) -> int:
    table: groups.Table = {
        "create": (cmd_volume_create, "Create a volume"),
        "inspect": (cmd_volume_inspect, "Display detailed information on one or more volumes"),
        "ls": (cmd_volume_ls, "List volumes"), "list": (cmd_volume_ls, "List volumes"),
        "prune": (cmd_volume_prune, "Remove unused local volumes"),
        "rm": (cmd_volume_rm, "Remove one or more volumes"), "remove": (cmd_volume_rm, "Remove one or more volumes"),
    }
    return groups.dispatch(ctx, "volume", "Manage volumes", table, argv, set(table) - {"list", "remove"},
                           use="volume COMMAND")


def cmd_volume_create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("volume create", "[OPTIONS] [VOLUME]", "Create a volume", max_args=1)
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("--name", default=None)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    if ns.name and ns.args and ns.name != ns.args[0]:
        raise StatusError(1, f"conflicting options: cannot specify a volume-name through both --name and as a "
                             f"positional arg ({ns.name} and {ns.args[0]})")
    body = {"Name": ns.name or (ns.args[0] if ns.args else ""), "Driver": ns.driver,
            "DriverOpts": _pairs(ns.opt, "opt"), "Labels": _pairs(ns.label, "label")}
    doc = ctx.client.post("/volumes/create", None, body) or {}
    ctx.print(str(doc.get("Name", "")))
    return 0


def volume_rows(volumes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`volume ls` rows with docker's template fields."""
    rows = []
    for v in volumes:
        labels = v.get("Labels") or {}
        usage = v.get("UsageData") or {}
        rows.append({**v, "Labels": ",".join(f"{k}={labels[k]}" for k in sorted(labels)),
                     "Label": lambda key, labels=labels: labels.get(key, ""),
                     "Size": human_size(usage["Size"]) if usage.get("Size", -1) >= 0 else "N/A",
                     "Links": str(usage["RefCount"]) if usage.get("RefCount", -1) >= 0 else "N/A"})
    return rows


def cmd_volume_ls(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("volume ls", "[OPTIONS]", "List volumes", max_args=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], type=filter_flag("-f, --filter"))
    p.add_argument("--format", default=None)
    ns = p.parse(argv)
    filters = _filters(ns.filter)
    doc = ctx.client.get("/volumes", {"filters": json.dumps(filters) if filters else None}) or {}
    volumes = sorted(doc.get("Volumes") or [], key=lambda v: v.get("Name", ""))
    if ns.quiet:
        for v in volumes:
            ctx.print(v["Name"])
        return 0
    fmt = ns.format if ns.format not in (None, "", "table") else VOLUMES_DEFAULT
    ctx.out.write(render_listing(fmt, volume_rows(volumes), VOLUMES_HEADERS))
    return 0


def cmd_volume_inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("volume inspect", "[OPTIONS] VOLUME [VOLUME...]",
               "Display detailed information on one or more volumes", min_args=1)
    p.add_argument("-f", "--format", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    found, failed = [], False
    for name in ns.args:
        try:
            found.append(ctx.client.get(f"/volumes/{name}"))
        except NotFoundError as exc:
            ctx.error(describe(exc))
            failed = True
    if ns.format == "json":  # docker: the whole array, compact
        ctx.print(go_json(found, escape_html=False))
    elif ns.format:
        tmpl = Template(ns.format)
        for doc in found:
            ctx.print(tmpl.execute(doc))
        if not found:
            ctx.print()  # docker: a template that printed nothing still ends its line
    else:
        ctx.print(json.dumps(found, indent=4, ensure_ascii=False))
    return 1 if failed else 0


def cmd_volume_rm(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("volume rm", "[OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", min_args=1)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)

    def act(name: str) -> str:
        ctx.client.delete(f"/volumes/{name}", {"force": ns.force})
        return name
    return for_each(ctx, ns.args, act)


def cmd_volume_prune(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("volume prune", "[OPTIONS]", "Remove unused local volumes", max_args=0)
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[], type=filter_flag("--filter"))
    ns = p.parse(argv)
    filters = _filters(ns.filter)
    if ns.all:
        filters["all"] = ["true"]
    if not ns.force:
        what = "all local volumes" if ns.all else "anonymous local volumes"
        ctx.out.write(f"WARNING! This will remove {what} not used by at least one container.\n"
                      "Are you sure you want to continue? [y/N] ")
        ctx.out.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    doc = ctx.client.post("/volumes/prune", {"filters": json.dumps(filters) if filters else None}) or {}
    deleted = doc.get("VolumesDeleted") or []
    if deleted:
        ctx.print("Deleted Volumes:")
        for name in deleted:
            ctx.print(name)
        ctx.print()
    ctx.print(f"Total reclaimed space: {human_size(int(doc.get('SpaceReclaimed') or 0))}")
    return 0


# --------------------------------------------------------------------------- cp


def split_cp_arg(arg: str) -> tuple[str, str]:
    """`CONTAINER:PATH` -> (container, path); a local path -> ("", path) (as docker tells them apart)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


def split_dir_entry(path: str) -> tuple[str, str]:
    """(directory, base) of *path*, where a path ending in "/." has the base "." (docker's SplitPathDirEntry)."""
    cleaned = posixpath.normpath(path) if path else "."
    if path.endswith("/.") or path == ".":
        cleaned = cleaned.rstrip("/") + "/." if cleaned != "." else "."
    return posixpath.dirname(cleaned) or ".", posixpath.basename(cleaned)


@dataclass(frozen=True, slots=True)
class PathInfo:
    exists: bool
    is_dir: bool = False
    mode: int = 0          # Go FileMode bits (container paths)
    link_target: str = ""


def container_stat(ctx: Ctx, container: str, path: str) -> PathInfo:
    """HEAD .../archive: what the daemon says about *path* (exists=False on 404)."""
    try:
        resp = ctx.client.request("HEAD", f"/containers/{container}/archive", {"path": path})
    except NotFoundError:
        ctx.client.get(f"/containers/{container}/json")  # a missing container: its own error
        return PathInfo(False)
    raw = resp.headers.get("x-docker-container-path-stat", "")
    doc = json.loads(base64.b64decode(raw) or b"{}")
    mode = int(doc.get("mode") or 0)
    return PathInfo(True, bool(mode & GO_DIR), mode, str(doc.get("linkTarget") or ""))


def rebase(name: str, old: str, new: str) -> str:
    """Replace the leading path element *old* of a tar member name by *new* ("/" names the root's members)."""
    if old == new:
        return name
    if old == "/":
        return f"{new}/{name.lstrip('/')}"
    if name == old or name.startswith(old + "/"):
        return new + name[len(old):]
    return name


def cmd_cp(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("cp", "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
               "Copy files/folders between a container and the local filesystem", min_args=2, max_args=2)
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    src_ctr, src = split_cp_arg(ns.args[0])
    dst_ctr, dst = split_cp_arg(ns.args[1])
    if src_ctr and dst_ctr:
        raise StatusError(1, "copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise StatusError(1, "must specify at least one container source")
    if not (src if src_ctr else dst):
        raise StatusError(1, "filesystem path cannot be empty")
    if src_ctr:
        size = _from_container(ctx, src_ctr, src, dst, ns.follow_link)
        where = "STDOUT" if dst == "-" else os.path.abspath(dst)
    else:
        size = _to_container(ctx, src, dst_ctr, dst, ns.follow_link, ns.archive)
        where = f"{dst_ctr}:{dst}"
    if not ns.quiet and dst != "-":
        ctx.error(f"Successfully copied {human_size(size)} to {where}")
    return 0


def _from_container(ctx: Ctx, container: str, src: str, dst: str, follow: bool) -> int:
    own_name = split_dir_entry(src)[1]  # a followed link keeps its own name
    if follow:
        info = container_stat(ctx, container, src)
        if info.exists and info.mode & GO_SYMLINK:
            target = info.link_target
            if not target.startswith("/"):
                target = posixpath.join(split_dir_entry(src)[0], target)
            src = target
    with ctx.client.stream("GET", f"/containers/{container}/archive", {"path": src}) as sr:
        raw = sr.headers.get("x-docker-container-path-stat", "")
        doc = json.loads(base64.b64decode(raw) or b"{}")
        src_is_dir = bool(int(doc.get("mode") or 0) & GO_DIR)
        if dst == "-":
            total = 0
            for chunk in sr.chunks():
                sys.stdout.buffer.write(chunk)
                total += len(chunk)
            sys.stdout.buffer.flush()
            return total
        target_dir, new = _local_destination(dst, src_is_dir)
        reader = _ChunkReader(sr.chunks())
        return _extract_local(reader, target_dir, split_dir_entry(src)[1], new or own_name)


def _local_destination(dst: str, src_is_dir: bool) -> tuple[str, str]:
    """(directory to extract into, new name for the top entry or "" to keep it)."""
    if os.path.isdir(dst):
        return dst, ""
    if os.path.lexists(dst):
        if src_is_dir:
            raise StatusError(1, f"cannot copy a directory to the file {dst}")
        parent, base = split_dir_entry(dst)
        return parent, base
    if dst.endswith("/") and not src_is_dir:
        raise StatusError(1, f"destination directory {dst} does not exist")
    parent, base = split_dir_entry(dst)
    if not os.path.isdir(parent):
        raise StatusError(1, f"destination directory {parent} does not exist")
    return parent, base


class _ChunkReader:
    """A file-like reader over an iterator of bytes (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _clean(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StatusError(1, f"refusing the archive's entry {name!r}: it leaves the destination")
    return "/".join(parts)


def _extract_local(stream: Any, directory: str, old_base: str, new_base: str) -> int:
    """Extract a tar from the daemon below *directory*, never through a symlink; returns the bytes written."""
    total = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    root = os.path.realpath(directory)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            rel = _clean(rebase(member.name, old_base, new_base) if old_base != new_base else member.name)
            if not rel:
                continue
            path = os.path.join(root, rel)
            _check_parents(root, rel)
            if os.path.lexists(path) and not (member.isdir() and os.path.isdir(path)
                                              and not os.path.islink(path)):
                if os.path.isdir(path) and not os.path.islink(path):
                    raise StatusError(1, f"cannot overwrite directory {path} with non-directory")
                os.unlink(path)
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
            member.name = rel
            if member.islnk():
                member.linkname = _clean(rebase(member.linkname, old_base, new_base))
            if member.isdir():
                os.makedirs(path, exist_ok=True)
                dirs.append((path, member))
                continue
            tar.extract(member, root, set_attrs=not member.issym(), numeric_owner=True)
            total += member.size if member.isreg() else 0
    for path, member in reversed(dirs):
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
    return total


def _check_parents(root: str, rel: str) -> None:
    """The layer extractor's rule: create missing parents, never write through a symlink."""
    archive.make_parents(root, rel, refused="berth cp refused")


def _to_container(ctx: Ctx, src: str, container: str, dst: str, follow: bool, archive: bool) -> int:
    info = container_stat(ctx, container, dst)
    dst_path = dst
    if info.exists and info.mode & GO_SYMLINK:
        target = info.link_target
        if not target.startswith("/"):
            target = posixpath.join(split_dir_entry(dst)[0], target)
        dst_path = target
        info = container_stat(ctx, container, target)
    query: dict[str, Any] = {"path": dst_path, "noOverwriteDirNonDir": "true",
                             "copyUIDGID": "true" if archive else None}
    if src == "-":
        if not info.is_dir:
            raise StatusError(1, f'destination "{container}:{dst}" must be a directory')
        ctx.client.request("PUT", f"/containers/{container}/archive", query, sys.stdin.buffer,
                           {"Content-Type": "application/x-tar"})
        return 0
    if not os.path.lexists(src):
        raise StatusError(1, f"lstat {os.path.abspath(src)}: no such file or directory")
    src_is_dir = os.path.isdir(src) if follow or not os.path.islink(src) else False
    src_base = split_dir_entry(src)[1]
    if info.exists and info.is_dir:
        put_dir, name = dst_path, src_base
    elif info.exists:
        if src_is_dir:
            raise StatusError(1, "cannot copy a directory to a file")
        put_dir, name = split_dir_entry(dst_path)[0], split_dir_entry(dst_path)[1]
    else:
        if dst_path.endswith("/") and not src_is_dir:
            raise StatusError(1, f'destination "{container}:{dst}" does not exist as a directory')
        put_dir, name = split_dir_entry(dst_path)
    query["path"] = put_dir
    with tempfile.TemporaryFile(prefix="berth-cp-") as spool:
        size = _write_tar(spool, src, name, follow)
        length = spool.tell()
        spool.seek(0)
        ctx.client.request("PUT", f"/containers/{container}/archive", query, spool,
                           {"Content-Type": "application/x-tar", "Content-Length": str(length)})
    return size


def _write_tar(out: IO[bytes], src: str, name: str, follow: bool) -> int:
    """A tar of *src* whose top entry is *name* ("." keeps the contents of a "dir/." source at the top)."""
    total = 0
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, dereference=False) as tar:
        def add(path: str, arcname: str, top: bool) -> None:
            nonlocal total
            info = tar.gettarinfo(os.path.realpath(path) if (top and follow) else path, arcname)
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                total += info.size
            else:
                tar.addfile(info)
            if info.isdir():
                for child in sorted(os.listdir(path)):
                    add(os.path.join(path, child), f"{arcname}/{child}", False)
        add(src, name, True)
    return total


COMMANDS = {"volume": cmd_volume, "cp": cmd_cp}
