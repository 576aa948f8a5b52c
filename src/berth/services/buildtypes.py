"""The build's typed values: its options (the classic builder's query), a stage's state, a step's error.

Strategy: plain data shared by services.build and its parts (the step cache,
RUN steps), so none of them imports another's class for its values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.errors import BerthError
from berth.oci.imageconfig import HistoryEntry, RuntimeConfig
from berth.oci.platform import Platform
from berth.wire.containerspec import HostConfig

Emit = Callable[[dict[str, Any]], None]
DEFAULT_SHELL = ["/bin/sh", "-c"]
CacheSource = tuple[tuple[HistoryEntry, ...], tuple[str, ...]]  # a cache_from image's history and diff ids


@dataclass
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"
    buildargs: dict[str, str] = field(default_factory=dict)
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    quiet: bool = False
    platform: str = ""
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    isolation: str = ""
    cache_from: list[str] = field(default_factory=list)  # images whose chains alone may serve as cache
    # the RUN steps' limits (memory, cpu*, cpuset*, shmsize, ulimits, cgroupparent), as their HostConfig
    step_limits: HostConfig = field(default_factory=HostConfig)
    # (history, diff_ids) of each cache_from image found; None = the whole local cache (set by Builder.build)
    cache_sources: list[CacheSource] | None = None


class BuildError(BerthError):
    """A step failed; carries the exit code for errorDetail."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class StageState:
    """What the build of one stage has made so far."""

    image: str | None  # None = scratch with no step yet
    config: RuntimeConfig  # the image's runtime defaults so far
    platform: Platform
    args: dict[str, str] = field(default_factory=dict)  # ARGs declared in this stage, with values
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))


class Puller(Protocol):
    """What FROM needs to fetch a base image that is not here (berth.services.distribution meets it)."""

    async def pull(self, ref_text: str, platform: str, creds: Any, emit: Any) -> Any: ...


def say(opts: BuildOptions, emit: Emit, text: str) -> None:
    """A line of the build's output (nothing with --quiet)."""
    if not opts.quiet:
        emit({"stream": text + "\n"})


def short(image: str | None) -> str:
    """An image id as the build's output shows it (12 hex digits)."""
    return (image or "")[7:19]
