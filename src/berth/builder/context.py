"""The build context: the tree that a build's COPY and ADD instructions read from.

Strategy: POST /build sends the context as a tar; Context.extract() unpacks
it into a fresh directory (berth.builder.contexttar) and then applies
.dockerignore once, on disk (berth.builder.ignore), so that everything later
sees only what the build may read. Docker's client always sends the
Dockerfile and .dockerignore, and the daemon reads the Dockerfile before
dropping them from the context when .dockerignore excludes them; so their
bytes are kept in memory first, and read_dockerfile() finds them even when
COPY no longer can. Paths inside the context are resolved in scope
(berth.builder.scope); which paths a COPY names is berth.builder.sources'
work, and its cache key berth.builder.checksum's.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO, Mapping, Sequence

from berth.builder.checksum import tree_checksum
from berth.builder.contexttar import extract_context
from berth.builder.ignore import Ignore, parse_dockerignore, prune
from berth.builder.scope import resolve_in_dir, split_clean
from berth.builder.sources import find_sources
from berth.errors import InvalidArgument

log = logging.getLogger(__name__)

DOCKERIGNORE = ".dockerignore"
DEFAULT_DOCKERFILE = "Dockerfile"


def _dockerfile_key(name: str) -> list[str] | None:
    return split_clean(name or DEFAULT_DOCKERFILE)


class Context:
    """An extracted build context, with .dockerignore already applied.

    Attributes:
        root: the directory holding the context.
    """

    def __init__(self, root: Path, kept: Mapping[str, bytes] | None = None) -> None:
        """Wrap a directory that already is a context (nothing is pruned; see from_directory).

        Args:
            root: the context directory.
            kept: file bytes read before pruning, by slash-separated path (the Dockerfile).
        """
        self.root = Path(root)
        self._kept = dict(kept or {})

    @classmethod
    def extract(cls, stream: BinaryIO, dest: Path, dockerfile: str = DEFAULT_DOCKERFILE, *,
                ignore: Ignore | None = None) -> Context:
        """Unpack the body of POST /build into *dest* and apply .dockerignore.

        Args:
            stream: the tar (plain, gzip, bzip2, xz or zstd); an empty body is an empty context.
            dest: an empty or missing directory; the caller removes it after the build.
            dockerfile: the `dockerfile` query parameter (path inside the context).
            ignore: the exclusion rules; default: the context's .dockerignore, if any.
        Raises:
            InvalidArgument: not a tar, or a hostile entry (see extract_context).
            FailedPrecondition: the disk filled up.
        """
        extract_context(stream, dest)
        return cls.from_directory(dest, dockerfile, ignore=ignore)

    @classmethod
    def from_directory(cls, root: Path, dockerfile: str = DEFAULT_DOCKERFILE, *,
                       ignore: Ignore | None = None) -> Context:
        """Make a context of the directory *root*, removing (in place) what .dockerignore excludes.

        The Dockerfile and .dockerignore are read first, so read_dockerfile() finds the
        Dockerfile even when .dockerignore excludes it (and COPY then does not).
        """
        top = Path(root)
        kept: dict[str, bytes] = {}
        for name in (dockerfile or DEFAULT_DOCKERFILE, DOCKERIGNORE):
            parts = _dockerfile_key(name)
            if parts is None:
                continue
            data = _read_regular(top, parts)
            if data is not None:
                kept["/".join(parts)] = data
        if ignore is None and DOCKERIGNORE in kept:
            ignore = parse_dockerignore(kept[DOCKERIGNORE].decode("utf-8", "surrogateescape"))
        if ignore is not None:
            count = prune(top, ignore)
            log.debug("build context %s: %d entries excluded by .dockerignore", top, count)
        return cls(top, kept)

    def read_dockerfile(self, name: str = DEFAULT_DOCKERFILE) -> str:
        """The text of the Dockerfile *name* (a path inside the context).

        A missing "Dockerfile" falls back to "dockerfile", as Docker's daemon does. Bytes
        that are not UTF-8 are kept as surrogate escapes; a UTF-8 byte order mark is dropped.

        Raises:
            InvalidArgument: "Cannot locate specified Dockerfile: <name>".
        """
        parts = _dockerfile_key(name)
        candidates = [parts] if parts is not None else []
        if parts == [DEFAULT_DOCKERFILE]:
            candidates.append([DEFAULT_DOCKERFILE.lower()])
        for candidate in candidates:
            data = self._kept.get("/".join(candidate))
            if data is None:
                data = _read_regular(self.root, candidate)
            if data is not None:
                return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {name or DEFAULT_DOCKERFILE}")

    def sources(self, patterns: list[str], *, instruction: str = "COPY") -> list[Path]:
        """The context paths COPY/ADD *patterns* name (see find_sources).

        Raises:
            InvalidArgument: "<instruction> failed: forbidden path outside the build context: ../x",
                or "... file not found in build context or excluded by .dockerignore: stat x: file
                does not exist", or a malformed glob.
        """
        return find_sources(self.root, patterns, instruction=instruction)

    def checksum(self, paths: list[Path]) -> str:
        """The cache key of a COPY/ADD of *paths* from this context (see tree_checksum)."""
        return tree_checksum(self.root, paths)


def _read_regular(root: Path, parts: Sequence[str]) -> bytes | None:
    """The bytes of the regular file at *parts* (resolved in scope), or None."""
    real = resolve_in_dir(root, parts)
    path = os.path.join(os.fspath(root), *real)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


__all__ = ["Context", "DEFAULT_DOCKERFILE", "DOCKERIGNORE"]
