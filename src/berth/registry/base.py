"""The registry client's vocabulary: options, the manifest value, media types and error categories.

Strategy: plain values that every part of the client (berth.registry.client,
.transport, .endpoints, .responses, .failures) and its callers share, so that
none of those parts needs another just for a type. RegistryOptions comes from
the daemon's configuration; a Manifest keeps the bytes its digest covers.
RegistryDataError is for answers that break the distribution protocol;
RegistryUnavailable for a registry that could not be reached or kept
failing, so that a caller may try again later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from berth.errors import BerthError, Unavailable
from berth.oci.image import ImageIndex, ImageManifest, SchemaOneManifest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

OCTET = "application/octet-stream"
DIGEST = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How berth talks to registries (from the daemon's configuration).

    retries counts the attempts after the first; backoff is the first delay
    (doubled each time); timeout applies to connecting and to each read and
    write, not to a whole transfer. local_is_insecure follows Docker, which
    treats loopback registries as insecure; False makes them verify TLS like
    any other registry.
    """

    insecure_registries: tuple[str, ...] = ()
    certs_dir: Path = Path("/etc/docker/certs.d")
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 30.0
    max_manifest_bytes: int = 4 << 20
    local_is_insecure: bool = True


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry sent it: its bytes are what the digest covers.

    `image` is the same bytes parsed (oci.image), once, as they arrived; None with the reason in
    `refusal` when they are not an image's manifest or index (an artifact, a schema 1 manifest).
    """

    media_type: str
    digest: str
    data: bytes
    image: ImageManifest | ImageIndex | None = None
    refusal: BerthError | None = None

    def parsed(self) -> ImageManifest | ImageIndex:
        """The image manifest or index.

        Raises:
            RegistryDataError: the registry sent a malformed one. SchemaOneManifest (501): schema 1.
        """
        if self.image is not None:
            return self.image
        if isinstance(self.refusal, SchemaOneManifest):
            raise self.refusal
        raise RegistryDataError(str(self.refusal or f"manifest {self.digest} is not an image's"))


class RegistryDataError(BerthError):
    """A registry answered something the distribution protocol does not allow (HTTP 500)."""


class RegistryUnavailable(Unavailable):
    """A registry was unreachable or answered 429/5xx on every attempt; a later attempt may work."""

