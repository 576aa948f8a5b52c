"""`create`/`run` flags and their mapping onto POST /containers/create.

Strategy: `add_create_flags` declares docker's flag names on a Parser;
`build_create` is a pure function from the parsed flags (plus the local
environment, for `-e NAME` without a value) to the request's query and JSON body
(Config fields at the top level, HostConfig and NetworkingConfig nested), so
the whole mapping is testable without a daemon.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.cli.parser import Parser, integer, typed
from berth.cli.runextra import add_extra_flags, apply_extra, read_label_files
from berth.cli.units import parse_cpus, parse_go_duration, ram_in_bytes
from berth.errors import InvalidArgument

_BUILTIN_NETWORKS = {"default", "bridge", "host", "none"}


def add_create_flags(p: Parser, run: bool) -> None:
    if run:
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--rm", action="store_true")
        p.add_argument("--sig-proxy", default=True, type=_boolean, nargs="?", const=True)
        p.add_argument("--detach-keys", default=None)
    else:
        p.add_argument("--rm", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-a", "--attach", action="append", default=[])
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir", default=None)
    p.add_argument("-u", "--user", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--volumes-from", action="append", default=[])
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("-m", "--memory", type=typed("-m, --memory", ram_in_bytes), default=None)
    p.add_argument("--cpus", type=typed("--cpus", parse_cpus), default=None)
    p.add_argument("-c", "--cpu-shares", type=typed("-c, --cpu-shares", integer), default=None)
    p.add_argument("--pids-limit", type=typed("--pids-limit", integer), default=None)
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--init", action="store_true", default=None)
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--cap-add", action="append", default=[])
    p.add_argument("--cap-drop", action="append", default=[])
    p.add_argument("-h", "--hostname", default=None)
    p.add_argument("--network", "--net", default=None)
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--ip", default=None)
    p.add_argument("--network-alias", "--net-alias", action="append", default=[])
    p.add_argument("--isolation", default=None)
    p.add_argument("--runtime", default=None)
    p.add_argument("--platform", default=None)
    p.add_argument("--stop-signal", default=None)
    p.add_argument("--stop-timeout", type=typed("--stop-timeout", integer), default=None)
    p.add_argument("--memory-swap", type=typed("--memory-swap", _swap), default=None)
    p.add_argument("--cpu-quota", type=typed("--cpu-quota", integer), default=None)
    p.add_argument("--cpu-period", type=typed("--cpu-period", integer), default=None)
    p.add_argument("--oom-kill-disable", action="store_true")
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("--log-driver", default=None)
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--restart", default=None)
    p.add_argument("--health-cmd", default=None)
    for flag in ("--health-interval", "--health-timeout", "--health-start-period", "--health-start-interval"):
        p.add_argument(flag, type=typed(flag, duration_ns), default=0)
    p.add_argument("--health-retries", type=typed("--health-retries", integer), default=0)
    p.add_argument("--no-healthcheck", action="store_true")
    add_extra_flags(p)
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def parse_publish(spec: str) -> list[tuple[str, str, str]]:
    """`-p [ip:][hostPort:]containerPort[/proto]` (ports may be equal-length ranges) as
    [(containerPort/proto, host ip, host port)]; an empty host port means a random one."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    host_ip = ""
    if rest.startswith("["):  # [v6]:host:ctr
        end = rest.find("]")
        host_ip, rest = rest[1:end], rest[end + 2:]
    parts = rest.split(":")
    if len(parts) == 3:
        host_ip, host, ctr = parts
    elif len(parts) == 2:
        host, ctr = parts
    elif len(parts) == 1:
        host, ctr = "", parts[0]
    else:
        raise InvalidArgument(f"invalid publish spec: {spec}")

    def span(text: str, kind: str) -> list[int]:  # docker's words: "invalid hostPort: 99999"
        lo, _, hi = text.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidArgument(f"invalid {kind}: {text}") from None
        if not (0 <= a <= b < 65536):  # 0 is docker's too: any free port
            raise InvalidArgument(f"invalid {kind}: {text}")
        return list(range(a, b + 1))
    ctr_ports = span(ctr, "containerPort")
    host_ports: list[int | None] = list(span(host, "hostPort")) if host else [None] * len(ctr_ports)
    if len(host_ports) != len(ctr_ports):
        if len(ctr_ports) == 1 and host:
            return [(f"{ctr_ports[0]}/{proto}", host_ip, host)]  # a host range for one port: docker picks
        raise InvalidArgument(f"invalid ranges specified for container and host ports: {spec}")
    return [(f"{c}/{proto}", host_ip, "" if h is None else str(h)) for c, h in zip(ctr_ports, host_ports, strict=False)]


