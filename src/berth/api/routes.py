"""Engine API paths -> handlers: the whole table, built from each handler group."""

from __future__ import annotations

from berth.api.handlers import build as build_routes
from berth.api.handlers import containers, images, networks, swarm, system, volumes
from berth.api.handlers import search as search_routes
from berth.api.routing import Router
from berth.api.wiring import Daemon


def build(daemon: Daemon) -> Router:
    router = Router()
    for group in (system, search_routes, images, containers, networks, volumes, build_routes, swarm):
        group.register(router, daemon)
    for template, what in PLANNED:
        router.plan(template, what)
    return router


# Docker API paths that later versions of berth will serve (501). Swarm paths are not here: berth is
# never a swarm node, and answers them as a Docker node outside a swarm does (handlers/swarm.py, 503).
PLANNED = (
    ("/plugins*", "plugins"),
    ("/session", "BuildKit sessions"),
    ("/grpc", "BuildKit"),
)
