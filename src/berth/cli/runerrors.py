"""How `run` and `create` report failures: docker 28's words and exit codes.

Strategy: one decorator per verb turns what a command raises into a StatusError
worded as docker's CLI words it. `run`: every refusal before the container
starts exits 125 as `berth: MESSAGE` plus a pointer to `berth run --help`; a
start failure keeps its code (126/127/125) and reads `berth: MESSAGE`. `create`:
a flag value berth cannot use exits 125 like run's, while a daemon's refusal is
printed as is and exits 1 (docker's create returns the daemon's error unchanged).
Usage errors (unknown flags) pass through to main, which words them for every verb.
"""

from __future__ import annotations

from collections.abc import Callable

from berth.cli.common import Ctx, StatusError, describe
from berth.cli.parser import UsageError
from berth.client.errors import APIError, DaemonUnreachable
from berth.errors import BerthError

Command = Callable[[Ctx, list[str]], int]
_DAEMON = "Error response from daemon"


def reword(verb: str, code: int, message: str, started: bool = False) -> StatusError:
    """The StatusError docker's CLI would end `berth VERB` with, for *message* failing with *code*."""
    text = message.removeprefix("berth: ")
    from_daemon = text.startswith(_DAEMON)
    if verb == "create" and from_daemon:
        return StatusError(1, text)
    if verb == "run" or (code == 125 and not started):
        return StatusError(code, f"berth: {text}\n\nRun 'berth {verb} --help' for more information")
    if from_daemon or message.startswith("berth: "):
        return StatusError(code, f"berth: {text}")
    return StatusError(code, text)


def as_run_failure(verb: str) -> Callable[[Command], Command]:
    def decorate(fn: Command) -> Command:
        def wrapper(ctx: Ctx, argv: list[str]) -> int:
            try:
                return int(fn(ctx, argv))
            except UsageError:
                raise
            except (APIError, DaemonUnreachable) as exc:
                raise reword(verb, 125, describe(exc)) from exc
            except StartFailed as exc:
                raise reword(verb, exc.code, exc.message, started=True) from exc
            except StatusError as exc:
                if not exc.message:
                    raise
                raise reword(verb, exc.code, exc.message) from exc
            except BerthError as exc:
                raise reword(verb, 125, str(exc)) from exc

        wrapper.__name__ = getattr(fn, "__name__", verb)
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return decorate


class StartFailed(StatusError):
    """The container was created but did not start (the code says why: 126, 127 or 125)."""
