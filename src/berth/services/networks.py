"""Networks: the default bridge and user-defined bridge networks, their records and kernel objects, and DNS.

Strategy: a network is a record (DB) plus kernel objects made from it: a
Linux bridge, nftables rules in berth's own table (masquerade out, isolation
from other networks, DNAT for published ports) and, for user-defined
networks, the embedded DNS resolver served on the bridge's gateway address.
Kernel objects are made again from the records at every daemon start
(idempotent), so a restart or crash never leaves a network half-there. The
records' pure rules (pools, new records, filters) are network.bridgeplan's;
containers' places on the networks (namespaces, veths, addresses, published
ports) are services.attachments'. `lookup` answers the DNS resolver:
container names, aliases and short ids on the network the query arrived from.

Records are typed values (network.record.NetworkRecord; the database keeps
Docker's network document). A create request arrives parsed
(`NetworkCreateRequest`, from api.handlers.networks) and is checked here; list
and inspect give `NetworkDetails` (a record and the running containers on it),
which api.views.networks shows as Docker's JSON.

An internal network (``--internal``) has no way out: its containers get no
default route (in a namespace or a VM guest), nftables forwards nothing
between its bridge and anything else and accepts nothing from it on the host
but DNS on the gateway, its resolver answers only its own names (SERVFAIL for
the rest, as Docker's does) and ports are not published on it. A container on
an internal and a plain network takes its default route and published ports
from the plain one.

A network made with ``--ipv6`` (EnableIPv6) also has an IPv6 IPAM entry
(network.ipam6; a random unique local /64 when no IPv6 subnet is given): its
bridge carries the IPv6 gateway and takes no router advertisements, its
containers get an address (``--ip6``), a default IPv6 route (none on an
internal network) and AAAA answers from the resolver, and its ip6 rules
(host.nftables) guard ::1 and isolate it as the IPv4 ones do. IPv6 is not
NATed and berth does not turn on IPv6 forwarding. Other bridges keep IPv6 off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.host import netlink, netns, nftables, nftrules, sysctl
from berth.metadata.db import Database
from berth.network import bridgeplan, ipam, ipam6
from berth.network.bridgeplan import DEFAULT_BRIDGE, MTU, PREDEFINED
from berth.network.dns import Resolver
from berth.network.endpoint import Endpoint, EndpointSettings
from berth.network.record import IpamEntry, NetworkRecord
from berth.services import endpoints as endpoint_settings
from berth.services.events import Events
from berth.services.records import Container

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NetworkCreateRequest:
    """`POST /networks/create`, parsed (api.handlers.networks); what it means is checked by `Networks.create`."""

    name: str
    driver: str = "bridge"
    ipam_driver: str = "default"
    ipam_options: Mapping[str, str] = field(default_factory=dict)
    ipam_config: tuple[IpamEntry, ...] = ()  # as given: at most one IPv4 and one IPv6 entry, any field empty
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NetworkMember:
    """A running container attached to a network (network inspect's Containers)."""

    container_id: str
    name: str
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class NetworkDetails:
    """A network as inspect and list show it: its record and the running containers on it."""

    record: NetworkRecord
    members: tuple[NetworkMember, ...] = ()


class Networks:
    def __init__(self, db: Database, run_dir: str, events: Events,
                 containers: Callable[[], Iterable[Container]], *, bridge: str = DEFAULT_BRIDGE,
                 bip: str = "", table: str = nftrules.TABLE, upstream_resolv: str = "") -> None:
        self._db, self._events = db, events
        self._containers = containers  # the live Container objects (for DNS and in-use checks)
        self._netns_dir = Path(run_dir) / "netns"
        self._bridge = bridge
        self._bip = bip  # the default bridge's gateway/prefix, e.g. 172.17.0.1/16
        self._table = table
        self.lock = asyncio.Lock()
        self.resolver = Resolver(self.lookup, upstream_resolv, client_lookup=self.link_lookup)

    @property
    def netns_dir(self) -> Path:
        """Where the containers' network namespaces are bind-mounted (one file per container)."""
        return self._netns_dir

    @property
    def table(self) -> str:
        """The daemon's nftables table."""
        return self._table

    # -- records ------------------------------------------------------------------
    def _records(self) -> list[NetworkRecord]:
        return [NetworkRecord.from_doc(doc) for _, doc in self._db.networks()]

    def get(self, ref: str) -> NetworkRecord:
        """A network by name, full id or unique id prefix."""
        records = self._records()
        for net in records:
            if ref in (net.name, net.id):
                return net
        matches = [n for n in records if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"network {ref} not found")

    # -- daemon start ----------------------------------------------------------------
    async def startup(self) -> None:
        """Make the predefined networks' records, then every bridge network's kernel objects."""
        names = {n.name for n in self._records()}
        for name in PREDEFINED:
            if name not in names:
                driver = {"bridge": "bridge", "host": "host", "none": "null"}[name]
                options = {"com.docker.network.bridge.name": self._bridge,
                           "com.docker.network.bridge.default_bridge": "true"} if name == "bridge" else {}
                config = [bridgeplan.default_bridge_config(self._bip)] if name == "bridge" else []
                self._db.put_network(bridgeplan.new_network(name, driver, config, options=options).to_doc())
        await nftables.ensure_table(self._table)
        netns.prepare_netns_dir(self._netns_dir)
        for stale in self.leftovers():  # containers removed while the daemon was down
            netns.delete_netns(self._netns_dir / stale)
        sysctl.enable_ip_forward()
        for net in self._records():
            if net.driver == "bridge":
                await self._realize(net)
        known = {n.id for n in self._records()} | {c.id for c in self._containers() if c.record.ports}
        for owner in await nftables.owners(table=self._table) - known:  # rules of containers gone while down
            await nftables.remove_owner(owner, table=self._table)

    async def _realize(self, net: NetworkRecord) -> None:
        bridge = bridgeplan.bridge_name(net)
        pool, pool6 = bridgeplan.pool_of(net), bridgeplan.pool6_of(net)
        internal = bridgeplan.is_internal(net)
        # The rules first: they guard the host's loopback, which route_localnet opens to the bridge.
        await nftables.add_network(net.id, bridge, str(pool.subnet), table=self._table,
                                   internal=internal, gateway=str(pool.gateway),
                                   subnet6=str(pool6.subnet) if pool6 else "")
        netlink.ensure_bridge(bridge, pool.gateway_cidr, MTU)
        if pool6 is not None:  # --ipv6: the gateway address, guarded by the ip6 rules just set
            sysctl.enable_ipv6(bridge, pool6.gateway_cidr)
        else:
            sysctl.disable_ipv6(bridge)  # IPv4-only networks: no link-local way to the host's [::] services
        # Published ports answer on 127.0.0.1 too; none are published on internal networks.
        sysctl.enable_route_localnet(bridge, on=not internal)
        if net.name != "bridge":
            with contextlib.suppress(OSError):
                await self.resolver.start(str(pool.gateway), forward=not internal)

    async def shutdown(self) -> None:
        for net in self._records():
            if net.driver == "bridge" and net.name != "bridge":
                with contextlib.suppress(Exception):
                    await self.resolver.stop(str(bridgeplan.pool_of(net).gateway))
        with contextlib.suppress(BerthError, OSError):  # nothing mounted under the data root after a clean stop
            netns.release_netns_dir(self._netns_dir)

    def drop_netns(self, cid: str) -> bool:
        """Delete the namespace a start the daemon did not live to finish made for *cid* (recovery);
        False when there is none."""
        path = self._netns_dir / cid
        if not os.path.lexists(path):
            return False
        netns.delete_netns(path)
        return True

    # -- API ---------------------------------------------------------------------------
    async def create(self, req: NetworkCreateRequest) -> NetworkRecord:
        """Make a bridge network: its record, then its bridge, rules and resolver.

        Raises:
            InvalidArgument: no name, another driver, a bad or unsupported IPAM configuration.
            Conflict: the name is taken, or the subnet overlaps another network's.
        """
        if not req.name:
            raise InvalidArgument("a network needs a name")
        if req.driver != "bridge":
            raise InvalidArgument(f"network driver {req.driver!r} is not supported: berth has bridge networks")
        async with self.lock:
            records = self._records()
            if any(n.name == req.name for n in records):
                raise Conflict(f"network with name {req.name} already exists")
            net = self._plan(req, records)
            self._db.put_network(net.to_doc())
            try:
                await self._realize(net)
            except BaseException:
                self._db.delete_network(net.id)
                with contextlib.suppress(Exception):  # e.g. --ipv6 on a host without IPv6: no half-made bridge
                    await self._unrealize(net)
                raise
        self._events.publish("network", "create", net.id, {"name": req.name, "type": "bridge"})
        return net

    def _plan(self, req: NetworkCreateRequest, records: list[NetworkRecord]) -> NetworkRecord:
        """The new network's record: its IPv4 pool (given, else a free one), its IPv6 entry, reserved addresses."""
        cfg, cfg6 = ipam6.split_configs(req.ipam_config)
        existing = [ipam.parse_subnet(n.ipam[0].subnet) for n in records if n.driver == "bridge" and n.ipam]
        config6 = self._plan6(cfg6, req.enable_ipv6, records)
        if cfg.subnet:
            pool = ipam.Pool.parse(cfg.subnet, cfg.gateway or None, cfg.ip_range or None)
            ipam.check_overlap(pool.subnet, existing)
        else:
            taken = existing + [ipam.parse_subnet(n) for n in netlink.host_networks() if ":" not in n]
            pool = ipam.Pool.parse(str(ipam.pick_subnet(taken)), cfg.gateway or None, cfg.ip_range or None)
        config = bridgeplan.ipam_config(str(pool.subnet), str(pool.gateway),
                                        str(pool.ip_range) if pool.ip_range else None,
                                        ipam.auxiliary_addresses(pool, cfg.aux))
        if req.ipam_driver != "default":
            raise InvalidArgument(f"IPAM driver {req.ipam_driver!r} is not supported: berth has the "
                                  "default IPAM driver")
        return bridgeplan.new_network(req.name, "bridge", [config, *config6], internal=req.internal,
                                      labels=req.labels, options=req.options, attachable=req.attachable,
                                      ipv6=req.enable_ipv6, ipam_options=req.ipam_options)

    @staticmethod
    def _plan6(cfg6: IpamEntry | None, enable6: bool, records: list[NetworkRecord]) -> list[IpamEntry]:
        """The new network's IPv6 IPAM.Config entry, checked against every other network's (bridgeplan.plan6)."""
        existing6 = [c.subnet for n in records if n.driver == "bridge" for c in n.ipam[1:] if c.is_v6 and c.subnet]
        return bridgeplan.plan6(cfg6, enable6, existing6)

    def listing(self, filters: Mapping[str, list[str]] | None = None) -> list[NetworkDetails]:
        """The networks that pass *filters* (bridgeplan.matches), by name."""
        nets = [n for n in self._records() if not filters or bridgeplan.matches(n, filters)]
        return [self._details(n) for n in sorted(nets, key=lambda n: n.name)]

    def inspect(self, ref: str) -> NetworkDetails:
        return self._details(self.get(ref))

    def _details(self, net: NetworkRecord) -> NetworkDetails:
        members = tuple(NetworkMember(c.id, c.name, c.record.endpoints[net.id]) for c in self._containers()
                        if c.running and net.id in c.record.endpoints)
        return NetworkDetails(net, members)

    async def remove(self, ref: str) -> None:
        net = self.get(ref)
        if net.name in PREDEFINED:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        users = [c.id for c in self._containers() if net.id in c.record.endpoints or self.wants(c, net)]
        if users:
            raise Conflict(f"error while removing network: network {net.name} id {net.id} has active "
                           f"endpoints ({', '.join(u[:12] for u in users)}): stop or disconnect them first")
        async with self.lock:
            await self._unrealize(net)
            self._db.delete_network(net.id)
        self._events.publish("network", "destroy", net.id, {"name": net.name, "type": "bridge"})

    async def _unrealize(self, net: NetworkRecord) -> None:
        with contextlib.suppress(Exception):
            await self.resolver.stop(str(bridgeplan.pool_of(net).gateway))
        await nftables.remove_network(net.id, table=self._table)
        netlink.delete_bridge(bridgeplan.bridge_name(net))

    async def prune(self, filters: Mapping[str, list[str]] | None = None) -> list[str]:
        """Remove the unused user-defined networks that pass *filters*; their names."""
        deleted = []
        for net in self._records():
            if net.name in PREDEFINED or (filters and not bridgeplan.matches(net, filters)):
                continue
            try:
                await self.remove(net.id)
                deleted.append(net.name)
            except Conflict:
                continue
        self._events.publish("network", "prune", "", {"reclaimed": "0"})  # as Docker: no bytes to count
        return deleted

    # -- containers ------------------------------------------------------------------
    def wants(self, c: Container, net: NetworkRecord) -> bool:
        """Is *c* configured to be on network *net* (running or not)?"""
        wanted = self.requested(c)
        return net.name in wanted or net.id in wanted

    @staticmethod
    def requested(c: Container) -> dict[str, EndpointSettings]:
        """The networks a container is on: name -> endpoint settings (aliases, IPAMConfig, ...)."""
        return endpoint_settings.requested(c.record)

    def plan_endpoints(self, mode: str, given: dict[str, EndpointSettings]) -> dict[str, EndpointSettings]:
        """A create request's NetworkingConfig (parsed: network name or id -> settings) checked, keyed by
        network name, the NetworkMode's first.

        The result is the record's EndpointsConfig (with EndpointsListed set): every
        network the container is on, so a disconnect never has to change NetworkMode.

        Raises:
            InvalidArgument: a bad entry, a network that does not exist, or one the mode cannot join.
        """
        if not endpoint_settings.bridged(mode):
            for key, cfg in given.items():
                if key != mode and cfg.configured:  # the CLI names the mode's own pseudo-network
                    raise InvalidArgument(endpoint_settings.NO_NETWORK if mode == "none" else
                                          endpoint_settings.SHARED_NETWORK)
            return {}
        out: dict[str, EndpointSettings] = {}
        primary = self.get("bridge" if mode in ("default", "bridge") else mode)
        out[primary.name] = EndpointSettings(network_id=primary.id)  # first: eth0 and the default route
        for key, cfg in given.items():
            try:
                net = self.get("bridge" if key == "default" else key)
            except NotFound as exc:  # 400, not 404: a 404 makes the docker CLI try to pull the image
                raise InvalidArgument(f"{exc}: create it with `docker network create {key}`, or leave it out of "
                                      "NetworkingConfig") from None
            self.check_joinable(mode, net)
            self.check_endpoint(net, cfg)
            out[net.name] = dataclasses.replace(cfg, network_id=net.id)
        return out

    def check_joinable(self, mode: str, net: NetworkRecord) -> None:
        """Refuse joining *net* from NetworkMode *mode*, with Docker's messages."""
        if net.driver == "host":
            raise InvalidArgument(endpoint_settings.HOST_NETWORK)
        if net.driver == "null" or mode == "none":
            raise InvalidArgument(endpoint_settings.NO_NETWORK)
        if not endpoint_settings.bridged(mode):
            raise InvalidArgument(endpoint_settings.SHARED_NETWORK)
        if net.driver != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {net.name}: only bridge "
                                  "networks can be joined")

    def check_endpoint(self, net: NetworkRecord, cfg: EndpointSettings) -> None:
        """Checks of one endpoint's settings against its network (at create and connect, as Docker 1.44+)."""
        if not endpoint_settings.user_defined(net.name):
            if cfg.ipv4 or cfg.ipv6:
                raise InvalidArgument(endpoint_settings.IP_ON_DEFAULT)
            if cfg.aliases:
                raise InvalidArgument(endpoint_settings.ALIAS_ON_DEFAULT)
        wanted = cfg.ipv4
        if wanted and ipaddress.IPv4Address(wanted) not in bridgeplan.pool_of(net).subnet:
            raise InvalidArgument(f"invalid IPv4Address {wanted}: no configured subnet or ip-range contain the IP "
                                  f"address {wanted} (network {net.name} is {bridgeplan.pool_of(net).subnet})")

    def check_mode(self, mode: str) -> None:
        """Refuse a NetworkMode that names no network (at create, as Docker does)."""
        if mode in ("default", "bridge", "none", "host") or mode.startswith("container:"):
            return
        try:
            self.get(mode)
        except NotFound as exc:  # 400, not 404: a 404 makes the docker CLI try to pull the image
            raise InvalidArgument(f"{exc}: create it with `docker network create {mode}`") from None

    # -- DNS -------------------------------------------------------------------------
    def _served(self, server: str) -> NetworkRecord | None:
        """The user-defined bridge network whose resolver answers on *server* (its gateway)."""
        return next((n for n in self._records() if n.driver == "bridge" and n.ipam
                     and n.ipam[0].gateway == server and n.name != "bridge"), None)

    def lookup(self, server: str, name: str) -> list[str]:
        """Addresses of *name* on the network whose gateway is *server* (the resolver's callback)."""
        name = name.rstrip(".").lower()
        net = self._served(server)
        if net is None:
            return []
        out = []
        for c in self._containers():
            if not c.running:
                continue
            ep = c.record.endpoints.get(net.id)
            if ep is None:
                continue
            names = {c.name.lower(), c.id[:12], c.config.hostname.lower(),
                     *(a.lower() for a in ep.aliases)}
            if name in names:
                out.append(ep.ip)
                if ep.ip6:  # AAAA, on a network with IPv6
                    out.append(ep.ip6)
        return out

    def link_lookup(self, server: str, client: str, name: str) -> list[str]:
        """Addresses of *name* as a legacy link alias of the container at *client* on the network of *server*.

        `Links` in a user network's endpoint settings ("target:alias") make *alias* a
        name of *target* for the linking container only, as with Docker.
        """
        name = name.rstrip(".").lower()
        net = self._served(server)
        if net is None:
            return []
        running = [c for c in self._containers() if c.running and net.id in c.record.endpoints]
        asker = next((c for c in running if client in (c.record.endpoints[net.id].ip,
                                                       c.record.endpoints[net.id].ip6)), None)
        if asker is None:
            return []
        settings = self.requested(asker).get(net.name)
        for link in (settings.links if settings is not None else None) or ():
            target, _, alias = link.partition(":")
            target = target.lstrip("/")
            if (alias or target).lower() != name:
                continue
            for c in running:
                if c.name == target or (len(target) >= 12 and c.id.startswith(target)):
                    ep = c.record.endpoints[net.id]
                    return [ep.ip, *([ep.ip6] if ep.ip6 else [])]
        return []

    # -- leftovers ---------------------------------------------------------------------
    def netns_path(self, cid: str) -> str:
        return str(self._netns_dir / cid)

    def leftovers(self) -> list[str]:
        """Namespaces of containers that no longer exist (cleaned at start)."""
        known = {c.id for c in self._containers()}
        if not self._netns_dir.is_dir():
            return []
        return [n for n in os.listdir(self._netns_dir) if n not in known]


__all__ = ["IpamEntry", "NetworkCreateRequest", "NetworkDetails", "NetworkMember", "NetworkRecord", "Networks",
           "PREDEFINED"]
