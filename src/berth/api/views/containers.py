"""Containers as the API shows them: inspect, list entries, filters, status wording.

Strategy: pure functions of the container records (plus image sizes), kept
apart from the lifecycle in services.containers so each stays small.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Any

from berth import timefmt
from berth.api.views import networks as network_views
from berth.api.views import volumes as volume_views
from berth.errors import InvalidArgument, NotFound
from berth.services import (
    containerconfig,
    containerfs,
    endpoints,
    healthrules,
    patterns,
)
from berth.services.containerrows import STATE_KEYS
from berth.services.containers import Containers
from berth.services.images import Images
from berth.services.lifecycle import WaitResult
from berth.services.records import Container, ContainerRecord, ContainerState

CONTAINER_FILTERS = ("status", "name", "id", "label", "ancestor", "exited", "isolation", "before", "since",
                     "network", "volume", "health", "publish", "expose", "is-task")

def wait_result(result: WaitResult) -> dict[str, Any]:
    """The body of POST /containers/{id}/wait."""
    return {"StatusCode": result.status_code, "Error": {"Message": result.error} if result.error else None}


def state_doc(state: ContainerState) -> dict[str, Any]:
    """Docker's State object (Status in the API's wording: a running container is "running" or "paused")."""
    out: dict[str, Any] = {key: getattr(state, attr) for attr, key in STATE_KEYS}
    out["Status"] = state.word
    if state.health is not None:
        out["Health"] = state.health.to_doc()
    return out


def inspect(c: Container, api_version: str = "") -> dict[str, Any]:
    r = c.record
    state = state_doc(r.state)
    return {
        "Id": c.id, "Created": r.created, "Path": r.path, "Args": r.args, "State": state,
        "Image": r.image, "ResolvConfPath": os.path.join(c.dir, "resolv.conf"),
        "HostnamePath": os.path.join(c.dir, "hostname"), "HostsPath": os.path.join(c.dir, "hosts"),
        "LogPath": os.path.join(c.dir, "container.log"), "Name": "/" + r.name,
        "RestartCount": r.restart_count, "Driver": "overlay2", "Platform": r.platform,
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": r.host.to_doc(),
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": os.path.join(c.dir, "upper"),
                                                     "WorkDir": os.path.join(c.dir, "work"),
                                                     "MergedDir": os.path.join(c.dir, "rootfs")}},
        "Mounts": [volume_views.mount_point(m) for m in r.binds],
        "Config": r.config.to_doc(),
        "NetworkSettings": _versioned(_network_settings(r), r, api_version),
    }


def _versioned(settings: dict[str, Any], r: ContainerRecord, api_version: str) -> dict[str, Any]:
    if api_version:  # what older clients expect (the short id among Aliases below 1.45)
        settings["Networks"] = network_views.for_version(settings["Networks"], r, api_version)
    return settings

def sizes(images: Images, c: Container) -> dict[str, int]:
    """SizeRw (the container's own writes) and SizeRootFs (with its image)."""
    usage = containerfs.sizes(images, c)
    return {"SizeRw": usage.rw, "SizeRootFs": usage.root_fs}

def summary(c: Container) -> dict[str, Any]:
    r = c.record
    args = [r.path, *r.args]
    image = r.config.image or r.image
    return {
        "Id": c.id, "Names": ["/" + r.name], "Image": image, "ImageID": r.image,
        "Command": shlex.join(args), "Created": timefmt.parse_ns(r.created) // 1_000_000_000,
        "Ports": port_list(r), "Labels": r.config.labels, "State": r.state.word,
        "Status": status_text(r.state), "HostConfig": {"NetworkMode": r.host.network_mode},
        "NetworkSettings": {"Networks": _network_settings(r)["Networks"]},
        "Mounts": [volume_views.mount_point(m) for m in r.binds],
    }

def listing(cs: Containers, images: Images, all_: bool, limit: int, filters: dict[str, list[str]],
            size: bool = False) -> list[dict[str, Any]]:
    for key in filters:
        if key not in CONTAINER_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    healthrules.check_filter(filters.get("health", []))
    items = sorted(cs.all(), key=lambda c: c.record.created, reverse=True)
    all_ = all_ or limit > 0  # as Docker: the N newest, whatever their state
    out = []
    for c in items:
        if not all_ and not c.running and not filters.get("status") and not filters.get("exited"):
            continue
        if not _matches(images, c, filters):
            continue
        out.append(summary(c) | (sizes(images, c) if size else {}))
        if limit > 0 and len(out) >= limit:
            break
    return out

def _matches(images: Images, c: Container, filters: dict[str, list[str]]) -> bool:
    r = c.record
    for key, values in filters.items():
        if key == "status":
            bad = [v for v in values if v not in ("created", "restarting", "running", "removing",
                                                   "paused", "exited", "dead")]
            if bad:
                raise InvalidArgument(f"invalid filter 'status={bad[0]}'")
            if r.state.word not in values:
                return False
        elif key == "name":  # as Docker: the name with and without its slash, exactly or as a regex
            if not any(name_matches(v, n) for v in values for n in ("/" + c.name, c.name)):
                return False
        elif key == "id":
            if not any(c.id.startswith(v) for v in values):
                return False
        elif key == "label":
            labels = r.config.labels
            if not all(containerconfig.label_matches(labels, v) for v in values):
                return False
        elif key == "ancestor":
            ok = False
            for v in values:
                try:
                    if images.resolve(v) == r.image:
                        ok = True
                except NotFound:
                    pass
            if not ok:
                return False
        elif key == "exited":
            if r.state.running or r.state.status != "exited" or str(r.state.exit_code) not in values:
                return False
        elif key == "isolation":
            isolation = r.host.isolation or "process"
            if isolation not in values and (isolation != "default" or "process" not in values):
                return False
        elif key == "volume":
            if not any(v in (m.name, m.source, m.destination) for v in values for m in r.binds):
                return False
        elif key == "network":
            on = endpoints.network_entries(r)  # what the container is on (a disconnect takes it off)
            ids = {(e.endpoint.network if e.endpoint else "") or e.settings.network_id for e in on}
            nets = {e.name for e in on} | (ids - {""})
            if not any(v in nets or any(str(n or "").startswith(v) for n in nets) for v in values):
                return False
        elif key == "health":
            if healthrules.status_of(r.state.health) not in values:
                return False
        elif key == "publish":
            ports = {f"{b.host_port}/{b.proto}" for b in r.ports} | \
                {str(b.host_port) for b in r.ports if b.proto == "tcp"}
            if not any(v in ports for v in values):
                return False
    return True


def name_matches(pattern: str, name: str) -> bool:
    """Docker's `name` filter: equal, or the pattern (a regular expression) found in the name;
    a pattern that is not a valid expression matches only by equality."""
    if pattern == name:
        return True
    compiled = patterns.go_regex(pattern)
    return compiled is not None and compiled.search(name) is not None


def status_text(state: ContainerState) -> str:
    """`docker ps`'s STATUS column: "Up 3 seconds (healthy)", "Exited (0) 2 minutes ago", "Created"."""
    now = time.time_ns()
    if state.running:
        up = timefmt.human_duration((now - timefmt.parse_ns(state.started_at)) / 1e9)
        return f"Up {up} (Paused)" if state.paused else f"Up {up}{healthrules.status_suffix(state.health)}"
    if state.status == "exited":
        ago = timefmt.human_duration((now - timefmt.parse_ns(state.finished_at)) / 1e9)
        return f"Exited ({state.exit_code}) {ago} ago"
    return state.status.capitalize()


def _network_settings(r: ContainerRecord) -> dict[str, Any]:
    """NetworkSettings: the container's endpoints (bridge modes) or the none/host pseudo-network."""
    ports: dict[str, Any] = {}
    for key in r.config.exposed_ports or {}:
        ports[key] = None
    for b in r.ports:
        key = f"{b.port}/{b.proto}"
        ports[key] = (ports.get(key) or []) + [{"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    # Each network's settings and attachment (api.views.networks); a bridged container with none left has {}.
    networks = network_views.container_networks(r)
    first = next(iter(networks.values()), None) or network_views.unset_endpoint()
    return {"Bridge": "", "SandboxID": "", "HairpinMode": False, "Ports": ports,
            "SandboxKey": f"/run/berth/netns/{r.id}" if r.endpoints else "",
            "Gateway": first["Gateway"], "IPAddress": first["IPAddress"], "IPPrefixLen": first["IPPrefixLen"],
            "MacAddress": first["MacAddress"], "Networks": networks}


def port_list(r: ContainerRecord) -> list[dict[str, Any]]:
    """The Ports of /containers/json: published bindings, and exposed ports without one."""
    out: list[dict[str, Any]] = [{"IP": b.host_ip or "0.0.0.0", "PrivatePort": b.port, "PublicPort": b.host_port,
                                  "Type": b.proto} for b in r.ports]
    published = {(o["PrivatePort"], o["Type"]) for o in out}
    for key in r.config.exposed_ports or {}:
        port, _, proto = key.partition("/")
        if port.isdigit() and (int(port), proto or "tcp") not in published:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out