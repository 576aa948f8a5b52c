"""--gpus at start: berth has no device driver, and says so in Docker's words."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.services.devicerequests import refuse_device_requests as _refuse
from berth.wire.containerspec import HostConfig


def refuse_device_requests(doc: dict) -> None:
    _refuse(HostConfig.from_doc(doc))


def test_no_requests_start() -> None:
    refuse_device_requests({})
    refuse_device_requests({"DeviceRequests": None})
    refuse_device_requests({"DeviceRequests": []})


def test_a_request_is_refused_with_its_driver_and_capabilities() -> None:
    with pytest.raises(InvalidArgument) as info:
        refuse_device_requests({"DeviceRequests": [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]})
    assert str(info.value) == 'could not select device driver "" with capabilities: [[gpu]]'
    with pytest.raises(InvalidArgument, match=r'"nvidia" with capabilities: \[\[compute gpu\] \[utility\]\]'):
        refuse_device_requests({"DeviceRequests": [{"Driver": "nvidia",
                                                    "Capabilities": [["compute", "gpu"], ["utility"]]}]})
