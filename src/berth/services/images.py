"""Images: import, resolve, list, inspect, tag, remove.

Strategy: an image is an OCI manifest + config in the content store, its
layers unpacked once as snapshots, and a row in the metadata database whose
id is the config digest (as Docker's image IDs are). Reading the API's JSON
shapes is done here from that record, so the API layer only routes.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import io
import json
import lzma
import os
import shlex
from typing import IO, Any, AsyncIterator, BinaryIO, Callable, cast

from berth import timefmt
from berth.content.local import LocalStore
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.image import archive
from berth.metadata.db import Database
from berth.oci import reference
from berth.services.events import Events
from berth.snapshot.overlay import Snapshots, chain_ids

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"

now_iso = timefmt.now


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it (the layer's diff ID)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner, self.hash = inner, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._inner.read(len(buf))
        self.hash.update(data)
        buf[: len(data)] = data
        return len(data)


def _decompressed(f: BinaryIO) -> tuple[IO[bytes], str]:
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=f)), MEDIA_LAYER + "+gzip"
    if head.startswith(b"BZh"):
        return bz2.BZ2File(f), MEDIA_LAYER + "+bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(f), MEDIA_LAYER + "+xz"
    return f, MEDIA_LAYER


def _command(change: str, rest: str) -> list[str]:
    """CMD/ENTRYPOINT in exec form (a JSON array) or shell form."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError as exc:
            raise InvalidArgument(f"--change {change!r}: not a JSON array") from exc
        return [str(v) for v in value]
    return ["/bin/sh", "-c", rest]


