"""Swarm-mode routes, answered as a Docker node that is not in a swarm answers them.

Strategy: berth is never a swarm node, so nothing here has state. Every path
of the swarm, node, service, task, secret and config groups answers 503 with
the message a Docker engine outside a swarm gives (clients such as docker-py
tell "not in a swarm" from a real failure by that status: its network tests
call `leave_swarm(force=True)` in their tear-down and accept a 503). `docker
swarm init` and `join` say instead that berth has no swarm mode, and what to
use for what swarm would do. Plugins are a different matter and stay 501
(routes.PLANNED).
"""

from __future__ import annotations

from berth.api.replies import Reply
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.wiring import Daemon
from berth.errors import Unavailable

# What a Docker engine that is not in a swarm answers, word for word (moby daemon/cluster).
NOT_IN_SWARM = "This node is not part of a swarm"
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                 "to connect this node to swarm and try again.")
# berth's own answer to init and join: it will not become a swarm node at all.
NO_SWARM_MODE = ("berth does not run swarm mode, so this node cannot start or join a swarm: run "
                 "multi-container applications with docker-compose (or `docker run` and user-defined "
                 "networks); for orchestration across hosts use Kubernetes (berth has no CRI endpoint yet)")

# Path prefixes of the swarm API groups; each prefix and everything below it.
GROUPS = ("/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs")
METHODS = ("GET", "POST", "PUT", "DELETE")


def message(path: str) -> str:
    """The 503 message for *path* (a path of one of GROUPS), whatever the method."""
    path = path.rstrip("/")
    if path in ("/swarm/init", "/swarm/join"):
        return NO_SWARM_MODE
    if path == "/swarm/leave":
        return NOT_IN_SWARM
    return NOT_A_MANAGER


def register(router: Router, d: Daemon) -> None:
    async def unavailable(req: Request) -> Reply:
        raise Unavailable(message(req.path))

    for prefix in GROUPS:
        for method in METHODS:
            router.add(method, prefix + "(?:/.*)?", unavailable)
