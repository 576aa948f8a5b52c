"""The build's query: the RUN steps' resource limits, and squash refused (no experimental mode)."""

from __future__ import annotations

import pytest

from berth.api.handlers.build import options, step_limits
from berth.api.request import Request
from berth.errors import InvalidArgument


def request(**query: str) -> Request:
    return Request("POST", "/build", "1.47", {k: [v] for k, v in query.items()}, {}, {})


def test_limits_become_the_steps_host_config() -> None:
    host = step_limits(request(memory="67108864", memswap="-1", cpushares="512", cpuquota="50000",
                               cpuperiod="100000", shmsize="1048576", cpusetcpus="0", cpusetmems="0",
                               cgroupparent="builds", ulimits='[{"Name":"nofile","Soft":50,"Hard":60}]'))
    assert (host.memory, host.memory_swap, host.cpu_shares, host.cpu_quota, host.cpu_period) == \
        (67108864, -1, 512, 50000, 100000)
    assert host.extra == {"ShmSize": 1048576, "CpusetCpus": "0", "CpusetMems": "0", "CgroupParent": "builds",
                          "Ulimits": [{"Name": "nofile", "Soft": 50, "Hard": 60}]}
    assert step_limits(request()).to_doc() == step_limits(request(memory="0")).to_doc()


@pytest.mark.parametrize("query, words", [
    ({"memory": "lots"}, "memory"), ({"cpushares": "-5"}, "cpushares must not be negative"),
    ({"ulimits": '[{"Name": 5}]'}, "Ulimits[0].Name"), ({"squash": "1"}, "squash is only supported"),
])
def test_bad_limits_are_refused(query: dict[str, str], words: str) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("[", r"\[").replace("]", r"\]")):
        options(request(**query))
