"""`docker manifest`'s registry work: fetch manifests and lists, push a list with what it needs.

Strategy
--------
The CLI side of `berth manifest` talks to registries itself, as docker's
CLI does, through berth.registry.client.RegistryClient. What it fetches
becomes berth.oci.manifestlist entries (the pure part); the local store is
berth.tools.manifeststore (blocking, called around these coroutines, never
inside them).

- `fetch_image`: one image manifest, its platform read from its config blob
  (docker fills the descriptor's platform from the config);
- `fetch`: an image manifest, or a list/index with each member fetched by
  digest and given the platform the list names for it, as docker's
  GetManifestList does;
- `push`: docker's push of a local list: for each member from another
  repository, mount its blobs into the target repository (a registry that
  will not mount is an error, as in docker, except for Windows images, whose
  foreign layers cannot be mounted) and put the member manifest there by
  digest; then put the list under its tag. Progress lines are docker's.

Credentials come from a callback (the CLI's docker config lookup), one
registry at a time. A registry is hostile: manifests are capped by the
client, configs here (MAX_CONFIG), lists to MAX_MEMBERS members, and every
value is checked by manifestlist before it is stored or printed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from berth.errors import InvalidArgument, NotFound
from berth.oci import gojson
from berth.oci import manifestlist as ml
from berth.registry.base import RegistryDataError, RegistryOptions
from berth.registry.client import RegistryClient
from berth.wire.registryauth import Credentials
from berth.wire.registrynames import registry_and_repo

MAX_CONFIG = 4 << 20
MAX_MEMBERS = 1024

CredentialsFor = Callable[[str], "Credentials | None"]
T = TypeVar("T")


def options(ref: ml.Ref, insecure: bool) -> RegistryOptions:
    """Registry options for *ref*: --insecure allows its registry over plain HTTP or unverified TLS.

    Loopback registries are allowed over plain HTTP either way, as berth's push and pull allow them.
    """
    registry, _ = registry_and_repo(ref.name)
    return RegistryOptions(insecure_registries=(registry,) if insecure else (), retries=1)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a reference names remotely: one image (entries of one, is_list False) or a list."""

    entries: list[ml.Entry]
    is_list: bool


class Manifests:
    """Registry operations for `berth manifest`; one per command."""

    def __init__(self, client: RegistryClient, creds_for: CredentialsFor) -> None:
        self._client = client
        self._creds_for = creds_for

    def _where(self, ref: ml.Ref) -> tuple[str, str, Credentials | None]:
        registry, repo = registry_and_repo(ref.name)
        return registry, repo, self._creds_for(registry)

    async def _config_platform(self, ref: ml.Ref, digest: str) -> ml.Platform:
        """The platform fields of the image config *digest* (at most MAX_CONFIG bytes, digest checked)."""
        registry, repo, creds = self._where(ref)
        data = bytearray()
        stream = await self._client.open_blob(registry, repo, digest, creds)
        async with stream:
            async for chunk in stream:
                data += chunk
                if len(data) > MAX_CONFIG:
                    raise RegistryDataError(f"the config {digest} of {ref} is larger than {MAX_CONFIG} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryDataError(f"the config of {ref} does not match its digest {digest}")
        doc = gojson.check(bytes(data), f"the config of {ref}")
        return ml.platform_of(doc if isinstance(doc, dict) else {}, f"the config of {ref}")

    async def fetch(self, ref: ml.Ref) -> Fetched:
        """The image or list *ref* names in its registry.

        Raises:
            NotFound: "no such manifest: REF" (docker's words).
            InvalidArgument: not an image manifest or a list of them.
            Unauthenticated, Unavailable, RegistryDataError: from the registry client.
        """
        registry, repo, creds = self._where(ref)
        try:
            got = await self._client.get_manifest(registry, repo, ref.digest or ref.tag or "latest", creds)
        except NotFound:
            raise NotFound(f"no such manifest: {ref}") from None
        if got.media_type in ml.LIST_TYPES:
            return Fetched(await self._members(ref, got.data), True)
        entry = ml.image_manifest(ref, got.media_type, got.data, None)
        platform = await self._config_platform(ref, entry.blobs[0])
        return Fetched([_with_platform(entry, platform)], False)

    async def fetch_image(self, ref: ml.Ref) -> ml.Entry:
        """The image manifest *ref* names (a list is an error, as in docker: "REF is a manifest list")."""
        got = await self.fetch(ref)
        if got.is_list:
            raise InvalidArgument(f"{ref} is a manifest list")
        return got.entries[0]

    async def _members(self, ref: ml.Ref, index: bytes) -> list[ml.Entry]:
        registry, repo, creds = self._where(ref)
        entries = []
        for digest, platform in ml.children(index, f"manifest list {ref}", MAX_MEMBERS):
            member = ref.with_digest(digest)
            try:
                got = await self._client.get_manifest(registry, repo, digest, creds)
            except NotFound:
                raise NotFound(f"no such manifest: {member}") from None
            entries.append(_with_platform(ml.image_manifest(member, got.media_type, got.data, None), platform))
        return entries

    async def push(self, target: ml.Ref, entries: list[ml.Entry], say: Callable[[str], None]) -> str:
        """Push the local list *entries* as *target*; return the list's digest.

        Raises:
            InvalidArgument: a member lacks os/architecture, lives on another registry, or its
                blobs could not be mounted into the target repository.
            Unauthenticated, Unavailable, RegistryDataError: from the registry client.
        """
        if not entries:
            raise NotFound(f"{target} not found")
        media_type, body = ml.list_bytes(target, entries, for_push=True)
        registry, repo, creds = self._where(target)
        for entry in entries:
            _, member_repo = registry_and_repo(entry.ref.name)
            if member_repo == repo:
                continue
            windows = entry.platform is not None and entry.platform.os == "windows"
            for blob in entry.blobs:
                mounted = await self._client.mount_blob(registry, repo, blob, member_repo, creds)
                if not mounted and not windows:
                    raise InvalidArgument(f"error mounting {entry.ref.name}@{blob} to {target}")
            await self._client.put_manifest(registry, repo, entry.digest, entry.media_type, entry.raw, creds)
            say(f"Pushed ref {target.name}@{entry.digest} with digest: {entry.digest}\n")
        reference = target.tag or "sha256:" + hashlib.sha256(body).hexdigest()
        return await self._client.put_manifest(registry, repo, reference, media_type, body, creds)


async def with_registry(ref: ml.Ref, insecure: bool, creds_for: CredentialsFor,
                        work: Callable[[Manifests], Awaitable[T]]) -> T:
    """Run *work* with a Manifests for *ref*'s registry, the client closed after."""
    async with RegistryClient(options(ref, insecure)) as client:
        return await work(Manifests(client, creds_for))


def _with_platform(entry: ml.Entry, platform: ml.Platform) -> ml.Entry:
    return ml.Entry(entry.ref, entry.media_type, entry.digest, entry.size, entry.raw, platform, entry.blobs)
