"""The Engine API's routing: a method and a path to a handler and its path parameters.

Strategy: routes are path templates (`/containers/{id}/start`), turned into
regular expressions once, at registration, and tried in order; `{image}`
matches across slashes, since image names have them. A path that matches only
under another method is MethodNotAllowed (405); a Docker path berth does not
serve yet (`plan`) is NotImplemented_ (501) naming what is missing, not a bare
404; anything else is NotFound (404). Path parameters come out unquoted.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Awaitable, Callable

from berth.api.replies import Hijack, Reply, Stream
from berth.api.request import Request
from berth.errors import NotFound, NotImplemented_

Handler = Callable[[Request], Awaitable["Reply | Stream | Hijack"]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    waits: bool = False


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.planned: list[tuple[re.Pattern[str], str]] = []

    def plan(self, template: str, what: str) -> None:
        """A Docker API path berth does not serve yet: answer 501 naming *what*, not a bare 404."""
        regex = re.sub(r"\{(\w+)\}", "[^/]+", template).replace("*", ".*")
        self.planned.append((re.compile(f"^{regex}/?$"), what))

    def add(self, method: str, template: str, handler: Handler, waits: bool = False) -> None:
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", template)
        regex = regex.replace("(?P<image>[^/]+)", "(?P<image>.+?)")
        self.routes.append(Route(method, re.compile(f"^{regex}/?$"), handler, waits))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                allowed = True
        for pattern, what in self.planned:
            if pattern.match(path):
                raise NotImplemented_(f"this version of berth does not support {what}")
        if allowed:
            raise MethodNotAllowed()
        raise NotFound(f"page not found: {path}")


class MethodNotAllowed(Exception):
    """The path is served, but not with this method (the server answers 405)."""
