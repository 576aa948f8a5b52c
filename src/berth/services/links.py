"""Legacy container links (`--link NAME[:ALIAS]`, `HostConfig.Links`), as Docker's default bridge has them.

Strategy: a link is kept in the linking container's own record, in the form
Docker shows it back (`HostConfig.Links: ["/db:/web/db"]`: the linked
container's name, then the link's name, which is the linking container's name
and the alias). `at_create` checks and normalises the list: the linked
container must exist (400 "could not get container for NAME: No such
container: NAME"; Docker answers "invalid parameter", not 404, so the CLI does
not go looking for an image), and may not use the host's network. On a
user-defined network Docker does not register links at all (they are DNS
aliases there, possibly of a container that does not exist yet), so the list
is kept as given.

At each start `at_start` turns the links into what the container gets: the
linked containers must be running; each gives an /etc/hosts line (its address,
then the alias, its hostname and, when different from the alias, its name) and
Docker's environment variables (`Link.env`): ALIAS_NAME, ALIAS_PORT and
ALIAS_PORT_<port>_<proto>[_ADDR|_PORT|_PROTO] for each exposed port (with
_START/_END variables over runs of three or more consecutive ports), and
ALIAS_ENV_<VAR> for each variable of the linked container but HOME and PATH.
The container's own variables win over these.

`unlink` is `DELETE /containers/{name}/{alias}?link=true`: the link leaves the
record; a running container keeps the hosts line and variables it started with
(Docker's are not taken back either).

Everything here reads and changes records in memory; call it on the event loop.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.services.records import Container, ContainerRecord
from berth.wire.containerspec import ContainerConfig, HostConfig

USER_NETWORK_EXEMPT = ("default", "bridge", "none", "host")
_ALIAS = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One entry of HostConfig.Links, parsed."""

    target: str   # the linked container's name or id (no leading "/")
    alias: str


def parse(text: str) -> LinkSpec:
    """NAME, NAME:ALIAS, or the stored form /NAME:/LINKER/ALIAS.

    Raises:
        InvalidArgument: empty, or more than one ":".
    """
    if not text:
        raise InvalidArgument("empty string specified for links")
    parts = text.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"bad format for links: {text}")
    if len(parts) == 1:
        return _checked(LinkSpec(text.lstrip("/"), text.lstrip("/")), text)
    if parts[0].startswith("/"):
        return _checked(LinkSpec(parts[0][1:], posixpath.basename(parts[1])), text)
    if not parts[0] or not parts[1]:
        raise InvalidArgument(f"bad format for links: {text}")
    return _checked(LinkSpec(parts[0], parts[1]), text)


def _checked(spec: LinkSpec, text: str) -> LinkSpec:
    """An alias goes into /etc/hosts and variable names: a container name's characters only."""
    if not _ALIAS.fullmatch(spec.alias):
        raise InvalidArgument(f"bad format for links: {text!r}: an alias is made of letters, digits and _ . - "
                              "(like a container name)")
    return spec


def user_defined(network_mode: str) -> bool:
    return not (network_mode in USER_NETWORK_EXEMPT or network_mode.startswith("container:"))


def at_create(host: HostConfig, name: str, lookup: Callable[[str], Container]) -> list[str] | None:
    """HostConfig.Links of a new container named *name*, checked and in Docker's stored form.

    *lookup(ref)* returns a container or raises NotFound.

    Raises:
        InvalidArgument: a malformed link, a linked container that does not exist, or one on the
            host's network.
    """
    links = host.links
    if not links:
        return None
    if user_defined(host.network_mode or "default"):
        for text in links:
            parse(text)
        return list(links)
    out = []
    for text in links:
        spec = parse(text)
        child = _find(spec.target, lookup)
        seen: set[str] = set()
        while child.record.network_mode.startswith("container:") and child.id not in seen:
            seen.add(child.id)
            child = _find(child.record.network_mode.split(":", 1)[1], lookup)
        if child.record.network_mode == "host":
            raise InvalidArgument("conflicting options: host type networking can't be used with links. "
                                  "This would result in undefined behavior")
        out.append(f"/{child.name}:/{name}/{spec.alias}")
    return out


def _find(ref: str, lookup: Callable[[str], Container]) -> Container:
    try:
        return lookup(ref)
    except NotFound as exc:
        raise InvalidArgument(f"could not get container for {ref}: No such container: {ref}") from exc


