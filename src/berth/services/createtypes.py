"""The JSON types of a container create (and commit) body, checked field by field.

Strategy: dockerd decodes the body into Go structs, so a value of the wrong
JSON type anywhere (`"ShmSize": "lots"`, `"Ulimits": 5`, `"PortBindings": "x"`,
`"LogConfig": {"Config": "x"}`) is a 400 before anything else happens. berth
keeps the body as JSON; this module is the one table of what each field's
type is (as Docker's ContainerConfig and HostConfig declare them), walked
recursively, so a wrong type is a 400 that names the field instead of a
crash deep inside (a 500) or a value silently ignored. `null` is accepted
everywhere, as Go's decoder accepts it. Values are not checked here, only
types; services.validate checks values.
"""

from __future__ import annotations

from typing import Any, Union

from berth.errors import InvalidArgument

# A type is one of the names below, or a nested table (a JSON object with known fields).
#   str int bool        a JSON string, an integer (not a bool, not a fraction), a boolean
#   any                 anything
#   strslice            a string or an array of strings (Cmd, Entrypoint, Healthcheck.Test)
#   [T]                 ("list", T): an array of T
#   {str: T}            ("map", T): an object whose values are T
Type = Union[str, tuple[str, Any], dict[str, Any]]

_STRS: Type = ("list", "str")
_STR_MAP: Type = ("map", "str")
_OBJ_MAP: Type = ("map", "any")
_THROTTLE: Type = ("list", {"Path": "str", "Rate": "int"})
_WEIGHT: Type = ("list", {"Path": "str", "Weight": "int"})

HEALTHCHECK: dict[str, Type] = {
    "Test": "strslice", "Interval": "int", "Timeout": "int", "StartPeriod": "int", "StartInterval": "int",
    "Retries": "int",
}

HOST_CONFIG: dict[str, Type] = {
    "Binds": _STRS, "ContainerIDFile": "str",
    "LogConfig": {"Type": "str", "Config": _STR_MAP},
    "NetworkMode": "str",
    "PortBindings": ("map", ("list", {"HostIp": "str", "HostPort": "str"})),
    "RestartPolicy": {"Name": "str", "MaximumRetryCount": "int"},
    "AutoRemove": "bool", "VolumeDriver": "str", "VolumesFrom": _STRS, "ConsoleSize": ("list", "int"),
    "Annotations": _STR_MAP, "CapAdd": _STRS, "CapDrop": _STRS, "CgroupnsMode": "str", "Dns": _STRS,
    "DnsOptions": _STRS, "DnsSearch": _STRS, "ExtraHosts": _STRS, "GroupAdd": _STRS, "IpcMode": "str",
    "Cgroup": "str", "Links": _STRS, "OomScoreAdj": "int", "PidMode": "str", "Privileged": "bool",
    "PublishAllPorts": "bool", "ReadonlyRootfs": "bool", "SecurityOpt": _STRS, "StorageOpt": _STR_MAP,
    "Tmpfs": _STR_MAP, "UTSMode": "str", "UsernsMode": "str", "ShmSize": "int", "Sysctls": _STR_MAP,
    "Runtime": "str", "Isolation": "str",
    # Resources
    "CpuShares": "int", "Memory": "int", "NanoCpus": "int", "CgroupParent": "str", "BlkioWeight": "int",
    "BlkioWeightDevice": _WEIGHT, "BlkioDeviceReadBps": _THROTTLE, "BlkioDeviceWriteBps": _THROTTLE,
    "BlkioDeviceReadIOps": _THROTTLE, "BlkioDeviceWriteIOps": _THROTTLE, "CpuPeriod": "int", "CpuQuota": "int",
    "CpuRealtimePeriod": "int", "CpuRealtimeRuntime": "int", "CpusetCpus": "str", "CpusetMems": "str",
    "Devices": ("list", {"PathOnHost": "str", "PathInContainer": "str", "CgroupPermissions": "str"}),
    "DeviceCgroupRules": _STRS,
    "DeviceRequests": ("list", {"Driver": "str", "Count": "int", "DeviceIDs": _STRS,
                                "Capabilities": ("list", _STRS), "Options": _STR_MAP}),
    "KernelMemory": "int", "KernelMemoryTCP": "int", "MemoryReservation": "int", "MemorySwap": "int",
    "MemorySwappiness": "int", "OomKillDisable": "bool", "PidsLimit": "int",
    "Ulimits": ("list", {"Name": "str", "Soft": "int", "Hard": "int"}),
    "CpuCount": "int", "CpuPercent": "int", "IOMaximumIOps": "int", "IOMaximumBandwidth": "int",
    "Mounts": ("list", "any"),  # each mount is checked by wire.mountspec.parse_api_mount
    "MaskedPaths": _STRS, "ReadonlyPaths": _STRS, "Init": "bool",
}

