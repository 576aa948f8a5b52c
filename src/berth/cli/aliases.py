"""The other spellings of a command, for the "Aliases:" block of `berth COMMAND --help`.

Strategy: one table keyed by the command's own name (Parser.command) listing every
spelling that runs it, in the order docker's CLI prints them (group form first).
"""

from __future__ import annotations

_CONTAINER = ("attach", "commit", "cp", "create", "diff", "exec", "export", "kill", "logs", "pause", "port",
              "rename", "restart", "run", "start", "stats", "stop", "top", "unpause", "update", "wait")
_IMAGE = ("history", "import", "load", "pull", "push", "save", "tag")

SPELLINGS: dict[str, tuple[str, ...]] = {
    **{verb: (f"container {verb}", verb) for verb in _CONTAINER},
    **{verb: (f"image {verb}", verb) for verb in _IMAGE},
    "ps": ("container ls", "container list", "container ps", "ps"),
    "rm": ("container rm", "container remove", "rm"),
    "images": ("image ls", "image list", "images"),
    "rmi": ("image rm", "image remove", "rmi"),
    "build": ("image build", "build", "builder build"),
    "network ls": ("network ls", "network list"),
    "network rm": ("network rm", "network remove"),
    "volume ls": ("volume ls", "volume list"),
    "volume rm": ("volume rm", "volume remove"),
    "context ls": ("context ls", "context list"),
    "context rm": ("context rm", "context remove"),
    "events": ("system events", "events"),
    "info": ("system info", "info"),
}


def aliases(command: str) -> str:
    """The comma-separated spellings of *command* ("" when it has only its own)."""
    return ", ".join(f"berth {s}" for s in SPELLINGS.get(command, ()))
