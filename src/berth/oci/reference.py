"""Image references: parse and normalise `[host[:port]/]path[:tag][@digest]`.

Strategy: pure string work. Docker Hub names are shown short, as Docker shows
them (`busybox:latest`, `user/app:1`), so `docker.io/library/` is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)"
_NAME = re.compile(rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def parse(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse *text*; add *default_tag* when neither tag nor digest is given.

    Raises:
        InvalidArgument: not a valid reference.
    """
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidArgument(f"invalid reference format: {text!r} has a malformed digest")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidArgument(f"invalid reference format: {text!r} has a malformed tag")
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/", "library/"):
        if rest.startswith(prefix):
            rest = rest[len(prefix):]
            break
    if not _NAME.fullmatch(rest):
        if rest.lower() == rest:
            raise InvalidArgument(f"invalid reference format: {text!r}")
        raise InvalidArgument(f"invalid reference format: repository name {rest!r} must be lowercase")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(rest, tag, digest)


def full_name(name: str) -> str:
    """The fully qualified form Docker writes in io.containerd.image.name ("busybox:latest" ->
    "docker.io/library/busybox:latest")."""
    ref = parse(name)
    first = ref.name.split("/", 1)[0]
    if "/" in ref.name and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        repo = ref.name
    elif "/" in ref.name:
        repo = "docker.io/" + ref.name
    else:
        repo = "docker.io/library/" + ref.name
    return str(Reference(repo, ref.tag, ref.digest))