CONFIG: dict[str, Type] = {
    "Hostname": "str", "Domainname": "str", "User": "str", "AttachStdin": "bool", "AttachStdout": "bool",
    "AttachStderr": "bool", "ExposedPorts": _OBJ_MAP, "Tty": "bool", "OpenStdin": "bool", "StdinOnce": "bool",
    "Env": _STRS, "Cmd": "strslice", "Healthcheck": HEALTHCHECK, "ArgsEscaped": "bool", "Image": "str",
    "Volumes": _OBJ_MAP, "WorkingDir": "str", "Entrypoint": "strslice", "NetworkDisabled": "bool",
    "MacAddress": "str", "OnBuild": _STRS, "Labels": _STR_MAP, "StopSignal": "str", "StopTimeout": "int",
    "Shell": _STRS,
    "HostConfig": HOST_CONFIG,
    "NetworkingConfig": {"EndpointsConfig": ("map", "any")},  # endpoints: services.endpoints checks them
}

_NAMES = {"str": "a string", "int": "an integer", "bool": "a boolean", "strslice": "a string or an array of strings"}


def check_config(body: Any) -> None:
    """Check the types of a create body (ContainerConfig with HostConfig and NetworkingConfig).

    Raises:
        InvalidArgument: the body is not an object, or a field has the wrong JSON type (naming it).
    """
    if not isinstance(body, dict):
        raise InvalidArgument(f"the request body must be a JSON object (ContainerConfig), not {json_type(body)}")
    check(body, CONFIG, "")


def check_commit_config(body: Any) -> None:
    """Check the body of `POST /commit` (a ContainerConfig, HostConfig not used); None is no body."""
    if body is None:
        return
    if not isinstance(body, dict):
        raise InvalidArgument("the request body of /commit must be a JSON object (the new image's "
                              f"ContainerConfig, such as {{\"Cmd\": [\"sh\"]}}), not {json_type(body)}")
    check(body, CONFIG, "")


def check(value: Any, kind: Type, where: str) -> None:
    """Raise InvalidArgument if *value* is not of *kind*; *where* names it (`HostConfig.Ulimits[0].Soft`)."""
    if value is None or kind == "any":
        return
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            _wrong(value, where, "an object")
        for key, sub in kind.items():
            if key in value:
                check(value[key], sub, f"{where}.{key}" if where else key)
        return
    if isinstance(kind, tuple):
        shape, item = kind
        if shape == "list":
            if not isinstance(value, list):
                _wrong(value, where, "an array")
            for i, element in enumerate(value):
                check(element, item, f"{where}[{i}]")
        else:
            if not isinstance(value, dict):
                _wrong(value, where, "an object")
            for key, element in value.items():
                check(element, item, f"{where}[{key[:64]!r}]")
        return
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "strslice":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    else:
        raise AssertionError(f"unknown type {kind!r} in the create-body table")
    if not ok:
        _wrong(value, where, _NAMES[kind])


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, as Go's decoder words it (`string`, `number`, ...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _wrong(value: Any, where: str, expected: str) -> None:
    got = json_type(value)
    if got == "number" and isinstance(value, float) and expected == "an integer":
        got = f"number {value!r}"
    raise InvalidArgument(f"json: cannot unmarshal {got} into {where}: expected {expected}")
