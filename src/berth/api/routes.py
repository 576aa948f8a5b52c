"""Engine API paths -> handlers: the whole table, built from each handler group."""

from __future__ import annotations

from berth.api.handlers import build as build_routes
from berth.api.handlers import containers, images, networks, system, volumes
from berth.api.server import Router
from berth.api.wiring import Daemon


def build(daemon: Daemon) -> Router:
    router = Router()
    for group in (system, images, containers, networks, volumes, build_routes):
        group.register(router, daemon)
    for template, what in PLANNED:
        router.plan(template, what)
    return router


# Docker API paths that later versions of berth will serve.
PLANNED = (
    ("/containers/{id}/changes", "`docker diff` yet"),
    ("/images/search", "`docker search` yet"),
    ("/swarm*", "swarm mode"),
    ("/nodes*", "swarm mode"),
    ("/services*", "swarm mode"),
    ("/tasks*", "swarm mode"),
    ("/secrets*", "swarm mode"),
    ("/configs*", "swarm mode"),
    ("/plugins*", "plugins"),
    ("/session", "BuildKit sessions"),
    ("/grpc", "BuildKit"),
)
