"""Dockerfile instructions that change only an image's config, applied to a config: one code path for
`docker build`, `docker commit --change` and `docker import --change`.

Strategy: pure. `apply(cfg, ins, ...)` edits the config's `config` body (Env,
Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal,
Healthcheck, OnBuild, Shell) as the instruction says, with variables expanded
from *env* the way the builder expands them. Instructions that make files
(RUN, COPY, ADD) or stages (FROM, ARG) are not config edits and are refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from berth.builder import dockerfile as dfp
from berth.errors import InvalidArgument

DEFAULT_SHELL = ("/bin/sh", "-c")
CONFIG_INSTRUCTIONS = ("ENV", "LABEL", "MAINTAINER", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "EXPOSE", "VOLUME",
                       "STOPSIGNAL", "SHELL", "HEALTHCHECK", "ONBUILD")


def apply(cfg: dict[str, Any], ins: dfp.Instruction, *, env: Mapping[str, str], escape: str = "\\",
          shell: list[str] | None = None) -> str:
    """Apply *ins* to the config body *cfg*; return the author for MAINTAINER ("" otherwise).

    Raises:
        InvalidArgument: not a config instruction, or malformed.
    """
    cmd = ins.cmd
    raw = ins.args[0] if ins.args and not ins.json else ""
    sh = list(shell or cfg.get("Shell") or DEFAULT_SHELL)

    def command(key: str) -> None:
        cfg[key] = list(ins.args) if ins.json else [*sh, raw]
        if key == "Entrypoint" and not ins.json:
            cfg["Cmd"] = None  # a shell-form ENTRYPOINT ignores CMD, as in Docker

    if cmd == "ENV":
        current = list(cfg.get("Env") or [])
        for k, v in dfp.parse_kv(raw, escape, env):
            current = [e for e in current if e.partition("=")[0] != k] + [f"{k}={v}"]
        cfg["Env"] = current
    elif cmd == "LABEL":
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **dict(dfp.parse_kv(raw, escape, env, what="LABEL"))}
    elif cmd == "MAINTAINER":
        return dfp.expand(raw, env, escape)
    elif cmd == "WORKDIR":
        cfg["WorkingDir"] = os.path.normpath(os.path.join(cfg.get("WorkingDir") or "/", dfp.expand(raw, env, escape)))
    elif cmd == "USER":
        cfg["User"] = dfp.expand(raw, env, escape)
    elif cmd == "CMD":
        command("Cmd")
    elif cmd == "ENTRYPOINT":
        command("Entrypoint")
    elif cmd == "EXPOSE":
        ports: dict[str, Any] = {p if "/" in p else f"{p}/tcp": {} for p in dfp.split_words(raw, escape, env)}
        cfg["ExposedPorts"] = {**(cfg.get("ExposedPorts") or {}), **ports}
    elif cmd == "VOLUME":
        paths = list(ins.args) if ins.json else dfp.split_words(raw, escape, env)
        cfg["Volumes"] = {**(cfg.get("Volumes") or {}), **{p: {} for p in paths}}
    elif cmd == "STOPSIGNAL":
        cfg["StopSignal"] = dfp.expand(raw, env, escape)
    elif cmd == "SHELL":
        if not ins.json:
            raise InvalidArgument(f"line {ins.line}: SHELL requires the arguments to be in JSON form")
        cfg["Shell"] = list(ins.args)
    elif cmd == "HEALTHCHECK":
        cfg["Healthcheck"] = dfp.healthcheck(ins)
    elif cmd == "ONBUILD":
        if ins.sub in ("ONBUILD", "FROM", "MAINTAINER"):
            raise InvalidArgument(f"line {ins.line}: {ins.sub} isn't allowed as an ONBUILD trigger")
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), ins.onbuild_trigger()]
    else:
        raise InvalidArgument(f"{cmd} cannot change an image's config (use one of {', '.join(CONFIG_INSTRUCTIONS)})")
    return ""


def apply_changes(changes: list[str], cfg: dict[str, Any]) -> str:
    """`--change` strings (one instruction each) applied to *cfg*; return the author if one was set."""
    author = ""
    env = {e.partition("=")[0]: e.partition("=")[2] for e in cfg.get("Env") or []}
    for change in changes:
        if not change.strip():
            continue
        try:
            instructions, escape, _ = dfp.parse_instructions(change)
        except InvalidArgument as exc:
            raise InvalidArgument(f"--change {change!r}: {exc}") from None
        for ins in instructions:
            if ins.cmd not in CONFIG_INSTRUCTIONS:
                raise InvalidArgument(f"--change {change!r}: {ins.cmd} cannot be applied here (use "
                                      f"{', '.join(CONFIG_INSTRUCTIONS)})")
            author = apply(cfg, ins, env=env, escape=escape) or author
            env = {e.partition("=")[0]: e.partition("=")[2] for e in cfg.get("Env") or []}
    return author
