"""The volume create request, parsed at the API edge (berth.api.handlers.volumes.create_request)."""

from __future__ import annotations

import pytest

from berth.api.handlers.volumes import create_request
from berth.errors import InvalidArgument
from berth.services.volumes import VolumeCreateRequest


@pytest.mark.parametrize("body,want", [
    ({}, VolumeCreateRequest()),
    ({"Name": None, "Driver": None, "DriverOpts": None, "Labels": None}, VolumeCreateRequest()),
    ({"Name": "data", "Driver": "local", "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}, "Labels": {"a": "1"}},
     VolumeCreateRequest("data", "local", {"type": "tmpfs", "device": "tmpfs"}, {"a": "1"})),
])
def test_create_request(body: dict, want: VolumeCreateRequest) -> None:
    assert create_request(body) == want


@pytest.mark.parametrize("body,words", [
    ([], "must be a JSON object"),
    ({"Name": 3}, "Name and Driver must be strings"),
    ({"Driver": ["local"]}, "Name and Driver must be strings"),
    ({"ClusterVolumeSpec": {"Group": "g"}}, "cluster volumes need swarm mode"),
    ({"DriverOpts": {"o": 1}}, "DriverOpts: expected an object of strings"),
    ({"Labels": ["a"]}, "Labels: expected an object of strings"),
])
def test_create_request_refused(body: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        create_request(body)