@dataclass(frozen=True, slots=True)
class Link:
    """A link as a started container gets it."""

    alias: str                 # the last part of the link's name
    name: str                  # the link's name: /LINKER/ALIAS
    target: str                # the linked container's name, "/db"
    hostname: str
    ip: str
    ports: tuple[tuple[int, str], ...]   # exposed (port, protocol)
    env: tuple[str, ...]       # the linked container's variables
    variables: bool = True     # False on a user-defined network: a name to resolve, no variables

    def hosts_line(self) -> tuple[str, str]:
        """(address, names) for /etc/hosts: the alias, the hostname, and the name when it differs from the alias."""
        names = [self.alias, self.hostname]
        if self.alias != self.target.lstrip("/"):
            names.append(self.target.lstrip("/"))
        return self.ip, " ".join(n for n in names if n)

    def env_vars(self) -> list[str]:
        """Docker's link variables, in Docker's order."""
        prefix = self.alias.upper().replace("-", "_")
        ports = sorted(self.ports, key=lambda p: (p[0], p[1].lower() != "tcp"))
        out: list[str] = []
        if ports:
            port, proto = ports[0]
            out.append(f"{prefix}_PORT={proto}://{self.ip}:{port}")
        i = 0
        while i < len(ports):
            end = i
            while end + 1 < len(ports) and ports[end + 1][0] == ports[end][0] + 1:
                end += 1
            if end > i + 1:  # three or more in a row: the range as well
                (first, proto), (last, last_proto) = ports[i], ports[end]
                key = f"{prefix}_PORT_{first}_{proto.upper()}"
                out += [f"{key}_START={proto}://{self.ip}:{first}", f"{key}_ADDR={self.ip}", f"{key}_PROTO={proto}",
                        f"{key}_PORT_START={first}",
                        f"{prefix}_PORT_{first}_{last_proto.upper()}_END={last_proto}://{self.ip}:{last}",
                        f"{prefix}_PORT_{first}_{last_proto.upper()}_PORT_END={last}"]
                i = end + 1
            else:
                i += 1
        for port, proto in ports:
            key = f"{prefix}_PORT_{port}_{proto.upper()}"
            out += [f"{key}={proto}://{self.ip}:{port}", f"{key}_ADDR={self.ip}", f"{key}_PORT={port}",
                    f"{key}_PROTO={proto}"]
        out.append(f"{prefix}_NAME={self.name}")
        for entry in self.env:
            key, sep, value = entry.partition("=")
            if sep and key not in ("HOME", "PATH"):
                out.append(f"{prefix}_ENV_{key}={value}")
        return out


def exposed(config: ContainerConfig) -> tuple[tuple[int, str], ...]:
    """Config.ExposedPorts as (port, protocol) pairs; a range or a bad key is left out."""
    out = []
    for key in config.exposed_ports or {}:
        port, _, proto = str(key).partition("/")
        if port.isdigit():
            out.append((int(port), proto or "tcp"))
    return tuple(out)


def at_start(record: ContainerRecord, lookup: Callable[[str], Container]) -> list[Link]:
    """The links of the container *record* as it starts now.

    On a user-defined network (Docker: a DNS alias the linking container alone resolves),
    a hosts line for each link whose container is running on a network this one is on, and
    no variables; the others are left out (they may come later: Docker's alias would then
    resolve, this hosts line does not appear).

    Raises:
        Conflict: (default bridge) a linked container is missing or not running ("Cannot link
            to a non running container: /db AS /web/db").
    """
    if user_defined(record.network_mode):
        return _on_user_networks(record, lookup)
    if not record.host.links:
        return []
    out = []
    me = record.name
    for text in record.host.links:
        spec = parse(text)
        name = posixpath.join("/", me, spec.alias)
        try:
            child = lookup(spec.target)
        except NotFound:
            raise Conflict(f"Cannot link to /{spec.target}, as it does not exist any more (link {name}): "
                           f"remove the link with `docker rm --link {me}/{spec.alias}`") from None
        if not child.running:
            raise Conflict(f"Cannot link to a non running container: /{child.name} AS {name}")
        out.append(Link(spec.alias, name, "/" + child.name,
                        child.record.hostname, _address(child.record),
                        exposed(child.config), tuple(child.config.env or ())))
    return out


def _on_user_networks(record: ContainerRecord, lookup: Callable[[str], Container]) -> list[Link]:
    texts = list(record.host.links or [])
    for cfg in record.endpoints_config.values():
        texts += list(cfg.links or ())
    mine = {ep.network for ep in record.endpoints.values()}
    me = record.name
    out = []
    for text in texts:
        try:
            spec = parse(text)
            child = lookup(spec.target)
        except (InvalidArgument, NotFound):
            continue
        shared = [ep for ep in child.record.endpoints.values() if ep.network in mine and ep.ip]
        if child.running and shared:
            out.append(Link(spec.alias, posixpath.join("/", me, spec.alias), "/" + child.name,
                            child.record.hostname, shared[0].ip,
                            (), (), variables=False))
    return out


def _address(child: ContainerRecord) -> str:
    """The linked container's address on the default bridge (any network it has, failing that)."""
    endpoints = list(child.endpoints.values())
    for ep in endpoints:
        if ep.name == "bridge" and ep.ip:
            return ep.ip
    for ep in endpoints:
        if ep.ip:
            return ep.ip
    return ""


def merged_env(links: Sequence[Link], env: Sequence[str]) -> list[str]:
    """The link variables followed by *env*; a variable of *env* replaces a link variable of the same name."""
    own = {e.partition("=")[0] for e in env}
    out = [v for link in links if link.variables for v in link.env_vars() if v.partition("=")[0] not in own]
    return out + list(env)


def without(links: Sequence[str], alias: str) -> list[str]:
    """HostConfig.Links *links* but the link named *alias*."""
    return [text for text in links if parse(text).alias != alias]


def unlink(containers: Any, ref: str, alias: str) -> None:
    """`DELETE /containers/{ref}/{alias}?link=true`: remove the link *alias* of the container *ref* and save it.

    Raises:
        NotFound: "No such container: web/db" (Docker looks the link's name up as a container's name).
    """
    try:
        c = containers.get(ref)
    except NotFound:
        raise NotFound(f"No such container: {ref}/{alias}") from None
    links = list(c.host.links or [])
    kept = without(links, alias)
    if len(kept) == len(links):
        raise NotFound(f"No such container: {ref}/{alias}")
    c.host.links = kept or None
    containers.save(c)


__all__ = ["Link", "LinkSpec", "at_create", "at_start", "exposed", "merged_env", "parse", "unlink", "user_defined",
           "without"]
