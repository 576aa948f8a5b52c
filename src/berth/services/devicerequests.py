"""HostConfig.DeviceRequests (`--gpus`): berth has no device drivers, so a start that asks for one fails.

Docker accepts such a container at create and refuses it at start when no
installed driver offers the capabilities asked for; berth does the same, with
Docker's words, so that scripts that check for GPUs behave alike.
"""

from __future__ import annotations

from typing import Any

from berth.errors import InvalidArgument
from berth.wire.containerspec import HostConfig


def _go_list(value: Any) -> str:
    """A value as Go's %v prints a [][]string: [[a b] [c]]."""
    if isinstance(value, list):
        return "[" + " ".join(_go_list(v) for v in value) + "]"
    return str(value)


def refuse_device_requests(host: HostConfig) -> None:
    """Raise InvalidArgument for the first device request of a container's HostConfig."""
    for request in host.extra.get("DeviceRequests") or []:
        if not isinstance(request, dict):
            continue
        driver = request.get("Driver") or ""
        raise InvalidArgument(f'could not select device driver "{driver}" with capabilities: '
                              f'{_go_list(request.get("Capabilities") or [])}')
