"""The containers table: each container's record kept as one JSON row, read back at start.

Strategy: the row is Docker's inspect-like JSON under the field names older daemons wrote
(`Config`, `HostConfig`, `State`, `Binds`, `EndpointsConfig`, ...), so an existing data root loads
and an older berth can still read a newer row. The conversion is private to this module: the rest
of the engine sees `ContainerRecord`s only. Fields this version does not know are kept in the
record's `extra` and written back unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from berth.metadata.db import Database
from berth.network.endpoint import Endpoint, EndpointSettings
from berth.network.portplan import PortBinding
from berth.services.healthrules import HealthState
from berth.services.records import ContainerRecord, ContainerState
from berth.wire.containerspec import ContainerConfig, HostConfig
from berth.wire.mountspec import Mount

# ContainerState's fields and Docker's State keys (the row's and inspect's)
STATE_KEYS = (("status", "Status"), ("running", "Running"), ("paused", "Paused"), ("restarting", "Restarting"),
              ("oom_killed", "OOMKilled"), ("dead", "Dead"), ("pid", "Pid"), ("exit_code", "ExitCode"),
              ("error", "Error"), ("started_at", "StartedAt"), ("finished_at", "FinishedAt"))

_KNOWN = frozenset({"Id", "Name", "Created", "Path", "Args", "Image", "Config", "HostConfig", "State", "Platform",
                    "Binds", "EndpointsConfig", "EndpointsListed", "Endpoints", "Ports", "MonitorPid",
                    "RestartCount", "ManuallyStopped", "PendingSize", "ExecIDs", "PauseIntent", "BuildStep"})


class ContainerRows:
    """Reads and writes container records (SQLite through metadata.db; a write is one statement)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> list[ContainerRecord]:
        return [_record(doc) for _, doc in self._db.containers()]

    def insert(self, record: ContainerRecord) -> None:
        """Raises AlreadyExists when the name is taken (the table's unique name)."""
        self._db.insert_container(record.id, record.name, _row(record))

    def update(self, record: ContainerRecord) -> None:
        self._db.update_container(record.id, record.name, _row(record))

    def delete(self, cid: str) -> None:
        self._db.delete_container(cid)


def encode(record: ContainerRecord) -> str:
    """The row's text (for tests and tools that compare what is stored)."""
    return json.dumps(_row(record))


def decode(text: str) -> ContainerRecord:
    """A record from a row's text (as a stored row, or a test's Docker-shaped document, reads)."""
    return _record(json.loads(text))


def _state_row(state: ContainerState) -> dict[str, Any]:
    out: dict[str, Any] = {key: getattr(state, attr) for attr, key in STATE_KEYS}
    if state.health is not None:
        out["Health"] = state.health.to_doc()
    return out


def _state(doc: dict[str, Any]) -> ContainerState:
    state = ContainerState(health=HealthState.from_doc(doc.get("Health")))
    for attr, key in STATE_KEYS:
        if key in doc and doc[key] is not None:
            setattr(state, attr, type(getattr(state, attr))(doc[key]))
    return state


def _row(r: ContainerRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        **r.extra, "Id": r.id, "Name": "/" + r.name, "Created": r.created, "Path": r.path,
        "Args": r.args, "Config": r.config.to_doc(), "HostConfig": r.host.to_doc(), "Image": r.image,
        "Binds": [m.to_doc() for m in r.binds],
        "EndpointsConfig": {k: v.to_doc() for k, v in r.endpoints_config.items()},
        "EndpointsListed": r.endpoints_listed, "State": _state_row(r.state), "MonitorPid": r.monitor_pid,
        "RestartCount": r.restart_count, "Platform": r.platform, "ManuallyStopped": r.manually_stopped,
        "Endpoints": {k: v.to_doc() for k, v in r.endpoints.items()}, "Ports": [b.to_doc() for b in r.ports],
    }
    if r.pending_size is not None:
        out["PendingSize"] = r.pending_size
    if r.pause_intent:
        out["PauseIntent"] = r.pause_intent
    if r.build_step:
        out["BuildStep"] = True
    return out


def _record(doc: dict[str, Any]) -> ContainerRecord:
    return ContainerRecord(
        id=str(doc["Id"]), name=str(doc.get("Name") or "").lstrip("/"), created=str(doc.get("Created") or ""),
        path=str(doc.get("Path") or ""), args=list(doc.get("Args") or []), image=str(doc.get("Image") or ""),
        config=ContainerConfig.from_doc(doc.get("Config") or {}), host=HostConfig.from_doc(doc.get("HostConfig")),
        state=_state(doc.get("State") or {}), platform=str(doc.get("Platform") or "linux"),
        binds=[Mount.from_doc(m) for m in doc.get("Binds") or []],
        endpoints_config={k: EndpointSettings.from_doc(v) for k, v in (doc.get("EndpointsConfig") or {}).items()},
        endpoints_listed=bool(doc.get("EndpointsListed")),
        endpoints={k: Endpoint.from_doc(v) for k, v in (doc.get("Endpoints") or {}).items()},
        ports=[PortBinding.from_doc(b) for b in doc.get("Ports") or []],
        monitor_pid=int(doc.get("MonitorPid") or 0), restart_count=int(doc.get("RestartCount") or 0),
        manually_stopped=bool(doc.get("ManuallyStopped")), pending_size=doc.get("PendingSize"),
        pause_intent=str(doc.get("PauseIntent") or ""), build_step=bool(doc.get("BuildStep")),
        extra={k: v for k, v in doc.items() if k not in _KNOWN})
