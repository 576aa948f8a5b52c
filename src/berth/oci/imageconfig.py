"""An image config's runtime defaults (its `config` object) and its history entries, typed.

Strategy: the fields berth reads or edits (Env, Cmd, Entrypoint, User, WorkingDir,
Labels, ExposedPorts, Volumes, StopSignal, Healthcheck, OnBuild, Shell) are typed
values; every other key of the object stays in `extra`, as it came. `from_doc`
remembers which keys were there and in what order, so `to_doc` gives back the same
JSON (nulls included) for what was not changed: an image derived from another (a
build step, a commit) repeats its base's config as the base wrote it. A field set
that was not there before is added after the others, as a JSON object edit would.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# JSON key -> field name, in the order Docker writes them
_KEYS = (("User", "user"), ("ExposedPorts", "exposed_ports"), ("Env", "env"), ("Cmd", "cmd"),
         ("Healthcheck", "healthcheck"), ("Volumes", "volumes"), ("WorkingDir", "working_dir"),
         ("Entrypoint", "entrypoint"), ("OnBuild", "on_build"), ("Labels", "labels"), ("StopSignal", "stop_signal"),
         ("Shell", "shell"))
_FIELD = dict(_KEYS)
_SETS = ("ExposedPorts", "Volumes")  # JSON objects whose keys alone mean something (values are {})
_STRINGS = ("User", "WorkingDir", "StopSignal")


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a string where a list belongs: what Docker's parser also accepts
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else None


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """What a container of the image runs with unless told otherwise (the image config's `config`).

    A list field is None when the image has none (null or absent), an empty tuple when it
    has an empty list; a string field is "" when unset.
    """

    user: str = ""
    exposed_ports: tuple[str, ...] | None = None  # "80/tcp", ...
    env: tuple[str, ...] | None = None  # "KEY=value", ...
    cmd: tuple[str, ...] | None = None
    healthcheck: dict[str, Any] | None = None  # Docker's HealthConfig object, as written
    volumes: tuple[str, ...] | None = None  # container paths
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    on_build: tuple[str, ...] | None = None  # build triggers (Dockerfile lines)
    labels: dict[str, str] | None = None
    stop_signal: str = ""
    shell: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys berth does not read, kept as they were
    keys: tuple[str, ...] = ()  # the JSON keys as they came, in order (what `to_doc` writes back)

    @classmethod
    def from_doc(cls, doc: Any) -> RuntimeConfig:
        """The `config` object of an image config (None or not an object: an empty one)."""
        if not isinstance(doc, dict):
            return cls()
        values: dict[str, Any] = {}
        for key, name in _KEYS:
            if key not in doc:
                continue
            value = doc[key]
            if key in _STRINGS:
                values[name] = "" if value is None else str(value)
            elif key in _SETS:
                values[name] = tuple(str(k) for k in value) if isinstance(value, dict) else None
            elif key == "Labels":
                values[name] = {str(k): v if isinstance(v, str) else str(v)
                                for k, v in value.items()} if isinstance(value, dict) else None
            elif key == "Healthcheck":
                values[name] = copy.deepcopy(value) if isinstance(value, dict) else None
            else:
                values[name] = _strings(value)
        extra = {k: copy.deepcopy(v) for k, v in doc.items() if k not in _FIELD}
        return cls(**values, extra=extra, keys=tuple(str(k) for k in doc))

    def to_doc(self) -> dict[str, Any]:
        """The `config` object as JSON has it (fresh values: editing it changes nothing here)."""
        known = {key: self._json(key) for key, _ in _KEYS}
        out: dict[str, Any] = {}
        for key in self.keys:
            if key in known:
                out[key] = known[key]
            elif key in self.extra:
                out[key] = copy.deepcopy(self.extra[key])
        for key, value in known.items():  # set since: added after the others
            if key not in out and value not in (None, ""):
                out[key] = value
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out

    def _json(self, key: str) -> Any:
        value = getattr(self, _FIELD[key])
        if value is None or isinstance(value, str):
            return value
        if key in _SETS:
            return {k: {} for k in value}
        if key == "Labels":
            return dict(value)
        if key == "Healthcheck":
            return copy.deepcopy(value)
        return list(value)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of an image config's history: how a layer (or a config-only step) was made."""

    created: str = ""
    created_by: str = ""
    comment: str = ""
    author: str = ""
    empty_layer: bool = False  # a step that changed only the config

    @classmethod
    def from_doc(cls, doc: Any) -> HistoryEntry:
        if not isinstance(doc, dict):
            return cls()
        return cls(str(doc.get("created") or ""), str(doc.get("created_by") or ""), str(doc.get("comment") or ""),
                   str(doc.get("author") or ""), bool(doc.get("empty_layer")))

    def to_doc(self) -> dict[str, Any]:
        """The entry as JSON has it; the fields left empty are not written (Go's omitempty, as Docker)."""
        out: dict[str, Any] = {"created": self.created}
        for key, value in (("created_by", self.created_by), ("comment", self.comment), ("author", self.author),
                           ("empty_layer", self.empty_layer)):
            if value:
                out[key] = value
        return out
