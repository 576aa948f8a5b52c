"""Errors by category.

    BerthError
     ├── NotFound            the thing named does not exist            (HTTP 404)
     ├── AlreadyExists       a name or id is taken                     (HTTP 409)
     ├── Conflict            the thing is in the wrong state / in use  (HTTP 409)
     ├── InvalidArgument     the request itself is wrong               (HTTP 400)
     ├── Unauthenticated     a registry refused the credentials (or none) (HTTP 401)
     ├── FailedPrecondition  the host lacks something the request needs (HTTP 500)
     ├── Unavailable         a dependency did not answer               (HTTP 503)
     ├── CommandFailed       a program berth ran exited non-zero       (HTTP 500)
     ├── NotModified         nothing to do: already in that state      (HTTP 304)
     └── NotImplemented_     a Docker feature berth does not have yet  (HTTP 501)

Raise the category with context and chain the cause:
    raise NotFound(f"No such image: {ref}") from exc
The API maps categories to statuses in one table (berth.api.errors).
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises on purpose."""


class NotFound(BerthError):
    pass


class AlreadyExists(BerthError):
    pass


class Conflict(BerthError):
    pass


class InvalidArgument(BerthError):
    pass


class Unauthenticated(BerthError):
    """A registry asked for credentials berth does not have, or refused the ones given."""


class FailedPrecondition(BerthError):
    pass


class Unavailable(BerthError):
    pass


class CommandFailed(BerthError):
    """A subprocess exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:]
        super().__init__(f"{argv[0]} exited with {returncode}: {' '.join(tail)}")


class NotModified(BerthError):
    """The request asked for a state the thing is already in (Docker answers 304)."""


class NotImplemented_(BerthError):
    """A Docker API feature this version of berth does not offer (yet)."""


class NotRegularFile(InvalidArgument):
    """A regular file was expected and something else is there ("/etc/passwd is not a regular file")."""


class FileTooLarge(InvalidArgument):
    """A bounded read found more than its limit."""


class SymlinkLoop(InvalidArgument):
    """Resolving a path inside a root met too many symlinks (or a loop)."""
