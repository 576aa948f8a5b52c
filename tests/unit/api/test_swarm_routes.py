"""Swarm paths answer as a Docker node outside a swarm (503, Docker's words); plugins stay 501."""

from __future__ import annotations

import asyncio

import pytest

from berth.api import routes
from berth.api.errors import status_of
from berth.api.handlers import swarm
from berth.api.request import Request
from berth.api.routing import Router
from berth.errors import NotImplemented_, Unavailable


def router() -> Router:
    r = Router()
    swarm.register(r, None)  # type: ignore[arg-type]  # no daemon state is used
    for template, what in routes.PLANNED:
        r.plan(template, what)
    return r


def answer(method: str, path: str) -> tuple[int, str]:
    route, params = router().match(method, path)
    req = Request(method, path, "1.47", {}, {}, params)
    with pytest.raises(Unavailable) as caught:
        asyncio.run(route.handler(req))
    return status_of(caught.value), str(caught.value)


@pytest.mark.parametrize("method, path", [
    ("GET", "/swarm"), ("GET", "/swarm/"), ("GET", "/swarm/unlockkey"), ("POST", "/swarm/update"),
    ("POST", "/swarm/unlock"), ("GET", "/nodes"), ("GET", "/nodes/abc"), ("DELETE", "/nodes/abc"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/x/logs"), ("GET", "/tasks"),
    ("GET", "/tasks/t1"), ("GET", "/secrets"), ("POST", "/secrets/create"), ("DELETE", "/secrets/s"),
    ("GET", "/configs"), ("POST", "/configs/c/update"), ("HEAD", "/swarm"), ("PUT", "/services/x"),
])
def test_not_a_manager(method: str, path: str) -> None:
    assert answer(method, path) == (503, swarm.NOT_A_MANAGER)


def test_leave_says_not_part_of_a_swarm() -> None:
    assert answer("POST", "/swarm/leave") == (503, "This node is not part of a swarm")


@pytest.mark.parametrize("path", ["/swarm/init", "/swarm/join"])
def test_init_and_join_say_what_to_use_instead(path: str) -> None:
    status, message = answer("POST", path)
    assert status == 503 and "does not run swarm mode" in message
    assert "compose" in message and "Kubernetes" in message


def test_docker_words_for_not_a_manager() -> None:
    assert swarm.NOT_A_MANAGER == ('This node is not a swarm manager. Use "docker swarm init" or '
                                   '"docker swarm join" to connect this node to swarm and try again.')


def test_plugins_stay_not_implemented() -> None:
    with pytest.raises(NotImplemented_, match="plugins"):
        router().match("GET", "/plugins")


def test_neighbours_are_not_caught() -> None:
    with pytest.raises(Exception) as caught:
        router().match("GET", "/swarmy")
    assert not isinstance(caught.value, Unavailable)