def _swap(text: str) -> int:
    return -1 if text.strip() == "-1" else ram_in_bytes(text)


def _boolean(text: str) -> bool:
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f'invalid argument "{text}": parse error')


def duration_ns(text: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms", "0") in nanoseconds."""
    if text.strip() in ("0", "+0", "-0"):
        return 0
    seconds = parse_go_duration(text.strip())
    if seconds is None:
        raise ValueError(f"time: invalid duration {json.dumps(text)}")
    return round(seconds * 1_000_000_000)


def healthcheck(ns: argparse.Namespace) -> dict[str, Any] | None:
    """Config.Healthcheck from the --health-* flags and --no-healthcheck, as the docker CLI builds it."""
    durations = {"Interval": ns.health_interval, "Timeout": ns.health_timeout,
                 "StartPeriod": ns.health_start_period, "StartInterval": ns.health_start_interval}
    given = bool(ns.health_cmd) or any(durations.values()) or bool(ns.health_retries)
    if ns.no_healthcheck:
        if given:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    for key, flag in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start-period"),
                      ("StartInterval", "start-interval")):
        if durations[key] < 0:
            raise InvalidArgument(f"--health-{flag} cannot be negative")
    if ns.health_retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    out: dict[str, Any] = {"Test": ["CMD-SHELL", ns.health_cmd]} if ns.health_cmd else {}
    out.update({k: v for k, v in durations.items() if v})
    if ns.health_retries:
        out["Retries"] = ns.health_retries
    return out


@dataclass
class CreateRequest:
    query: dict[str, Any]
    body: dict[str, Any]
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    warnings: list[str] = field(default_factory=list)
    pull: str = "missing"  # --pull: missing, always, never
    quiet: bool = False    # -q: no pull output


SECCOMP_FILE_LIMIT = 16 << 20


def read_seccomp_file(opt: str) -> str:
    """`seccomp=PATH` -> `seccomp=<the file's JSON, compacted>`, as the docker CLI sends it; other options as given.

    Raises:
        InvalidArgument: the file cannot be read, is too large, or is not JSON.
    """
    sep = "=" if "=" in opt else ":" if ":" in opt else ""
    key, _, path = opt.partition(sep) if sep else (opt, "", "")
    if key != "seccomp" or path in ("", "unconfined", "builtin"):
        return opt
    try:
        with open(path, "rb") as fh:
            data = fh.read(SECCOMP_FILE_LIMIT + 1)
    except OSError as exc:
        raise InvalidArgument(f"opening seccomp profile ({path}) failed: {(exc.strerror or str(exc)).lower()}") from None
    if len(data) > SECCOMP_FILE_LIMIT:
        raise InvalidArgument(f"seccomp profile ({path}) is larger than {SECCOMP_FILE_LIMIT >> 20} MiB")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"compacting json for seccomp profile ({path}) failed: {exc}") from None
    return f"seccomp={json.dumps(doc, separators=(',', ':'))}"


