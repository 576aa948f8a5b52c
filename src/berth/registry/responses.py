"""What a registry answers, checked: manifests against their digests, Content-Range, digest headers.

Strategy: the checks are pure functions of the bytes and headers received
(only read_capped reads, a body small enough to check), so a registry that
breaks the distribution protocol is told apart from one that is merely
failing: what does not fit raises RegistryDataError naming the request.
Nothing here verifies blob digests: the content store does, as it writes.
"""

from __future__ import annotations

import hashlib
import json
import re

import httpx

from berth.oci import image as oci_image
from berth.registry.base import (
    DIGEST,
    OCI_INDEX,
    OCI_MANIFEST,
    OCTET,
    Manifest,
    RegistryDataError,
)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def check_manifest(data: bytes, content_type: str, header_digest: str, reference: str, what: str) -> Manifest:
    """Check a manifest's bytes against what the registry and the request say it is.

    The media type comes from Content-Type, or from the JSON's mediaType when
    the registry sent a generic type. The digest is the reference when it is a
    digest, else the sha256 of the bytes.

    Raises:
        RegistryDataError: not a JSON object, or a digest that does not match.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise RegistryDataError(f"{what}: the registry sent something that is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RegistryDataError(f"{what}: the registry sent JSON that is not an object")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in ("", "application/json", "text/plain", OCTET):
        declared = doc.get("mediaType")
        media_type = declared if isinstance(declared, str) else ""
        if not media_type:
            media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    for expected, source in ((reference, "the requested digest"), (header_digest.strip(), "Docker-Content-Digest")):
        m = DIGEST.fullmatch(expected)
        if m is None:
            continue
        actual = f"{m.group(1)}:{hashlib.new(m.group(1), data).hexdigest()}"
        if actual != expected:
            raise RegistryDataError(f"{what}: the registry sent a manifest whose digest is {actual}, "
                                    f"not {expected} ({source})")
    digest = reference if DIGEST.fullmatch(reference) else "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        image = oci_image.manifest_of(doc, data, digest=digest, media_type=media_type, what=what)
    except (oci_image.MalformedImage, oci_image.SchemaOneManifest) as exc:
        return Manifest(media_type, digest, data, refusal=exc)
    return Manifest(media_type, digest, data, image)


def parse_content_range(value: str, offset: int, what: str, registry: str) -> tuple[int, int]:
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None:
        raise RegistryDataError(f"registry {registry} answered 206 for {what} with a bad Content-Range {value!r}")
    first, last = int(m.group(1)), int(m.group(2))
    if first != offset or last < first:
        raise RegistryDataError(f"registry {registry} answered a Range request for {what} from byte {offset} "
                                f"with bytes {first}-{last}")
    return first, last


def check_digest_header(resp: httpx.Response, digest: str, what: str) -> None:
    header = resp.headers.get("docker-content-digest", "").strip()
    if header and header != digest and header.split(":", 1)[0] == digest.split(":", 1)[0]:
        raise RegistryDataError(f"{what}: the registry stored it under digest {header}, not {digest}")


def int_header(resp: httpx.Response, name: str) -> int | None:
    value = resp.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


async def read_capped(resp: httpx.Response, limit: int, what: str) -> bytes:
    size = int_header(resp, "content-length")
    if size is not None and size > limit:
        raise RegistryDataError(f"{what}: the registry sent {size} bytes, more than the {limit} berth "
                                "accepts for a manifest")
    data = bytearray()
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise RegistryDataError(f"{what}: the registry sent more than the {limit} bytes berth accepts "
                                    "for a manifest")
    return bytes(data)
