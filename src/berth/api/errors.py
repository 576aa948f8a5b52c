"""Error categories -> HTTP status and Docker's {"message": ...} body, in one table."""

from __future__ import annotations

import logging

from berth import errors

log = logging.getLogger(__name__)


class RequestTooLarge(errors.InvalidArgument):
    """The request (its body, or one JSON value in it) is over the daemon's limit (HTTP 413)."""


class RequestTimeout(errors.InvalidArgument):
    """The client stopped sending in the middle of a request (HTTP 408)."""


STATUS: dict[type[errors.BerthError], int] = {
    RequestTooLarge: 413,
    RequestTimeout: 408,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.InvalidArgument: 400,
    errors.Unauthenticated: 401,
    errors.FailedPrecondition: 500,
    errors.Unavailable: 503,
    errors.CommandFailed: 500,
    errors.NotModified: 304,
    errors.NotImplemented_: 501,
}


def status_of(exc: BaseException) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_body(exc: BaseException) -> tuple[int, dict[str, str] | None]:
    """(status, body) for *exc*; internal faults are logged with their traceback."""
    status = status_of(exc)
    if status == 500:
        if isinstance(exc, errors.BerthError):
            log.warning("request failed: %s", exc)
        else:
            log.exception("internal error")
    message = str(exc) or type(exc).__name__
    if not isinstance(exc, errors.BerthError):
        message = f"internal error in berthd: {type(exc).__name__}: {message} (see the daemon log)"
    return status, (None if status == 304 else {"message": message})
