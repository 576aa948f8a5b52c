"""`berth logs`: a container's output as it was logged, through GET /containers/{id}/logs.

Strategy: inspect first (as docker's CLI does, so a missing container is named
before a bad --since), turn --since/--until into the API's timestamps with the
CLI's own words for a value it cannot read, then write the stream out, split
into stdout and stderr unless the container has a terminal.
"""

from __future__ import annotations

import time

from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser
from berth.cli.streams import OutputSink
from berth.cli.units import parse_timestamp
from berth.errors import InvalidArgument


def cmd_logs(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("logs", "[OPTIONS] CONTAINER", "Fetch the logs of a container",
               min_args=1, max_args=1)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since", default=None)
    p.add_argument("--until", default=None)
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    client = ctx.client
    info = client.get(f"/containers/{ns.args[0]}/json")
    now = time.time()
    since = until = None
    for which, text in (("since", ns.since), ("until", ns.until)):
        try:
            value = parse_timestamp(text, now) if text else None
        except InvalidArgument as exc:  # docker's client names the value it could not read
            raise StatusError(1, f'invalid value for "{which}": {exc}') from None
        since, until = (value, until) if which == "since" else (since, value)
    query = {
        "stdout": True, "stderr": True, "follow": ns.follow, "tail": ns.tail,
        "timestamps": ns.timestamps, "details": ns.details, "since": since, "until": until,
    }
    multiplexed = not (info.get("Config") or {}).get("Tty")
    ctx.flush()
    with client.stream("GET", f"/containers/{info['Id']}/logs", query) as sr:
        if "multiplexed" in sr.headers.get("content-type", ""):
            multiplexed = True
        sink = OutputSink(multiplexed)
        for chunk in sr.chunks():
            sink.feed(chunk)
    return 0


COMMANDS = {"logs": cmd_logs}
