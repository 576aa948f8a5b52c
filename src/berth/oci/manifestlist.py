"""`docker manifest`'s values: references, store entries, manifest lists, annotations (pure).

Strategy
--------
docker's CLI keeps a manifest list being built as one directory a list
under ~/.docker/manifests, one JSON file a member; berth reads and writes
the same files, so a list created by one CLI can be annotated or pushed by
the other. This module holds everything about them that needs no I/O:

- `normalize(text)`: docker's normalizeReference (the full name, `:latest`
  added when neither tag nor digest is given) and its error words;
- `filesafe(ref)`: the file name docker derives from a reference (`:` ->
  `-`, `/` -> `_`), checked to be one plain path component;
- `Entry`: one member (docker's types.ImageManifest) with its store JSON
  (`to_store`/`from_store`, json.Marshal's exact bytes), checked on the way
  in: the raw manifest must hash to its digest and be an image manifest;
- `list_bytes`: the manifest list `docker manifest push` sends (and
  `inspect` prints), laid out as Go's MarshalIndent lays it out, so both
  CLIs push the same digest;
- `annotate`: docker's rules for --os/--arch/--variant/--os-version/--os-features.

Values from a registry or a store file are never trusted for shape: each
string is checked before it is stored or printed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from berth.errors import InvalidArgument, NotFound
from berth.oci import gojson
from berth.oci import reference as refs

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
LIST_TYPES = (DOCKER_LIST, OCI_INDEX)

MAX_NAME = 255          # one path component (NAME_MAX)
MAX_VALUE = 128         # an os, architecture, variant, os.version or os.feature
MAX_FEATURES = 64
MAX_BLOBS = 4096        # config and layers of one manifest

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_C1 = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080..U+009F in UTF-8
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]*/[A-Za-z0-9][A-Za-z0-9.+_-]*")
_HUB_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")

# docker's table of the os/arch pairs `manifest annotate` accepts (cli/command/manifest/util.go)
VALID_OS_ARCH = frozenset({
    ("darwin", "386"), ("darwin", "amd64"), ("darwin", "arm"), ("darwin", "arm64"),
    ("dragonfly", "amd64"),
    ("freebsd", "386"), ("freebsd", "amd64"), ("freebsd", "arm"),
    ("linux", "386"), ("linux", "amd64"), ("linux", "arm"), ("linux", "arm64"), ("linux", "ppc64le"),
    ("linux", "mips64"), ("linux", "mips64le"), ("linux", "riscv64"), ("linux", "s390x"),
    ("netbsd", "386"), ("netbsd", "amd64"), ("netbsd", "arm"),
    ("openbsd", "386"), ("openbsd", "amd64"), ("openbsd", "arm"),
    ("plan9", "386"), ("plan9", "amd64"),
    ("solaris", "amd64"),
    ("windows", "386"), ("windows", "amd64"),
})


# --------------------------------------------------------------------------- #
# References


@dataclass(frozen=True, slots=True)
class Ref:
    """A normalised reference: the full name (with its registry), a tag and/or a digest."""

    name: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def domain(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.name.split("/", 1)[1]

    def with_digest(self, digest: str) -> Ref:
        """reference.WithDigest: this name and tag, the given digest."""
        return Ref(self.name, self.tag, digest)


def _full(name: str) -> str:
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return name
    return f"docker.io/{name}" if sep else f"docker.io/library/{name}"


def normalize(text: str) -> Ref:
    """docker's normalizeReference: the full name, with `latest` when there is neither tag nor digest.

    Raises:
        InvalidArgument: docker's words, `invalid reference format[...]`.
    """
    try:
        parsed = refs.parse(text)
    except InvalidArgument:
        name = text.split("@", 1)[0]
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:
            name = name[:colon]
        first, sep, rest = name.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            remote = rest
        else:
            remote = name if sep else f"library/{name}"
        if remote and remote != remote.lower() and re.fullmatch(r"[A-Za-z0-9._/-]+", remote):
            raise InvalidArgument(f"invalid reference format: repository name ({remote}) must be lowercase") from None
        raise InvalidArgument("invalid reference format") from None
    return Ref(_full(parsed.name), parsed.tag, parsed.digest)


def parse_stored(text: str) -> Ref:
    """A reference as a store file keeps it (already full: docker's reference.ParseNamed).

    Raises:
        InvalidArgument: not a full, valid reference.
    """
    if not isinstance(text, str) or len(text) > 1024:
        raise InvalidArgument("a stored reference is not a string of at most 1024 characters")
    ref = normalize(text)
    if str(ref) != text:
        raise InvalidArgument(f"stored reference {text[:80]!r} is not in its full form")
    return ref


def filesafe(ref: Ref | str) -> str:
    """The file name docker's store gives *ref*: `:` -> `-`, `/` -> `_`.

    Raises:
        InvalidArgument: the name would not be one plain file name (too long, or `.`/`..`).
    """
    name = str(ref).replace(":", "-").replace("/", "_")
    if not name or name in (".", "..") or "\0" in name or len(name.encode()) > MAX_NAME:
        raise InvalidArgument(f"{ref} is too long a name for the local manifest store "
                              f"(at most {MAX_NAME} bytes as a file name); use a shorter name or tag")
    return name


# --------------------------------------------------------------------------- #
# Platforms


def _value(v: Any, what: str) -> str:
    if not isinstance(v, str) or len(v) > MAX_VALUE or (v and not _VALUE.fullmatch(v)):
        raise InvalidArgument(f"{what} {str(v)[:40]!r} is not a valid value (letters, digits and . _ + -, "
                              f"at most {MAX_VALUE} characters)")
    return v


@dataclass(frozen=True, slots=True)
class Platform:
    """A manifest's platform as docker's store and lists carry it."""

    architecture: str = ""
    os: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()
    variant: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, in Go's field order; architecture and os always, the rest when set."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out


def platform_of(doc: Any, what: str) -> Platform:
    """The platform fields of *doc* (a descriptor's platform or an image config), each checked.

    Raises:
        InvalidArgument: a field is not a sane value.
    """
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what}: the platform is not a JSON object")
    features = doc.get("os.features") or []
    if not isinstance(features, list) or len(features) > MAX_FEATURES:
        raise InvalidArgument(f"{what}: os.features is not a list of at most {MAX_FEATURES} values")
    return Platform(architecture=_value(doc.get("architecture") or "", f"{what}: architecture"),
                    os=_value(doc.get("os") or "", f"{what}: os"),
                    os_version=_value(doc.get("os.version") or "", f"{what}: os.version"),
                    os_features=tuple(_value(f, f"{what}: os.features") for f in features),
                    variant=_value(doc.get("variant") or "", f"{what}: variant"))


# --------------------------------------------------------------------------- #
# Entries: docker's types.ImageManifest


@dataclass(frozen=True, slots=True)
class Entry:
    """One manifest of a list: its reference, descriptor and raw bytes (what the digest covers)."""

    ref: Ref
    media_type: str
    digest: str
    size: int
    raw: bytes
    platform: Platform | None = None
    blobs: tuple[str, ...] = field(default=(), compare=False)

    @property
    def manifest_key(self) -> str:
        return "OCIManifest" if self.media_type == OCI_MANIFEST else "SchemaV2Manifest"

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        return out

    def _marshal(self) -> bytes:
        """json.Marshal of docker's ImageManifest: Ref, Descriptor, Raw, then the parsed manifest."""
        head = gojson.dumps({"Ref": str(self.ref), "Descriptor": self.descriptor(),
                             "Raw": base64.b64encode(self.raw).decode("ascii")})
        return head[:-1] + b',"' + self.manifest_key.encode() + b'":' + gojson.compact(self.raw, True) + b"}"

    def to_store(self) -> bytes:
        """The bytes of this entry's file in the store, as docker's CLI writes them."""
        return self._marshal()

    def verbose(self) -> bytes:
        """`manifest inspect -v` of this one entry (json.MarshalIndent with tabs), newline included."""
        return gojson.indent(self._marshal()) + b"\n"

    def plain(self) -> bytes:
        """`manifest inspect` of this one entry: its raw manifest indented with tabs, newline included."""
        return gojson.indent(self.raw) + b"\n"


def image_manifest(ref: Ref, media_type: str, raw: bytes, platform: Platform | None) -> Entry:
    """An entry for the image manifest *raw* (the bytes its digest covers), checked.

    Raises:
        InvalidArgument: *raw* is not an image manifest (docker schema 2 or OCI), or names a bad blob.
    """
    what = f"manifest {ref}"
    if _C1.search(raw):  # JSON lets them through raw; a terminal may act on them when printed
        raise InvalidArgument(f"{what} holds terminal control characters; berth does not store or print it")
    doc = gojson.check(raw, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    declared = doc.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else media_type
    if kind in LIST_TYPES or "manifests" in doc:
        raise InvalidArgument(f"{ref} is a manifest list")
    if kind not in IMAGE_TYPES or doc.get("schemaVersion") != 2:
        raise InvalidArgument(f"{ref} is not a manifest docker's CLI can use "
                              f"(media type {str(kind)[:80]!r}; schema 2 or OCI image manifests only)")
    return Entry(ref, kind, "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw), raw, platform,
                 tuple(_blobs(doc, what)))


def _blobs(doc: dict[str, Any], what: str) -> list[str]:
    """The config's and the layers' digests, checked."""
    config, layers = doc.get("config"), doc.get("layers", [])
    if not isinstance(config, dict) or not isinstance(layers, list) or len(layers) >= MAX_BLOBS:
        raise InvalidArgument(f"{what} has no config, or a malformed list of layers")
    out = []
    for item in [config, *layers]:
        digest = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise InvalidArgument(f"{what} names a blob with a malformed digest")
        out.append(digest)
    return out


def from_store(data: bytes, what: str) -> Entry:
    """An entry read back from a store file (docker's or berth's), checked.

    Files without "Raw" (written by docker before it kept the bytes) are refused with a way out.

    Raises:
        InvalidArgument: the file is not a valid entry, or its bytes do not match its digest.
    """
    doc = gojson.check(data, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    try:
        ref = parse_stored(doc.get("Ref"))  # type: ignore[arg-type]
    except InvalidArgument as exc:
        raise InvalidArgument(f"{what}: {exc}") from None
    desc = doc.get("Descriptor")
    raw_text = doc.get("Raw")
    if not isinstance(desc, dict):
        raise InvalidArgument(f"{what} has no descriptor")
    if not isinstance(raw_text, str) or not raw_text:
        raise InvalidArgument(f"{what} does not keep the manifest's bytes (an older docker wrote it); "
                              "create the list again")
    try:
        raw = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{what}: Raw is not base64") from None
    digest, media_type = desc.get("digest"), desc.get("mediaType")
    if not isinstance(digest, str) or digest != "sha256:" + hashlib.sha256(raw).hexdigest():
        raise InvalidArgument(f"{what}: the manifest's bytes do not match its digest {str(digest)[:80]}")
    if desc.get("size") != len(raw):
        raise InvalidArgument(f"{what}: the manifest's size does not match its bytes")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidArgument(f"{what}: malformed media type")
    platform = platform_of(desc["platform"], what) if desc.get("platform") is not None else None
    entry = image_manifest(ref, media_type, raw, platform)
    if entry.media_type != media_type:
        raise InvalidArgument(f"{what}: the descriptor's media type is not the manifest's")
    return entry


# --------------------------------------------------------------------------- #
# Lists


def list_media_type(entries: Sequence[Entry]) -> str:
    """distribution's FromDescriptors: an OCI index when the first member is an OCI manifest."""
    return OCI_INDEX if entries and entries[0].media_type == OCI_MANIFEST else DOCKER_LIST


def list_bytes(target: Ref, entries: Sequence[Entry], for_push: bool = False) -> tuple[str, bytes]:
    """The manifest list of *entries* for *target*: (media type, bytes), docker's exact bytes.

    Raises:
        InvalidArgument: a member lacks os/architecture (for_push), or lives on another registry.
    """
    manifests = []
    for e in entries:
        if for_push and (e.platform is None or not e.platform.architecture or not e.platform.os):
            raise InvalidArgument(f"manifest {e.ref} must have an OS and Architecture to be pushed to a registry")
        if e.ref.domain != target.domain:
            raise InvalidArgument(f"cannot use source images from a different registry than the target image: "
                                  f"{e.ref.domain} != {target.domain}")
        item: dict[str, Any] = {}
        if e.media_type:
            item["mediaType"] = e.media_type
        if e.size:
            item["size"] = e.size
        item["digest"] = e.digest
        item["platform"] = (e.platform or Platform()).to_dict()
        manifests.append(item)
    media_type = list_media_type(entries)
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    return media_type, gojson.dumps(doc, "   ")


def verbose_list(entries: Iterable[Entry]) -> bytes:
    """`manifest inspect -v` of a list: a JSON array of the entries, newline included."""
    return gojson.indent(b"[" + b",".join(e.to_store() for e in entries) + b"]") + b"\n"


def children(index_raw: bytes, what: str, limit: int = 1024) -> list[tuple[str, Platform]]:
    """The (digest, platform) of each manifest a registry's list or index names, checked.

    Raises:
        InvalidArgument: not a list, a malformed member, or more than *limit* members.
    """
    doc = gojson.check(index_raw, what)
    items = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise InvalidArgument(f"{what} is not a manifest list")
    if len(items) > limit:
        raise InvalidArgument(f"{what} names {len(items)} manifests, more than the {limit} berth reads")
    out = []
    for item in items:
        digest = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise InvalidArgument(f"{what} names a manifest with a malformed digest")
        out.append((digest, platform_of(item.get("platform") or {}, what)))
    return out


# --------------------------------------------------------------------------- #
# Annotations


@dataclass(frozen=True, slots=True)
class Annotation:
    """The flags of `manifest annotate`; empty means "leave as is"."""

    os: str = ""
    arch: str = ""
    os_features: tuple[str, ...] = ()
    os_version: str = ""
    variant: str = ""


def annotate(entry: Entry, note: Annotation) -> Entry:
    """docker's annotate: set what was given, add os.features not yet there, then check os/arch.

    Raises:
        InvalidArgument: the resulting os/arch pair is not one docker accepts (docker's words,
            naming the flags as given), or a value is not sane.
    """
    for v, what in ((note.os, "--os"), (note.arch, "--arch"), (note.os_version, "--os-version"),
                    (note.variant, "--variant"), *((f, "--os-features") for f in note.os_features)):
        _value(v, what)
    p = entry.platform or Platform()
    features = list(p.os_features)
    for f in note.os_features:
        if f not in features:
            features.append(f)
    if len(features) > MAX_FEATURES:
        raise InvalidArgument(f"at most {MAX_FEATURES} os.features")
    p = Platform(architecture=note.arch or p.architecture, os=note.os or p.os,
                 os_version=note.os_version or p.os_version, os_features=tuple(features),
                 variant=note.variant or p.variant)
    if (p.os, p.architecture) not in VALID_OS_ARCH:
        raise InvalidArgument(f"manifest entry for image has unsupported os/arch combination: {note.os}/{note.arch}")
    return replace(entry, platform=p)


def not_found(ref: Ref | str) -> NotFound:
    """The store's error for a list or member it does not have (docker's words)."""
    return NotFound(f"No such manifest: {ref}")
