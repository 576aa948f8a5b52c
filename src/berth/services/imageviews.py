"""Images as the API shows them: `docker images` rows, `image inspect`, `history`, and the list filters.

Strategy: read-only views made from the image records, the configs in the
content store and the tags (services.images); nothing here changes a record.
"""

from __future__ import annotations

from typing import Any

from berth import timefmt
from berth.errors import InvalidArgument
from berth.services.images import Images
from berth.services.patterns import reference_matches


class ImageViews:
    def __init__(self, images: Images) -> None:
        self._images = images

    def summary(self, image_id: str, doc: dict[str, Any], tags: list[str],
                digests: list[str] | None = None) -> dict[str, Any]:
        cfg = self._images.config(image_id)
        return {
            "Id": image_id, "ParentId": self._images.parent(image_id, doc), "RepoTags": tags,
            "RepoDigests": self._images.repo_digests(image_id) if digests is None else digests,
            "Created": _epoch(doc["created"]), "Size": doc["size"], "SharedSize": -1,
            "VirtualSize": doc["size"], "Labels": (cfg.get("config") or {}).get("Labels") or {},
            "Containers": len(self._images.in_use(image_id)),
        }

    def listing(self, all_: bool = False, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        tags = self._images.tag_map()
        # Another platform of a tagged multi-platform image, or a build step's image (Docker's
        # "intermediate" images): not dangling, and shown only with --all.
        # So is an untagged image that is the parent of another (a build step's, a commit's base), as
        # Docker hides it.
        hidden = (self._images.referenced_images() | self._images.build_cache_images() | set(self._images.children())) - set(tags) \
            if not all_ else set()
        patterns = (filters or {}).get("reference") or []
        out = []
        for image_id, doc in self._images.records():
            if image_id in hidden:
                continue
            item = self.summary(image_id, doc, tags.get(image_id, []))
            if filters and not image_matches(item, filters, self._images):
                continue
            if patterns:  # as Docker: only the names the reference filter matched (`images -q REF` once)
                item["RepoTags"] = [t for t in item["RepoTags"] if reference_matches(patterns, t)]
                item["RepoDigests"] = [t for t in item["RepoDigests"] if reference_matches(patterns, t)]
            out.append(item)
        out.sort(key=lambda i: i["Created"], reverse=True)
        return out

    def inspect(self, name: str) -> dict[str, Any]:
        image_id = self._images.resolve(name)
        doc = self._images.record(image_id)
        cfg = self._images.config(image_id)
        body = cfg.get("config") or {}
        return {
            "Id": image_id, "RepoTags": self._images.repo_tags(image_id), "RepoDigests": self._images.repo_digests(image_id),
            "Parent": self._images.parent(image_id, doc), "Comment": (cfg.get("history") or [{}])[-1].get("comment", ""),
            "Created": cfg.get("created", doc["created"]), "DockerVersion": "",
            "Author": cfg.get("author", ""),
            "Config": {"Hostname": "", "Domainname": "", "User": body.get("User", ""),
                       "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
                       "Tty": False, "OpenStdin": False, "StdinOnce": False,
                       "Env": body.get("Env"), "Cmd": body.get("Cmd"), "Image": "",
                       "Volumes": body.get("Volumes"), "WorkingDir": body.get("WorkingDir", ""),
                       "Entrypoint": body.get("Entrypoint"), "OnBuild": body.get("OnBuild"),
                       "Labels": body.get("Labels"), "ExposedPorts": body.get("ExposedPorts"),
                       "StopSignal": body.get("StopSignal"),
                       **{k: body[k] for k in ("Healthcheck", "Shell") if body.get(k)}},
            "Architecture": cfg.get("architecture", "amd64"), "Os": cfg.get("os", "linux"),
            "Variant": cfg.get("variant"),
            "Size": doc["size"], "VirtualSize": doc["size"],
            "GraphDriver": {"Name": "overlay2", "Data": {
                "LowerDir": ":".join(self._images.layer_dirs(image_id))}},
            "RootFS": {"Type": "layers", "Layers": doc["diff_ids"]},
            "Metadata": {"LastTagTime": doc.get("tagged", "0001-01-01T00:00:00Z")},
        }

    def history(self, name: str) -> list[dict[str, Any]]:
        image_id = self._images.resolve(name)
        cfg = self._images.config(image_id)
        out = []
        entries = cfg.get("history") or []
        for i, h in enumerate(reversed(entries)):
            out.append({"Id": image_id if i == 0 else "<missing>", "Created": _epoch(h.get("created", "")),
                        "CreatedBy": h.get("created_by", ""), "Tags": self._images.repo_tags(image_id) if i == 0 else None,
                        "Size": self._images.record(image_id)["size"] if i == len(entries) - 1 else 0,
                        "Comment": h.get("comment", "")})
        return out


def _epoch(iso: str) -> int:
    try:
        return timefmt.parse_ns(iso) // 1_000_000_000
    except ValueError:
        return 0


def image_matches(item: dict[str, Any], filters: dict[str, list[str]], images: Images) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            dangling = not item["RepoTags"]
            if any((v in ("true", "1")) != dangling for v in values):
                return False
        elif key == "reference":
            if not any(reference_matches(values, t) for t in item["RepoTags"] + item["RepoDigests"]):
                return False
        elif key == "label":
            labels = item["Labels"]
            for v in values:
                k, eq, val = v.partition("=")
                if k not in labels or (eq and labels[k] != val):
                    return False
        elif key in ("before", "since", "until"):  # as Docker: relative to another image, or to a time
            created = _created_ns(images.record(item["Id"]))
            for v in values:
                if key == "until":
                    try:
                        limit = timefmt.parse_since(v)
                    except ValueError:
                        raise InvalidArgument(f"invalid filter 'until={v[:64]}': use a time (unix seconds, RFC 3339) "
                                              "or a duration such as 10m") from None
                    if created > limit:
                        return False
                    continue
                other = _created_ns(images.record(images.resolve(v)))
                if (key == "before" and created >= other) or (key == "since" and created <= other):
                    return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def _created_ns(doc: dict[str, Any]) -> int:
    try:
        return timefmt.parse_ns(doc["created"])
    except (KeyError, ValueError):
        return 0
