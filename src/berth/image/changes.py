"""Dockerfile instructions applied to an image config (`docker import --change`, `docker commit --change`).

Strategy: pure; one instruction per string, as the API carries them.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from berth.errors import InvalidArgument


def _command(change: str, rest: str) -> list[str]:
    """CMD/ENTRYPOINT in exec form (a JSON array) or shell form."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError as exc:
            raise InvalidArgument(f"--change {change!r}: not a JSON array") from exc
        return [str(v) for v in value]
    return ["/bin/sh", "-c", rest]


def parse_changes(changes: list[str], config: dict[str, Any]) -> None:
    """Apply `docker import --change` Dockerfile instructions to an image config."""
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "CMD":
            config["Cmd"] = _command(change, rest)
        elif word == "ENTRYPOINT":
            config["Entrypoint"] = _command(change, rest)
        elif word == "ENV":
            pairs = shlex.split(rest)
            if len(pairs) == 2 and "=" not in pairs[0]:
                pairs = [f"{pairs[0]}={pairs[1]}"]
            env = [e for e in config.get("Env") or []]
            for pair in pairs:
                key = pair.split("=", 1)[0]
                env = [e for e in env if e.split("=", 1)[0] != key] + [pair]
            config["Env"] = env
        elif word == "WORKDIR":
            config["WorkingDir"] = rest
        elif word == "USER":
            config["User"] = rest
        elif word == "LABEL":
            labels = config.get("Labels") or {}
            for pair in shlex.split(rest):
                k, _, v = pair.partition("=")
                labels[k] = v
            config["Labels"] = labels
        elif word == "EXPOSE":
            config["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in rest.split()}
        elif word == "STOPSIGNAL":
            config["StopSignal"] = rest
        elif word == "VOLUME":
            config["Volumes"] = {v: {} for v in (json.loads(rest) if rest.startswith("[") else rest.split())}
        else:
            raise InvalidArgument(f"--change {change!r}: {word} cannot be applied here (use CMD, ENTRYPOINT, ENV, "
                                  "WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL or VOLUME)")
