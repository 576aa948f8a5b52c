"""What one client may make the Engine API server hold or wait for: the `Limits` of a `Server`.

Strategy: a client must not be able to make the daemon hold memory or a
connection without bound, so each wait and each buffer has a limit, one
`Limits` value per Server (berthd's flags set it), read where it applies:
  idle_timeout   a connection with no request under way (new, or kept alive
                 between requests) is closed after this long
  head_timeout   a request's head must be complete this long after its first byte
  body_timeout   while a handler reads the body, a gap this long with no byte
                 ends the request (408) and the connection
  max_json_body  bodies read whole (Request.body/json) are capped: 413, checked
                 on Content-Length before reading; streamed bodies (load, build
                 context, archive PUT, import) go through Request.stream, uncapped
  max_json_depth JSON is checked for nesting before it is parsed (400)
  drain_limit    unread body bytes skipped after a handler, to keep the connection
  linger         how long a connection closed before the request's end is kept
                 draining, so that the answer arrives
Responses that wait (hijacked streams, logs -f, events, wait) have no timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.wire.jsondepth import MAX_DEPTH

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one client may make the server hold or wait for (see the module's docstring)."""

    max_json_body: int = 16 * MiB
    max_json_depth: int = MAX_DEPTH
    idle_timeout: float = 300.0
    head_timeout: float = 60.0
    body_timeout: float = 120.0
    linger: float = 2.0
    drain_limit: int = 1 * MiB