def parse_changes(changes: list[str], config: dict[str, Any]) -> None:
    """Apply `docker import --change` Dockerfile instructions to an image config."""
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "CMD":
            config["Cmd"] = _command(change, rest)
        elif word == "ENTRYPOINT":
            config["Entrypoint"] = _command(change, rest)
        elif word == "ENV":
            pairs = shlex.split(rest)
            if len(pairs) == 2 and "=" not in pairs[0]:
                pairs = [f"{pairs[0]}={pairs[1]}"]
            env = [e for e in config.get("Env") or []]
            for pair in pairs:
                key = pair.split("=", 1)[0]
                env = [e for e in env if e.split("=", 1)[0] != key] + [pair]
            config["Env"] = env
        elif word == "WORKDIR":
            config["WorkingDir"] = rest
        elif word == "USER":
            config["User"] = rest
        elif word == "LABEL":
            labels = config.get("Labels") or {}
            for pair in shlex.split(rest):
                k, _, v = pair.partition("=")
                labels[k] = v
            config["Labels"] = labels
        elif word == "EXPOSE":
            config["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in rest.split()}
        elif word == "STOPSIGNAL":
            config["StopSignal"] = rest
        elif word == "VOLUME":
            config["Volumes"] = {v: {} for v in (json.loads(rest) if rest.startswith("[") else rest.split())}
        else:
            raise InvalidArgument(f"--change {change!r}: {word} is not supported by import")


class Images:
    def __init__(self, db: Database, store: LocalStore, snaps: Snapshots, events: Events,
                 in_use: Callable[[str], list[str]]) -> None:
        self._db, self._store, self._snaps, self._events = db, store, snaps, events
        self._in_use = in_use  # image id -> ids of containers using it

    # import -------------------------------------------------------------
    async def import_tarball(self, body: AsyncIterator[bytes], repo: str, tag: str,
                             changes: list[str], message: str, platform: str = "") -> str:
        """Store the tarball streamed in *body* as a one-layer image; return its id."""
        ref = None
        if repo:
            ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        ingest = self._store.ingest()
        try:
            async for chunk in body:
                ingest.write(chunk)
            if ingest.size == 0:
                raise InvalidArgument("import: the request body is empty: send a tar archive of a root file system")
            layer_digest = ingest.commit()
        except BaseException:
            ingest.abort()
            raise
        size, diff_id, media = self._unpack_single(layer_digest)
        arch = "amd64"
        if platform:
            parts = platform.split("/")
            if parts[0] != "linux" or len(parts) < 2:
                raise InvalidArgument(f"import: unsupported platform {platform!r}: use linux/<arch>")
            arch = parts[1]
        config_body: dict[str, Any] = {}  # as docker import: the runtime adds PATH, not the image
        parse_changes(changes, config_body)
        created = now_iso()
        config = {
            "architecture": arch, "os": "linux", "created": created, "config": config_body,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "", "comment": message or "Imported from -"}],
        }
        config_raw = json.dumps(config, separators=(",", ":")).encode()
        config_digest = self._store.put(config_raw)
        manifest = {
            "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_raw)},
            "layers": [{"mediaType": media, "digest": layer_digest, "size": self._store.size(layer_digest)}],
        }
        manifest_digest = self._store.put(json.dumps(manifest, separators=(",", ":")).encode())
        self._db.put_image(config_digest, {
            "manifest": manifest_digest, "layers": [layer_digest], "diff_ids": [diff_id],
            "size": size, "created": created,
        })
        if ref is not None:
            self._db.set_tag(str(ref), config_digest)
        self._events.publish("image", "import", config_digest, {"name": str(ref) if ref else config_digest})
        return config_digest

    def _unpack_single(self, layer_digest: str) -> tuple[int, str, str]:
        with open(self._store.path(layer_digest), "rb") as raw:
            stream, media = _decompressed(raw)
            hashing = _Hashing(stream)
            reader = io.BufferedReader(hashing, 1 << 20)
            size = 0

            def fill(directory: str) -> None:
                nonlocal size
                size = archive.apply_layer(reader, directory)  # type: ignore[arg-type]
                while reader.read(1 << 20):
                    pass

            # The chain id is the diff id, known only after reading: unpack first.
            tmp_chain = "sha256:" + hashlib.sha256(layer_digest.encode()).hexdigest()
            try:
                self._snaps.commit(tmp_chain, fill)
            except (EOFError, OSError, lzma.LZMAError) as exc:
                raise InvalidArgument(f"import: the archive is truncated or corrupt: {exc}") from exc
            diff_id = "sha256:" + hashing.hash.hexdigest()
        final = os.path.dirname(self._snaps.path(diff_id))
        if self._snaps.exists(diff_id):
            self._snaps.remove(tmp_chain)
        else:
            os.rename(os.path.dirname(self._snaps.path(tmp_chain)), final)
        return size, diff_id, media

    # lookup -------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """Image id for a reference, a full id or a unique id prefix.

        Raises:
            NotFound: no such image.
        """
        if not name:
            raise InvalidArgument("an image name is required")
        try:
            ref = reference.parse(name)
            found = self._db.tag(str(ref))
            if found:
                return found
        except InvalidArgument:
            pass
        hexpart = name[7:] if name.startswith("sha256:") else name
        if hexpart and all(c in "0123456789abcdef" for c in hexpart):
            matches = [i for i, _ in self._db.images() if i[7:].startswith(hexpart)]
            if len(matches) == 1:
                return matches[0]
        raise NotFound(f"No such image: {name}")

    def record(self, image_id: str) -> dict[str, Any]:
        doc = self._db.get_image(image_id)
        if doc is None:
            raise NotFound(f"No such image: {image_id}")
        return doc

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self._store.read(image_id))

    def chains(self, image_id: str) -> list[str]:
        return chain_ids(self.record(image_id)["diff_ids"])

    def repo_tags(self, image_id: str) -> list[str]:
        return self._db.tags().get(image_id, [])

    # API shapes ---------------------------------------------------------
    def summary(self, image_id: str, doc: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        cfg = self.config(image_id)
        return {
            "Id": image_id, "ParentId": "", "RepoTags": tags, "RepoDigests": [],
            "Created": _epoch(doc["created"]), "Size": doc["size"], "SharedSize": -1,
            "VirtualSize": doc["size"], "Labels": (cfg.get("config") or {}).get("Labels") or {},
            "Containers": len(self._in_use(image_id)),
        }

    def listing(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        tags = self._db.tags()
        out = []
        for image_id, doc in self._db.images():
            item = self.summary(image_id, doc, tags.get(image_id, []))
            if filters and not _image_matches(item, filters, self):
                continue
            out.append(item)
        out.sort(key=lambda i: i["Created"], reverse=True)
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        image_id = self.resolve(name)
        doc = self.record(image_id)
        cfg = self.config(image_id)
        body = cfg.get("config") or {}
        return {
            "Id": image_id, "RepoTags": self.repo_tags(image_id), "RepoDigests": [],
            "Parent": "", "Comment": (cfg.get("history") or [{}])[-1].get("comment", ""),
            "Created": cfg.get("created", doc["created"]), "DockerVersion": "",
            "Author": cfg.get("author", ""),
            "Config": {"Hostname": "", "Domainname": "", "User": body.get("User", ""),
                       "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                       "Tty": False, "OpenStdin": False, "StdinOnce": False,
                       "Env": body.get("Env"), "Cmd": body.get("Cmd"), "Image": "",
                       "Volumes": body.get("Volumes"), "WorkingDir": body.get("WorkingDir", ""),
                       "Entrypoint": body.get("Entrypoint"), "OnBuild": None,
                       "Labels": body.get("Labels"), "ExposedPorts": body.get("ExposedPorts"),
                       "StopSignal": body.get("StopSignal")},
            "Architecture": cfg.get("architecture", "amd64"), "Os": cfg.get("os", "linux"),
            "Variant": cfg.get("variant"),
            "Size": doc["size"], "VirtualSize": doc["size"],
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(self._snaps.path(c) for c in reversed(self.chains(image_id)))}},
            "RootFS": {"Type": "layers", "Layers": doc["diff_ids"]},
            "Metadata": {"LastTagTime": doc.get("tagged", "0001-01-01T00:00:00Z")},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        image_id = self.resolve(name)
        cfg = self.config(image_id)
        out = []
        for h in reversed(cfg.get("history") or []):
            out.append({"Id": image_id, "Created": _epoch(h.get("created", "")), "CreatedBy": h.get("created_by", ""),
                        "Tags": self.repo_tags(image_id), "Size": self.record(image_id)["size"],
                        "Comment": h.get("comment", "")})
        return out

    # tag / remove -------------------------------------------------------
    def tag(self, name: str, repo: str, tag: str) -> None:
        image_id = self.resolve(name)
        if not repo:
            raise InvalidArgument("tag: repository name is required")
        ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        self._db.set_tag(str(ref), image_id)
        doc = self.record(image_id)
        doc["tagged"] = now_iso()
        self._db.put_image(image_id, doc)
        self._events.publish("image", "tag", image_id, {"name": str(ref)})

    def remove(self, name: str, force: bool = False) -> list[dict[str, str]]:
        image_id = self.resolve(name)
        tags = self.repo_tags(image_id)
        by_ref = None
        try:
            ref = str(reference.parse(name))
            if ref in tags:
                by_ref = ref
        except InvalidArgument:
            pass
        users = self._in_use(image_id)
        if by_ref and len(tags) > 1:
            self._db.remove_tag(by_ref)
            self._events.publish("image", "untag", image_id, {"name": by_ref})
            return [{"Untagged": by_ref}]
        if not by_ref and len(tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {image_id[7:19]} (must be forced) - "
                           "image is referenced in multiple repositories")
        if users:
            if not force:
                what = f'repository reference "{name}"' if by_ref else image_id[7:19]
                raise Conflict(f"conflict: unable to remove {what} (must force) - container "
                               f"{users[0][:12]} is using its referenced image {image_id[7:19]}")
            for t in tags:
                self._db.remove_tag(t)
                self._events.publish("image", "untag", image_id, {"name": t})
            return [{"Untagged": t} for t in tags]
        out: list[dict[str, str]] = [{"Untagged": t} for t in tags]
        doc = self.record(image_id)
        self._db.delete_image(image_id)
        still = {c for other, _ in self._db.images() for c in self.chains(other)}
        for chain in chain_ids(doc["diff_ids"]):
            if chain not in still:
                self._snaps.remove(chain)
        for digest in [doc["manifest"], image_id, *doc["layers"]]:
            self._store.delete(digest)
        out.append({"Deleted": image_id})
        for t in tags:
            self._events.publish("image", "untag", image_id, {"name": t})
        self._events.publish("image", "delete", image_id, {"name": image_id})
        return out


def _epoch(iso: str) -> int:
    try:
        return timefmt.parse_ns(iso) // 1_000_000_000
    except ValueError:
        return 0


def _image_matches(item: dict[str, Any], filters: dict[str, list[str]], images: Images) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            dangling = not item["RepoTags"]
            if any((v in ("true", "1")) != dangling for v in values):
                return False
        elif key == "reference":
            if not any(fnmatch.fnmatch(t, v) or fnmatch.fnmatch(t.rsplit(":", 1)[0], v)
                       for v in values for t in item["RepoTags"]):
                return False
        elif key == "label":
            labels = item["Labels"]
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True
