"""System routes: _ping, version, info, events."""

from __future__ import annotations

import json
import os
import platform
import socket
from typing import Any, AsyncIterator

from berth import API_VERSION, MIN_API_VERSION, __version__, timefmt
from berth.api.replies import Reply, Stream
from berth.api.request import Request
from berth.api.routing import Router
from berth.api.views import containers as views
from berth.api.views import events as event_views
from berth.api.views import images as image_views
from berth.api.views import volumes as volume_views
from berth.api.wiring import Daemon
from berth.errors import BerthError, InvalidArgument
from berth.services.engineinfo import EngineInfo, daemon_id
from berth.wire.registryauth import decode_x_registry_auth


def register(router: Router, d: Daemon) -> None:
    facts = EngineInfo.probe(d.runtimes)
    engine_id = daemon_id(d.config.root)
    kernel, arch, vm = facts.kernel, facts.arch, facts.vm

    async def ping(req: Request) -> Reply:
        return Reply(200, b"OK", [("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache"),
                                  ("Builder-Version", "1")], "text/plain; charset=utf-8")

    async def version(req: Request) -> Reply:
        components: list[dict[str, Any]] = [{
            "Name": "Engine", "Version": __version__,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
                        "KernelVersion": kernel, "GitCommit": "", "GoVersion": "python" + platform.python_version(),
                        "BuildTime": "", "Experimental": "false"}}]
        for name, (_, ver) in facts.runtimes.items():
            components.append({"Name": name, "Version": ver, "Details": {"GitCommit": ""}})
        components.append({"Name": "conmon", "Version": facts.conmon_version, "Details": {"GitCommit": ""}})
        if vm:
            components.append({"Name": "qemu", "Version": facts.qemu_version,
                               "Details": {"Accelerator": facts.accel_name}})
        return Reply(200, {
            "Platform": {"Name": "berth"}, "Components": components, "Version": __version__,
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
            "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": arch,
            "KernelVersion": kernel, "BuildTime": "",
        })

    async def info(req: Request) -> Reply:
        cs = d.containers.all()
        running = sum(1 for c in cs if c.running and not c.state.paused)
        paused = sum(1 for c in cs if c.state.paused)
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return Reply(200, {
            "ID": engine_id, "Containers": len(cs), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": len(cs) - running - paused,
            "Images": len(d.imageviews.listing(True)), "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
            "Plugins": {"Volume": [], "Network": ["host", "null"], "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
            "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
            "IPv4Forwarding": True, "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
            "NGoroutines": 0, "SystemTime": timefmt.now(), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
            "NEventsListener": d.events.listeners, "KernelVersion": kernel, "OperatingSystem": facts.os_name,
            "OSVersion": "", "OSType": "linux", "Architecture": facts.machine, "IndexServerAddress": "",
            "NCPU": os.cpu_count() or 1, "MemTotal": mem, "DockerRootDir": os.path.abspath(d.config.root),
            "Name": socket.gethostname(), "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": __version__, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Runtimes": {name: {"path": binary} for name, (binary, _) in facts.runtimes.items()},
            "DefaultRuntime": d.config.default_runtime,
            # never a swarm node: what a Docker engine outside a swarm reports (handlers/swarm.py)
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": True, "Isolation": "process",
            "IsolationModes": ["process", "hyperv"] if vm else ["process"],
            "VirtualizationAccel": f"{facts.accel_name}: {facts.accel_reason}" if vm else "none",
            "InitBinary": "docker-init", "SecurityOptions": list(facts.security_options),
            "Warnings": [],
        })

    async def events(req: Request) -> Stream:
        since = timefmt.parse_since(req.q("since")) if req.q("since") else 0
        until = timefmt.parse_since(req.q("until")) if req.q("until") else 0
        if since and until and until < since:
            raise InvalidArgument("`since` must be before `until`")
        filters = req.filters()
        if "container" in filters:  # follow the container, not its name (it may be renamed)
            for value in list(filters["container"]):
                try:
                    filters["container"].append(d.containers.get(value).id)
                except BerthError:
                    pass
        source = d.events.subscribe(since, until, filters)

        async def lines() -> AsyncIterator[bytes]:
            yield b""
            async for event in source:
                yield json.dumps(event_views.message(event)).encode() + b"\n"
        return Stream(lines())

    async def df(req: Request) -> Reply:
        images = image_views.listing(d.imageviews.listing(True))
        layers = d.layers.total_size()
        return Reply(200, {"LayersSize": layers, "Images": images, "Volumes": [volume_views.usage(u) for u in d.containers.volumes.usage()],
                           "BuildCache": [],
                           "Containers": views.listing(d.containers, d.images, True, -1, {}, True)})

    async def distribution(req: Request) -> Reply:
        creds = decode_x_registry_auth(req.headers.get("x-registry-auth", ""))
        return Reply(200, image_views.registry_image(await d.distribution.describe(req.params["image"], creds)))

    router.add("GET", "/system/df", df)
    router.add("GET", "/distribution/{image}/json", distribution)
    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events, waits=False)
