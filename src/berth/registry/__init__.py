"""berth's client for OCI distribution (v2) registries.

Strategy: three layers. `berth.wire.registrynames` (pure) says which registry serves an image
name and how to reach it; `berth.wire.registryauth` (pure) holds credentials and parses what
registries and token servers say about auth; `client` does the HTTP: manifests,
blobs, uploads, sent through `transport` (the token flow, retries, redirects) over
`endpoints` (TLS per registry), with `responses` and `failures` judging the answers.

    from berth import registry
    host, repo = registry.registry_and_repo("busybox")
    async with registry.RegistryClient(registry.RegistryOptions()) as rc:
        m = await rc.get_manifest(host, repo, "latest", creds=None)
"""

from __future__ import annotations

from berth.registry.base import (
    MANIFEST_TYPES,
    Manifest,
    RegistryDataError,
    RegistryOptions,
    RegistryUnavailable,
)
from berth.registry.blobstream import BlobStream
from berth.registry.client import RegistryClient
from berth.wire.registryauth import (
    Challenge,
    Credentials,
    credentials_from_config,
    decode_x_registry_auth,
    parse_challenges,
    scope,
)
from berth.wire.registrynames import (
    display_name,
    endpoint_host,
    is_insecure,
    is_local,
    registry_and_repo,
)

__all__ = [
    "MANIFEST_TYPES", "BlobStream", "Challenge", "Credentials", "Manifest", "RegistryClient",
    "RegistryDataError", "RegistryOptions", "RegistryUnavailable",
    "credentials_from_config", "decode_x_registry_auth",
    "display_name", "endpoint_host", "is_insecure", "is_local", "parse_challenges", "registry_and_repo", "scope",
]
