"""berth's Engine API client: what the CLI uses to talk to a daemon over a Unix socket or TCP.

Strategy: one fresh connection per request, written and parsed by hand (HTTP/1.1), so that plain
calls, streams and hijacked connections share one code path. The modules, from the bottom up:

    errors     APIError by category (NotFoundError is a NotFound, ...), DaemonUnreachable
    hosts      where the daemon is: --host, BERTH_HOST, DOCKER_HOST; unix:// or tcp://
    responses  reading the daemon's answers: the head, then the body as it is framed
    tls        the docker CLI's TLS settings, and a TLS stream with a real half-close
    engine     `Client`: version negotiation, writing requests, request/stream/hijack
"""
