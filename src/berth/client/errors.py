"""The client's errors: a daemon's non-2xx answer as an `APIError` of its category, and a daemon out of reach.

Strategy: each APIError subclass is also one of berth.errors' categories
(`NotFoundError` is a `NotFound`, `ConflictError` a `Conflict`, ...), so a caller
catches by category and still reads `.status` and `.message`. `api_error` is pure:
it picks the class from the status and the message from the `{"message": ...}`
body the Engine API sends (or the body's text when it is not JSON). A daemon
that cannot be reached at all raises `DaemonUnreachable`, an `Unavailable`.
"""

from __future__ import annotations

import json

from berth.errors import (
    BerthError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)


class APIError(BerthError):
    """The daemon answered with a non-2xx status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFoundError(APIError, NotFound):
    pass


class ConflictError(APIError, Conflict):
    pass


class BadRequestError(APIError, InvalidArgument):
    pass


class ServerError(APIError, FailedPrecondition):
    pass


class UnavailableError(APIError, Unavailable):
    pass


def api_error(status: int, body: bytes) -> APIError:
    """Build the APIError for a status and an error body (`{"message": ...}` or text)."""
    message = ""
    try:
        doc = json.loads(body.decode("utf-8", "replace") or "null")
        if isinstance(doc, dict):
            message = str(doc.get("message") or doc.get("error") or "")
    except ValueError:
        message = body.decode("utf-8", "replace").strip()
    if not message:
        message = f"HTTP {status}"
    cls: type[APIError] = {
        400: BadRequestError,
        404: NotFoundError,
        409: ConflictError,
        503: UnavailableError,
    }.get(status, ServerError if status >= 500 else APIError)
    return cls(status, message)


class DaemonUnreachable(Unavailable):
    def __init__(self, host: str, cause: BaseException | None = None) -> None:
        self.host = host
        super().__init__(
            f"Cannot connect to the berth daemon at {host}. Is the berth daemon running?"
        )
        self.__cause__ = cause
