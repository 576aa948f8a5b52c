"""Container requests as the Engine API takes them: the create body and the update body.

Strategy: pure parsing, no I/O: a JSON value in, services.containerconfig's typed request out, or
InvalidArgument (400) in Docker's words naming the field. Every field's type is checked first
(services.validate, as Docker's structs declare them), so the typed values can trust them.
"""

from __future__ import annotations

from typing import Any

from berth.errors import InvalidArgument
from berth.services import endpoints, hostlimits, validate
from berth.services.containerconfig import CreateRequest, ResourceUpdate
from berth.wire.containerspec import ContainerConfig, HostConfig, RestartPolicy

# What `docker update` may change (UpdateConfig's fields berth applies)
_UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit",
              "RestartPolicy", "OomKillDisable", *hostlimits.UPDATABLE)


def create_request(body: object) -> CreateRequest:
    """The body of POST /containers/create.

    A string Cmd runs under /bin/sh -c and a string Entrypoint is a one-word command, as berth has
    always read them.

    Raises:
        InvalidArgument: not an object, or a field of the wrong type or value (validate.check_config).
    """
    validate.check_config(body)
    assert isinstance(body, dict)  # check_config refuses anything else
    doc: dict[str, Any] = dict(body)
    if isinstance(doc.get("Entrypoint"), str):
        doc["Entrypoint"] = [doc["Entrypoint"]]
    if isinstance(doc.get("Cmd"), str):
        doc["Cmd"] = ["/bin/sh", "-c", doc["Cmd"]]
    return CreateRequest(ContainerConfig.from_doc(doc), HostConfig.from_doc(doc.get("HostConfig")),
                         endpoints.parse_networking_config(doc.get("NetworkingConfig")))


def update_request(body: object) -> ResourceUpdate:
    """The body of POST /containers/{id}/update (UpdateConfig); fields berth does not apply are ignored.

    Raises:
        InvalidArgument: not an object, or a limit or restart policy refused (validate.check_config).
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object (UpdateConfig)")
    given = {k: v for k, v in body.items() if k in _UPDATABLE and v not in (None, 0) or k == "RestartPolicy"}
    validate.check_config({"HostConfig": given})
    policy = given.get("RestartPolicy")
    return ResourceUpdate(
        memory=given.get("Memory"), memory_swap=given.get("MemorySwap"), nano_cpus=given.get("NanoCpus"),
        cpu_shares=given.get("CpuShares"), cpu_quota=given.get("CpuQuota"), cpu_period=given.get("CpuPeriod"),
        pids_limit=given.get("PidsLimit"), oom_kill_disable=given.get("OomKillDisable"),
        extra=tuple((k, given[k]) for k in hostlimits.UPDATABLE if given.get(k) not in (None, "")),
        restart_policy=RestartPolicy(str(policy.get("Name") or ""), int(policy.get("MaximumRetryCount") or 0))
        if isinstance(policy, dict) else None)