def env_files(paths: list[str], environ: Mapping[str, str]) -> list[str]:
    """The variables of each --env-file, in order (reads the files)."""
    env: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                env += parse_env_file(fh.read(1 << 20), environ)
        except OSError as exc:
            raise InvalidArgument(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    return env


def parse_env_file(text: str, environ: Mapping[str, str]) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            out.append(line)
        elif line in environ:
            out.append(f"{line}={environ[line]}")
    return out


def expand_env(items: list[str], environ: Mapping[str, str]) -> list[str]:
    """`-e K=V` as is; `-e K` takes K from the local environment (dropped if unset)."""
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise InvalidArgument(f"invalid environment variable: {item}")
            out.append(item)
        elif item in environ:
            out.append(f"{item}={environ[item]}")
    return out


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label: {item}")
        labels[key] = value
    return labels


def split_volumes(specs: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Split `-v` specs into HostConfig.Binds (anything with a destination after a colon) and anonymous
    Volumes, as docker's CLI does: the daemon checks them and words what is wrong."""
    binds: list[str] = []
    volumes: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if not spec:
            raise InvalidArgument("invalid empty volume spec")
        if spec.partition(":")[2]:
            binds.append(spec)
        else:
            volumes[spec] = {}
    return binds, volumes


_MOUNT_FLAGS = ("readonly", "ro", "volume-nocopy", "bind-nonrecursive")


def parse_mount_flag(spec: str) -> dict[str, Any]:
    """`--mount type=bind|volume|tmpfs,source=,target=[,readonly][,volume-opt=k=v]...` as a Mounts entry."""
    mount: dict[str, Any] = {"Type": "volume"}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    for item in next(csv.reader([spec])) if spec else []:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq and key in _MOUNT_FLAGS:
            value = "true"
        elif not eq:
            raise InvalidArgument(f"invalid field '{item}' must be a key=value pair")
        if key in _MOUNT_FLAGS and value.lower() not in ("1", "true", "0", "false"):
            raise InvalidArgument(f"invalid value for {key}: {value} (use true or false)")
        on = value.lower() in ("1", "true")
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = on
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = on
        elif key == "volume-nocopy":
            volume["NoCopy"] = on
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key in ("volume-opt", "volume-label"):
            name, _, setting = value.partition("=")
            where = volume.setdefault("DriverConfig", {}) if key == "volume-opt" else volume
            where.setdefault("Options" if key == "volume-opt" else "Labels", {})[name] = setting
        elif key == "volume-subpath":
            volume["Subpath"] = value
        elif key == "tmpfs-size":
            tmpfs["SizeBytes"] = ram_in_bytes(value)
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for tmpfs-mode: {value} (an octal mode like 1777)") from None
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{item}'")
    if not mount.get("Target"):
        raise InvalidArgument(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    for key, options in (("BindOptions", bind), ("VolumeOptions", volume), ("TmpfsOptions", tmpfs)):
        if options:
            mount[key] = options
    return mount


def build_create(ns: argparse.Namespace, environ: Mapping[str, str] | None = None,
                 console_size: tuple[int, int] | None = None) -> CreateRequest:
    """Map parsed create/run flags to the create request."""
    environ = os.environ if environ is None else environ
    detach = bool(getattr(ns, "detach", False))
    attach = [a.lower() for a in ns.attach]
    for a in attach:
        if a not in ("stdin", "stdout", "stderr"):
            raise InvalidArgument(f"invalid argument \"{a}\" for \"-a, --attach\" flag: "
                                  "valid streams are STDIN, STDOUT and STDERR")
    if detach and attach:
        raise InvalidArgument("Conflicting options: -a and -d")
    if attach:
        a_in, a_out, a_err = ("stdin" in attach), ("stdout" in attach), ("stderr" in attach)
        a_in = a_in or ns.interactive
    elif detach:
        a_in = a_out = a_err = False
    else:
        a_in, a_out, a_err = ns.interactive, True, True

    env = env_files(ns.env_file, environ) + expand_env(ns.env, environ)
    binds, volumes = split_volumes(ns.volume)

    body: dict[str, Any] = {
        "Hostname": ns.hostname or "",
        "User": ns.user or "",
        "AttachStdin": a_in,
        "AttachStdout": a_out,
        "AttachStderr": a_err,
        "Tty": ns.tty,
        "OpenStdin": ns.interactive,
        "StdinOnce": bool(ns.interactive and a_in and not detach),
        "Env": env,
        "Cmd": list(ns.command) if ns.command else None,
        "Image": ns.image,
        "WorkingDir": ns.workdir or "",
        "Labels": parse_labels(ns.label),
    }
    if volumes:
        body["Volumes"] = volumes
    if ns.entrypoint is not None:
        body["Entrypoint"] = [ns.entrypoint] if ns.entrypoint else [""]
    if ns.stop_signal:
        body["StopSignal"] = ns.stop_signal
    if ns.stop_timeout is not None:
        body["StopTimeout"] = ns.stop_timeout
    health = healthcheck(ns)
    if health is not None:
        body["Healthcheck"] = health

    network = ns.network or "default"
    host: dict[str, Any] = {
        "Binds": binds or None,
        "NetworkMode": network,
        "AutoRemove": bool(ns.rm),
        "Privileged": ns.privileged,
        "ReadonlyRootfs": ns.read_only,
        "CapAdd": ns.cap_add or None,
        "CapDrop": ns.cap_drop or None,
    }
    if ns.memory is not None:
        host["Memory"] = ns.memory
    if ns.cpus is not None:
        host["NanoCpus"] = ns.cpus
    if ns.cpu_shares is not None:
        host["CpuShares"] = ns.cpu_shares
    if ns.pids_limit is not None:
        host["PidsLimit"] = ns.pids_limit
    if ns.init:
        host["Init"] = True
    if ns.memory_swap is not None:
        host["MemorySwap"] = ns.memory_swap
    if ns.cpu_quota is not None:
        host["CpuQuota"] = ns.cpu_quota
    if ns.cpu_period is not None:
        host["CpuPeriod"] = ns.cpu_period
    if ns.oom_kill_disable:
        host["OomKillDisable"] = True
    if ns.security_opt:
        host["SecurityOpt"] = [read_seccomp_file(opt) for opt in ns.security_opt]
    if ns.mount:
        host["Mounts"] = [parse_mount_flag(m) for m in ns.mount]
    if ns.volumes_from:
        host["VolumesFrom"] = list(ns.volumes_from)
    if ns.tmpfs:
        host["Tmpfs"] = {t.partition(":")[0]: t.partition(":")[2] for t in ns.tmpfs}
    if ns.log_driver or ns.log_opt:
        host["LogConfig"] = {"Type": ns.log_driver or "",
                             "Config": {o.partition("=")[0]: o.partition("=")[2] for o in ns.log_opt}}
    if ns.add_host:
        host["ExtraHosts"] = list(ns.add_host)
    if ns.dns:
        host["Dns"] = list(ns.dns)
    if ns.restart:
        name, _, count = ns.restart.partition(":")
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count) if count.isdigit() else 0}
    if ns.isolation:
        host["Isolation"] = ns.isolation
    if ns.runtime:
        host["Runtime"] = ns.runtime
    if ns.tty and console_size:
        host["ConsoleSize"] = list(console_size)
    if ns.publish:
        bindings: dict[str, list[dict[str, str]]] = {}
        for spec in ns.publish:
            for key, host_ip, host_port in parse_publish(spec):
                bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
        host["PortBindings"] = bindings
        body["ExposedPorts"] = {**body.get("ExposedPorts", {}), **{k: {} for k in bindings}}
    if ns.expose:
        body["ExposedPorts"] = {**body.get("ExposedPorts", {}),
                                **{e if "/" in e else f"{e}/tcp": {} for e in ns.expose}}
    if ns.publish_all:
        host["PublishAllPorts"] = True
    apply_extra(ns, body, host, read_label_files(ns.label_file))
    body["HostConfig"] = host
    if network not in _BUILTIN_NETWORKS and not network.startswith("container:"):
        endpoint: dict[str, Any] = {}
        if ns.ip or ns.ip6 or ns.link_local_ip:
            endpoint["IPAMConfig"] = {k: v for k, v in (("IPv4Address", ns.ip), ("IPv6Address", ns.ip6),
                                                        ("LinkLocalIPs", list(ns.link_local_ip))) if v}
        if ns.network_alias:
            endpoint["Aliases"] = list(ns.network_alias)
        body["NetworkingConfig"] = {"EndpointsConfig": {network: endpoint}}

    query: dict[str, Any] = {}
    if ns.name:
        query["name"] = ns.name
    if ns.platform:
        query["platform"] = ns.platform
    return CreateRequest(query, body, a_in, a_out, a_err, pull=ns.pull, quiet=ns.quiet)
