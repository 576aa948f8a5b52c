"""Pure parts of a container's record: its Config merged from request and image, its first record,
its restart decision, its generated name.

Strategy: no I/O and no engine state here: `Containers.create` gathers the facts (the image's
config, the run plan, the mounts, the networks) and these functions shape the record from them,
so each rule is tested as a function of its inputs.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any

from berth import timefmt
from berth.services import bundle as bundles
from berth.services.records import ContainerRecord, ContainerState
from berth.services.runplan import RunPlan

_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zealous")
_NOUNS = ("anchor", "beacon", "buoy", "cove", "dock", "harbor", "jetty", "keel", "lagoon", "marina",
          "pier", "quay", "reef", "skiff", "tide", "wharf", "yawl", "schooner")


def generate_name(taken: Collection[str]) -> str:
    """A free name of Docker's adjective_noun shape (a number added when the pair is taken)."""
    while True:
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if name in taken:
            name += str(secrets.randbelow(100))
        if name not in taken:
            return name


def new_id(taken: Collection[str]) -> str:
    """A fresh 64-hex container id whose short form is not all digits (it could read as a number)."""
    cid = secrets.token_hex(32)
    while cid in taken or cid[:12].isdigit():
        cid = secrets.token_hex(32)
    return cid


def merge_image_config(body: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's defaults (as Docker merges them)."""
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    for key in ("Cmd", "Entrypoint"):
        if isinstance(cfg.get(key), str):
            cfg[key] = [cfg[key]] if key == "Entrypoint" else ["/bin/sh", "-c", cfg[key]]
    if cfg.get("Entrypoint") is None:  # null or absent: the image's (only [""] clears it, as in Docker)
        cfg["Entrypoint"] = image.get("Entrypoint")
    if cfg.get("Entrypoint") == [""]:
        cfg["Entrypoint"] = None
    if not cfg.get("Cmd") and not body.get("Entrypoint"):
        cfg["Cmd"] = image.get("Cmd")
    env = list(image.get("Env") or [])
    for e in cfg.get("Env") or []:
        key = e.split("=", 1)[0]
        env = [x for x in env if x.split("=", 1)[0] != key] + [e]
    cfg["Env"] = env
    for key in ("WorkingDir", "User", "StopSignal", "Shell"):
        if not cfg.get(key) and image.get(key):
            cfg[key] = image[key]
    labels = dict(image.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    cfg.setdefault("Hostname", "")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        cfg[key] = bool(cfg.get(key))
    for key in ("Domainname", "User", "WorkingDir"):
        cfg.setdefault(key, "")
    cfg.setdefault("Volumes", None)
    cfg.setdefault("OnBuild", None)
    return cfg


def settled_host_config(host: dict[str, Any], run: RunPlan) -> dict[str, Any]:
    """The HostConfig as recorded: the plan's runtime and isolation, and Docker's defaults filled in."""
    host = dict(host)
    host.setdefault("NetworkMode", run.network)
    host["Runtime"] = run.runtime
    host["Isolation"] = run.isolation_field
    if host.get("MemorySwappiness") == -1:  # the CLI's "unset", stored as Docker stores it
        host["MemorySwappiness"] = None
    log_config = host.get("LogConfig") or {}
    host["LogConfig"] = {"Type": log_config.get("Type") or "json-file", "Config": log_config.get("Config") or {}}
    if not (host.get("RestartPolicy") or {}).get("Name"):
        host["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    return host


def new_record(cid: str, name: str, cfg: dict[str, Any], host: dict[str, Any], image_id: str, image_os: str,
               binds: list[Any], endpoints: dict[str, Any]) -> ContainerRecord:
    """A created container's first record (State "created")."""
    args = bundles.process_args(cfg)
    return ContainerRecord(id=cid, name=name, created=timefmt.now(), path=args[0], args=args[1:], image=image_id,
                           config=cfg, host=host, state=ContainerState(), platform=image_os, binds=binds,
                           endpoints_config=endpoints, endpoints_listed=True)


def should_restart(record: ContainerRecord, code: int) -> bool:
    """Does the restart policy start the container again after it exited with *code*?"""
    policy = record.host.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if record.manually_stopped or name == "no":
        return False
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return code != 0 and (limit == 0 or record.restart_count < limit)
    return name in ("always", "unless-stopped")


def restart_delay(restart_count: int) -> float:
    """Seconds before a restart by policy: 100 ms, doubling with each restart, at most a minute."""
    return min(60.0, 0.1 * 2 ** min(restart_count, 10))


def label_matches(labels: dict[str, str], spec: str) -> bool:
    """A `label=` filter: KEY (present) or KEY=VALUE (equal)."""
    key, eq, value = spec.partition("=")
    return key in labels and (not eq or labels[key] == value)
