"""Failed registry requests as berth's error categories, with messages that say what to do next.

Strategy: a status or a transport error is turned into one category
(Unauthenticated, NotFound, InvalidArgument, RegistryDataError) in one place,
and every message names the registry and what was asked of it. The
registry's own words come from its {"errors": [...]} body, read up to 64 KiB;
a transport error is described by its deepest cause that says anything (a TLS
problem, an errno), and an auth failure says which credentials were sent and
how to log in.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from typing import NoReturn

import httpx

from berth.errors import InvalidArgument, NotFound, Unauthenticated
from berth.registry.base import RegistryDataError
from berth.registry.responses import int_header
from berth.wire.registryauth import Credentials

_ERROR_BODY_LIMIT = 64 << 10


async def fail(resp: httpx.Response, registry: str, what: str, creds: Credentials | None) -> NoReturn:
    """Raise the error category for an unexpected answer to *what*."""
    detail = await error_text(resp)
    status = resp.status_code
    if status in (401, 403):
        raise Unauthenticated(f"registry {registry} denied the {what} ({detail or status}): "
                              f"{login_hint(registry, creds)}")
    if status == 404:
        raise NotFound(f"{what} not found on registry {registry}: {detail or '404'}")
    if 400 <= status < 500:
        raise InvalidArgument(f"registry {registry} refused the {what}: {status} {detail}".rstrip())
    raise RegistryDataError(f"registry {registry} answered {status} to the {what}, which the distribution "
                            "API does not allow")


def login_hint(registry: str, creds: Credentials | None) -> str:
    if creds is None or creds.empty:
        return f"no credentials were sent; run `docker login {registry}`"
    who = f"user {creds.username!r}" if creds.username else "the token given"
    return f"credentials of {who} were sent; check them and the access they grant, and run `docker login {registry}`"


def causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe(exc: httpx.TransportError) -> str:
    """Say what went wrong on the wire, in the words of the deepest cause that has any."""
    text = str(exc).strip() or type(exc).__name__
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLError):
            return (f"{cause.reason or cause} (a TLS problem: if the registry serves plain HTTP, "
                    "list it in insecure-registries)")
        if isinstance(cause, OSError) and cause.errno is not None:
            text = f"{os.strerror(cause.errno)} ({cause.strerror or cause})"
    if isinstance(exc, httpx.TimeoutException):
        text = f"timed out ({type(exc).__name__})"
    return text


def error_text_of(body: bytes) -> str:
    """The registry's error in a body: "CODE: message" from {"errors": [...]}, else its start."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", errors="replace").strip()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list):
        parts = []
        for err in errors:
            if isinstance(err, dict):
                code, message = str(err.get("code") or ""), str(err.get("message") or "")
                parts.append(f"{code}: {message}" if code and message else code or message)
        return "; ".join(p for p in parts if p)
    return body[:200].decode("utf-8", errors="replace").strip()


async def error_text(resp: httpx.Response) -> str:
    """The error a registry put in a response body (read up to 64 KiB), or ""."""
    if resp.request.method == "HEAD":
        return ""
    size = int_header(resp, "content-length")
    if size is not None and size > _ERROR_BODY_LIMIT:
        return ""
    try:
        body = await resp.aread()
    except httpx.HTTPError:
        return ""
    return error_text_of(body[:_ERROR_BODY_LIMIT])
