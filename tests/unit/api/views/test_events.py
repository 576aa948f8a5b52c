"""api.views.events: Docker's events message, with the pre-1.22 fields for containers and images only."""

from __future__ import annotations

import json

import pytest

from berth.api.views import events as views
from berth.services.events import Event

NS = 1_700_000_000_123_456_789

CASES = [
    (Event("container", "start", "c1", {"image": "busybox", "name": "a"}, NS),
     {"Type": "container", "Action": "start", "Actor": {"ID": "c1", "Attributes": {"image": "busybox", "name": "a"}},
      "scope": "local", "time": 1_700_000_000, "timeNano": NS, "status": "start", "id": "c1", "from": "busybox"}),
    (Event("container", "exec_die", "c1", {"name": "a", "execID": "e"}, NS),  # no image attribute: no `from`
     {"Type": "container", "Action": "exec_die", "Actor": {"ID": "c1", "Attributes": {"name": "a", "execID": "e"}},
      "scope": "local", "time": 1_700_000_000, "timeNano": NS, "status": "exec_die", "id": "c1"}),
    (Event("image", "tag", "sha256:1", {"name": "x:1"}, NS),
     {"Type": "image", "Action": "tag", "Actor": {"ID": "sha256:1", "Attributes": {"name": "x:1"}},
      "scope": "local", "time": 1_700_000_000, "timeNano": NS, "status": "tag", "id": "sha256:1"}),
    (Event("network", "create", "n1", {"name": "n", "type": "bridge"}, NS),
     {"Type": "network", "Action": "create", "Actor": {"ID": "n1", "Attributes": {"name": "n", "type": "bridge"}},
      "scope": "local", "time": 1_700_000_000, "timeNano": NS}),
    (Event("volume", "prune", "", {"reclaimed": "0"}, NS),
     {"Type": "volume", "Action": "prune", "Actor": {"ID": "", "Attributes": {"reclaimed": "0"}},
      "scope": "local", "time": 1_700_000_000, "timeNano": NS}),
]


@pytest.mark.parametrize("event, want", CASES)
def test_message_as_docker(event: Event, want: dict) -> None:
    got = views.message(event)
    assert got == want
    assert list(got) == list(want)  # moby's field order
    assert json.loads(json.dumps(got)) == want
