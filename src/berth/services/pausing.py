"""Pausing a container so that a daemon killed half way leaves no lie: the intent is recorded first.

Strategy: a pause or unpause writes what it is about to do into the record
(`pause_intent`: "pause", "unpause", or "commit" for a commit's hold) before
the runtime is asked, and clears it once the record says what the runtime
did. At start, `reconcile` compares every container with an intent, or
recorded paused, with what its runtime says: the runtime is believed for a
user's pause and unpause (the user asked; only the record lagged), and a
container a commit held paused is thawed (no operation holds it any more).
A container with no intent and not recorded paused had nothing under way and
is not asked, so a start with many containers costs no runtime calls.
"""

from __future__ import annotations

import logging

from berth.errors import BerthError
from berth.host import crashpoint
from berth.services.containers import Containers
from berth.services.records import Container

log = logging.getLogger(__name__)


async def freeze(containers: Containers, c: Container, intent: str) -> None:
    """Pause *c*'s processes for *intent* ("pause", or "commit": held until `thaw`)."""
    c.record.pause_intent = intent
    containers.save(c)
    try:
        await containers.task_of(c).pause()
    except BaseException:
        c.record.pause_intent = ""
        containers.save(c)
        raise
    crashpoint.reached("pause:after-runtime-pause")
    c.state.paused = True
    c.state.status = "paused"
    c.record.pause_intent = intent if intent == "commit" else ""  # a commit's hold lasts until it thaws
    containers.save(c)


async def thaw(containers: Containers, c: Container) -> None:
    """Resume *c*'s processes (a user's unpause, or the end of a commit's hold)."""
    c.record.pause_intent = c.record.pause_intent or "unpause"
    containers.save(c)
    await containers.task_of(c).resume()
    c.state.paused = False
    c.state.status = "running"
    c.record.pause_intent = ""
    containers.save(c)


async def reconcile(containers: Containers, c: Container) -> str:
    """After a restart: make a running container's paused state true in record and runtime alike.

    Returns:
        What was found and done, for the recovery report ("" when record and runtime agreed).
    """
    intent = c.record.pause_intent
    if not c.running or (not intent and not c.state.paused):
        return ""
    task = containers.task_of(c)
    actual = await task.status()
    if actual not in ("running", "paused"):
        return ""  # gone or stopped: the exit is recorded by the watcher
    found = ""
    if intent == "commit" and actual == "paused":
        try:
            await task.resume()
            actual = "running"
            found = "held paused by a commit the daemon did not live to finish: thawed"
        except BerthError as exc:
            found = f"held paused by an unfinished commit; thawing it failed: {exc}"
    paused = actual == "paused"
    if not found and paused != c.state.paused:
        found = (f"recorded {'paused' if c.state.paused else 'running'} but the runtime says {actual}: "
                 "record corrected")
    c.state.paused = paused
    c.state.status = "paused" if paused else "running"
    c.record.pause_intent = ""
    containers.save(c)
    return found
