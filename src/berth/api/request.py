"""An Engine API request as a handler sees it: path parameters, the query, and the body read on demand.

Strategy: the server hands a handler a `Request` as soon as the head is in;
the body stays on the connection until the handler asks for it. `BodyState`
reads it through the connection's h11 state when asked and records how that
went: read to its end, or failed -- "gone" (the client left: no answer is
possible) or "refused" (answer, then close the connection) -- which the server
reads to decide whether the connection can serve another request. Bodies read
whole (`Request.body`, `Request.json`) are capped by `Limits.max_json_body`
before and while they are read; `Request.stream` is uncapped, for bodies that
go to disk. Untrusted JSON, in the body or a query parameter, is checked for
depth before it is parsed (`parse_json`), large bodies off the event loop;
malformed input raises InvalidArgument (400), an oversized body
RequestTooLarge (413), a body that stops coming RequestTimeout (408).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import h11

from berth.api.errors import RequestTimeout, RequestTooLarge
from berth.api.limits import Limits, MiB
from berth.errors import InvalidArgument
from berth.wire.jsondepth import MAX_DEPTH, TooDeep, check_depth

_PARSE_IN_THREAD = 1 * MiB  # JSON larger than this is checked and parsed off the event loop


def size_text(n: int) -> str:
    """1536 -> "1.5 KiB"; for messages."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{value:g} {unit}"
        value /= 1024
    return f"{value:g} GiB"


def parse_json(raw: bytes | str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads of untrusted text, depth checked first; InvalidArgument (400) naming *what* otherwise."""
    too_deep = f"{what} is nested too deeply: more than {max_depth} levels of arrays and objects"
    try:
        check_depth(raw, max_depth)
        return json.loads(raw)
    except (TooDeep, RecursionError):
        raise InvalidArgument(too_deep) from None
    except ValueError as exc:
        raise InvalidArgument(f"malformed JSON in {what}: {exc}") from None


class BodyState:
    """One request's body, read through h11 when a handler asks, and how that went.

    done: the body was read to its end. failed: "gone" (the client left: no
    answer is possible) or "refused" (answer, then close the connection).
    """

    def __init__(self, conn: h11.Connection, reader: asyncio.StreamReader, timeout: float) -> None:
        self.conn, self.reader, self.timeout = conn, reader, timeout
        self.done = False
        self.failed = ""
        self.error: BaseException | None = None

    def _fail(self, how: str, error: BaseException) -> BaseException:
        self.failed, self.error = how, error
        return error

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.failed and self.error is not None:
            raise self.error
        if self.done or self.failed:
            return
        while True:
            try:
                ev = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._fail("refused", InvalidArgument(f"malformed request body: {exc}")) from None
            if ev is h11.NEED_DATA:
                try:
                    async with asyncio.timeout(self.timeout):
                        data = await self.reader.read(65536)
                except TimeoutError:
                    raise self._fail("refused", RequestTimeout(
                        f"no byte of the request body arrived for {self.timeout:g} s; "
                        "the request is abandoned")) from None
                except (OSError, asyncio.IncompleteReadError) as exc:
                    raise self._fail("gone", ConnectionResetError(f"the client went away: {exc}")) from None
                if not data:
                    raise self._fail("gone", ConnectionResetError(
                        "the client closed the connection before the end of the request body"))
                self.conn.receive_data(data)
            elif isinstance(ev, h11.Data):
                yield bytes(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                self.done = True
                return
            else:
                raise self._fail("refused", InvalidArgument("the request ended before its body"))


@dataclass
class Request:
    method: str
    path: str
    api_version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    _body: Callable[[], AsyncIterator[bytes]] | None = None
    limits: Limits = field(default_factory=Limits)
    _state: BodyState | None = None

    def q(self, name: str, default: str = "") -> str:
        """The parameter's first value, as Docker (Go's FormValue) reads a key given more than once."""
        values = self.query.get(name)
        return values[0] if values else default

    def qall(self, name: str) -> list[str]:
        """Every value of a parameter that may be repeated (`t`, `extrahosts`, `changes`), in order."""
        return list(self.query.get(name, []))

    def qbool(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        if value == "":
            return default
        return value.lower() not in ("0", "false", "no")

    def qint(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r} is not an integer") from None

    def qjson(self, name: str) -> Any:
        value = self.q(name)
        if not value:
            return None
        return parse_json(value, f"the {name} parameter", self.limits.max_json_depth)

    def filters(self) -> dict[str, list[str]]:
        """Docker's `filters` query: {"key": ["v"]} or the older {"key": {"v": true}}."""
        raw = self.qjson("filters") or {}
        if not isinstance(raw, dict):
            raise InvalidArgument("invalid filters: expected a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                out[key] = [k for k, on in value.items() if on]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            else:
                raise InvalidArgument(f"invalid filter {key!r}")
        return out

    def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives, uncapped: for bodies streamed to disk (archives, contexts)."""
        assert self._body is not None
        return self._body()

    async def body(self) -> bytes:
        """The whole body, at most limits.max_json_body bytes (RequestTooLarge, 413, beyond)."""
        cap = self.limits.max_json_body
        declared = self.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            self._refuse()
            raise RequestTooLarge(f"the request body ({size_text(int(declared))}) is larger than this "
                                  f"daemon accepts ({size_text(cap)}, berthd --max-json-body); send a smaller one")
        parts: list[bytes] = []
        size = 0
        async for chunk in self.stream():
            size += len(chunk)
            if size > cap:
                self._refuse()
                raise RequestTooLarge(f"the request body is larger than this daemon accepts "
                                      f"({size_text(cap)}, berthd --max-json-body); send a smaller one")
            parts.append(chunk)
        return b"".join(parts)

    def _refuse(self) -> None:
        """Tell the server not to read the rest of this body."""
        if self._state is not None:
            self._state.failed = self._state.failed or "refused"

    async def json(self, required: bool = True) -> Any:
        raw = await self.body()
        if not raw.strip():
            if required:
                raise InvalidArgument("the request body is empty: a JSON object is required")
            return {}
        depth = self.limits.max_json_depth
        if len(raw) > _PARSE_IN_THREAD:
            return await asyncio.to_thread(parse_json, raw, "the request body", depth)
        return parse_json(raw, "the request body", depth)

