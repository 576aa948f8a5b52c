"""Engine API paths -> handlers: the whole table, built from each handler group."""

from __future__ import annotations

from berth.api.handlers import containers, images, system
from berth.api.server import Router
from berth.api.wiring import Daemon


def build(daemon: Daemon) -> Router:
    router = Router()
    for group in (system, images, containers):
        group.register(router, daemon)
    return router
