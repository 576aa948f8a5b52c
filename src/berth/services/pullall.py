"""`docker pull --all-tags`: every tag of a repository, one pull each, then one status line.

Strategy: list the repository's tags from the registry (bounded, see
berth.registry.tagslist), pull each with the ordinary pull, holding back each
pull's closing "Status:" line, and end as Docker does with one status for the
repository: "Downloaded newer image" when any tag brought something new.
"""

from __future__ import annotations

from berth.errors import InvalidArgument
from berth.oci import reference
from berth.services.distribution import Distribution, Emit
from berth.wire.containerspec import JSON
from berth.wire.registryauth import Credentials
from berth.wire.registrynames import registry_and_repo


Progress = dict[str, JSON]  # one progress message, as Emit takes it


def names_repository(name: str) -> bool:
    """True when *name* is a valid reference with neither tag nor digest (an invalid one is left
    to the ordinary pull, which says what is wrong with it)."""
    try:
        ref = reference.parse(name, default_tag=None)
    except InvalidArgument:
        return False
    return not ref.tag and not ref.digest


async def pull_all_tags(dist: Distribution, name: str, platform: str, creds: Credentials | None,
                        emit: Emit) -> None:
    """Pull every tag of the repository *name* (which carries no tag or digest).

    Raises:
        InvalidArgument: *name* names a tag or digest; as Distribution.pull otherwise.
    """
    ref = reference.parse(name, default_tag=None)
    if ref.tag or ref.digest:
        raise InvalidArgument(f"{name}: a pull of all tags takes a repository name without a tag or digest")
    registry, repo = registry_and_repo(ref.name)
    tags = await dist.client().list_tags(registry, repo, dist.credentials(registry, creds))

    def quiet(msg: Progress) -> None:
        if not str(msg.get("status", "")).startswith("Status: "):
            emit(msg)
    fresh = False
    for tag in tags:
        result = await dist.pull(f"{ref.name}:{tag}", platform, creds, quiet)
        fresh = fresh or result.downloaded
    emit({"status": f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {ref.name}"})
