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
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.host import netlink, netns, nftables, nftrules, sysctl
from berth.metadata.db import Database
from berth.network import bridgeplan, ipam, ipam6
from berth.network.bridgeplan import DEFAULT_BRIDGE, MTU, PREDEFINED
from berth.network.dns import Resolver
from berth.services import endpoints as endpoint_settings
from berth.services.events import Events
from berth.services.records import Container

log = logging.getLogger(__name__)



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
    def _records(self) -> list[dict[str, Any]]:
        return [doc for _, doc in self._db.networks()]

    def get(self, ref: str) -> dict[str, Any]:
        """A network by name, full id or unique id prefix."""
        docs = self._records()
        for doc in docs:
            if doc["Name"] == ref or doc["Id"] == ref:
                return doc
        matches = [d for d in docs if ref and d["Id"].startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"network {ref} not found")

    # -- daemon start ----------------------------------------------------------------
    async def startup(self) -> None:
        """Make the predefined networks' records, then every bridge network's kernel objects."""
        names = {d["Name"] for d in self._records()}
        for name in PREDEFINED:
            if name not in names:
                driver = {"bridge": "bridge", "host": "host", "none": "null"}[name]
                options = {"com.docker.network.bridge.name": self._bridge,
                           "com.docker.network.bridge.default_bridge": "true"} if name == "bridge" else {}
                config = [bridgeplan.default_bridge_config(self._bip)] if name == "bridge" else []
                self._db.put_network(bridgeplan.new_network_doc(name, driver, config, options=options))
        await nftables.ensure_table(self._table)
        netns.prepare_netns_dir(self._netns_dir)
        for stale in self.leftovers():  # containers removed while the daemon was down
            netns.delete_netns(self._netns_dir / stale)
        sysctl.enable_ip_forward()
        for doc in self._records():
            if doc["Driver"] == "bridge":
                await self._realize(doc)
        known = {d["Id"] for d in self._records()} | {c.id for c in self._containers() if c.record.ports}
        for owner in await nftables.owners(table=self._table) - known:  # rules of containers gone while down
            await nftables.remove_owner(owner, table=self._table)

    async def _realize(self, doc: dict[str, Any]) -> None:
        bridge = bridgeplan.bridge_name(doc)
        pool, pool6 = bridgeplan.pool_of(doc), bridgeplan.pool6_of(doc)
        internal = bridgeplan.is_internal(doc)
        # The rules first: they guard the host's loopback, which route_localnet opens to the bridge.
        await nftables.add_network(doc["Id"], bridge, str(pool.subnet), table=self._table,
                                   internal=internal, gateway=str(pool.gateway),
                                   subnet6=str(pool6.subnet) if pool6 else "")
        netlink.ensure_bridge(bridge, pool.gateway_cidr, MTU)
        if pool6 is not None:  # --ipv6: the gateway address, guarded by the ip6 rules just set
            sysctl.enable_ipv6(bridge, pool6.gateway_cidr)
        else:
            sysctl.disable_ipv6(bridge)  # IPv4-only networks: no link-local way to the host's [::] services
        # Published ports answer on 127.0.0.1 too; none are published on internal networks.
        sysctl.enable_route_localnet(bridge, on=not internal)
        if doc["Name"] != "bridge":
            with contextlib.suppress(OSError):
                await self.resolver.start(str(pool.gateway), forward=not internal)

    async def shutdown(self) -> None:
        for doc in self._records():
            if doc["Driver"] == "bridge" and doc["Name"] != "bridge":
                with contextlib.suppress(Exception):
                    await self.resolver.stop(str(bridgeplan.pool_of(doc).gateway))

    # -- API ---------------------------------------------------------------------------
    async def create(self, body: dict[str, Any]) -> dict[str, str]:
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidArgument("a network needs a name")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported: berth has bridge networks")
        async with self.lock:
            if any(d["Name"] == name for d in self._records()):
                raise Conflict(f"network with name {name} already exists")
            cfg, cfg6 = ipam6.split_configs((body.get("IPAM") or {}).get("Config") or [])
            existing = [ipam.parse_subnet(d["IPAM"]["Config"][0]["Subnet"]) for d in self._records()
                        if d["Driver"] == "bridge" and d["IPAM"]["Config"]]
            enable6 = bool(body.get("EnableIPv6"))
            config6 = self._plan6(cfg6, enable6)
            if cfg.get("Subnet"):
                pool = ipam.Pool.parse(str(cfg["Subnet"]), cfg.get("Gateway"), cfg.get("IPRange"))
                ipam.check_overlap(pool.subnet, existing)
            else:
                taken = existing + [ipam.parse_subnet(n) for n in netlink.host_networks() if ":" not in n]
                pool = ipam.Pool.parse(str(ipam.pick_subnet(taken)), cfg.get("Gateway"), cfg.get("IPRange"))
            config: dict[str, Any] = bridgeplan.ipam_config(str(pool.subnet), str(pool.gateway),
                                                       str(pool.ip_range) if pool.ip_range else None)
            aux = ipam.auxiliary_addresses(pool, cfg.get("AuxiliaryAddresses"))
            if aux:
                config["AuxiliaryAddresses"] = aux
            ipam_body = body.get("IPAM") or {}
            if (ipam_body.get("Driver") or "default") != "default":
                raise InvalidArgument(f"IPAM driver {ipam_body['Driver']!r} is not supported: berth has the "
                                      "default IPAM driver")
            doc = bridgeplan.new_network_doc(name, "bridge", [config, *config6], internal=bool(body.get("Internal")),
                                labels=dict(body.get("Labels") or {}), options=dict(body.get("Options") or {}),
                                attachable=bool(body.get("Attachable")), ipv6=enable6,
                                ipam_options=dict(ipam_body.get("Options") or {}))
            self._db.put_network(doc)
            try:
                await self._realize(doc)
            except BaseException:
                self._db.delete_network(doc["Id"])
                with contextlib.suppress(Exception):  # e.g. --ipv6 on a host without IPv6: no half-made bridge
                    await self._unrealize(doc)
                raise
        self._events.publish("network", "create", doc["Id"], {"name": name, "type": "bridge"})
        return {"Id": doc["Id"], "Warning": ""}

    def _plan6(self, cfg6: dict[str, Any] | None, enable6: bool) -> list[dict[str, str]]:
        """The new network's IPv6 IPAM.Config entry, checked against every other network's (bridgeplan.plan6)."""
        existing6 = [c["Subnet"] for d in self._records() if d["Driver"] == "bridge"
                     for c in d["IPAM"]["Config"][1:] if ipam6.is_v6_config(c) and c.get("Subnet")]
        return bridgeplan.plan6(cfg6, enable6, existing6)

    def listing(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        out = []
        for doc in self._records():
            if filters and not bridgeplan.matches(doc, filters):
                continue
            out.append(self.inspect(doc["Id"]))
        out.sort(key=lambda d: d["Name"])
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        doc = dict(self.get(ref))
        containers = {}
        for c in self._containers():
            ep = endpoint_settings.attached(c.record).get(doc["Id"])
            if ep is not None and c.running:
                containers[c.id] = {"Name": c.name, "EndpointID": ep.host_if, "MacAddress": ep.mac,
                                    "IPv4Address": f"{ep.ip}/{ep.prefix}",
                                    "IPv6Address": f"{ep.ip6}/{ep.prefix6}" if ep.ip6 else ""}
        doc["Containers"] = containers
        return doc

    async def remove(self, ref: str) -> None:
        doc = self.get(ref)
        if doc["Name"] in PREDEFINED:
            raise Conflict(f"{doc['Name']} is a pre-defined network and cannot be removed")
        users = [c.id for c in self._containers() if doc["Id"] in endpoint_settings.attached(c.record) or
                 self.wants(c, doc)]
        if users:
            raise Conflict(f"error while removing network: network {doc['Name']} id {doc['Id']} has active "
                           f"endpoints ({', '.join(u[:12] for u in users)}): stop or disconnect them first")
        async with self.lock:
            await self._unrealize(doc)
            self._db.delete_network(doc["Id"])
        self._events.publish("network", "destroy", doc["Id"], {"name": doc["Name"], "type": "bridge"})

    async def _unrealize(self, doc: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.resolver.stop(str(bridgeplan.pool_of(doc).gateway))
        await nftables.remove_network(doc["Id"], table=self._table)
        netlink.delete_bridge(bridgeplan.bridge_name(doc))

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        deleted = []
        for doc in self._records():
            if doc["Name"] in PREDEFINED or (filters and not bridgeplan.matches(doc, filters)):
                continue
            try:
                await self.remove(doc["Id"])
                deleted.append(doc["Name"])
            except Conflict:
                continue
        self._events.publish("network", "prune", "", {"reclaimed": "0"})  # as Docker: no bytes to count
        return {"NetworksDeleted": deleted or None}

    # -- containers ------------------------------------------------------------------
    def wants(self, c: Container, doc: dict[str, Any]) -> bool:
        """Is *c* configured to be on network *doc* (running or not)?"""
        return doc["Name"] in self.requested(c) or doc["Id"] in self.requested(c)

    @staticmethod
    def requested(c: Container) -> dict[str, dict[str, Any]]:
        """The networks a container is on: name -> endpoint settings (aliases, IPAMConfig, ...)."""
        return endpoint_settings.requested(c.record)

    def plan_endpoints(self, mode: str, networking_config: Any) -> dict[str, dict[str, Any]]:
        """NetworkingConfig.EndpointsConfig at create: checked, keyed by network name, the NetworkMode's first.

        The result is the record's EndpointsConfig (with EndpointsListed set): every
        network the container is on, so a disconnect never has to change NetworkMode.

        Raises:
            InvalidArgument: a bad entry, a network that does not exist, or one the mode cannot join.
        """
        given = endpoint_settings.parse_networking_config(networking_config)
        if not endpoint_settings.bridged(mode):
            for key, cfg in given.items():
                if key != mode and any(cfg.values()):  # the CLI names the mode's own pseudo-network
                    raise InvalidArgument(endpoint_settings.NO_NETWORK if mode == "none" else
                                          endpoint_settings.SHARED_NETWORK)
            return {}
        out: dict[str, dict[str, Any]] = {}
        primary = self.get("bridge" if mode in ("default", "bridge") else mode)
        out[primary["Name"]] = {"NetworkID": primary["Id"]}  # first: eth0 and the default route
        for key, cfg in given.items():
            try:
                doc = self.get("bridge" if key == "default" else key)
            except NotFound as exc:  # 400, not 404: a 404 makes the docker CLI try to pull the image
                raise InvalidArgument(f"{exc}: create it with `docker network create {key}`, or leave it out of "
                                      "NetworkingConfig") from None
            self.check_joinable(mode, doc)
            self.check_endpoint(doc, cfg)
            out[doc["Name"]] = {**cfg, "NetworkID": doc["Id"]}
        return out

    def check_joinable(self, mode: str, doc: dict[str, Any]) -> None:
        """Refuse joining *doc* from NetworkMode *mode*, with Docker's messages."""
        if doc["Driver"] == "host":
            raise InvalidArgument(endpoint_settings.HOST_NETWORK)
        if doc["Driver"] == "null" or mode == "none":
            raise InvalidArgument(endpoint_settings.NO_NETWORK)
        if not endpoint_settings.bridged(mode):
            raise InvalidArgument(endpoint_settings.SHARED_NETWORK)
        if doc["Driver"] != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {doc['Name']}: only bridge "
                                  "networks can be joined")

    def check_endpoint(self, doc: dict[str, Any], cfg: dict[str, Any]) -> None:
        """Checks of one endpoint's settings against its network (at create and connect, as Docker 1.44+)."""
        ipam_cfg = cfg.get("IPAMConfig") or {}
        if not endpoint_settings.user_defined(doc["Name"]):
            if ipam_cfg.get("IPv4Address") or ipam_cfg.get("IPv6Address"):
                raise InvalidArgument(endpoint_settings.IP_ON_DEFAULT)
            if cfg.get("Aliases"):
                raise InvalidArgument(endpoint_settings.ALIAS_ON_DEFAULT)
        wanted = ipam_cfg.get("IPv4Address")
        if wanted and ipaddress.IPv4Address(wanted) not in bridgeplan.pool_of(doc).subnet:
            raise InvalidArgument(f"invalid IPv4Address {wanted}: no configured subnet or ip-range contain the IP "
                                  f"address {wanted} (network {doc['Name']} is {bridgeplan.pool_of(doc).subnet})")

    def check_mode(self, mode: str) -> None:
        """Refuse a NetworkMode that names no network (at create, as Docker does)."""
        if mode in ("default", "bridge", "none", "host") or mode.startswith("container:"):
            return
        try:
            self.get(mode)
        except NotFound as exc:  # 400, not 404: a 404 makes the docker CLI try to pull the image
            raise InvalidArgument(f"{exc}: create it with `docker network create {mode}`") from None

    # -- DNS -------------------------------------------------------------------------
    def lookup(self, server: str, name: str) -> list[str]:
        """Addresses of *name* on the network whose gateway is *server* (the resolver's callback)."""
        name = name.rstrip(".").lower()
        doc = next((d for d in self._records() if d["Driver"] == "bridge" and d["IPAM"]["Config"]
                    and d["IPAM"]["Config"][0]["Gateway"] == server and d["Name"] != "bridge"), None)
        if doc is None:
            return []
        out = []
        for c in self._containers():
            if not c.running:
                continue
            ep = endpoint_settings.attached(c.record).get(doc["Id"])
            if ep is None:
                continue
            names = {c.name.lower(), c.id[:12], str(c.config.get("Hostname") or "").lower(),
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
        doc = next((d for d in self._records() if d["Driver"] == "bridge" and d["IPAM"]["Config"]
                    and d["IPAM"]["Config"][0]["Gateway"] == server and d["Name"] != "bridge"), None)
        if doc is None:
            return []
        running = [c for c in self._containers() if c.running and doc["Id"] in endpoint_settings.attached(c.record)]
        asker = next((c for c in running if client in (endpoint_settings.attached(c.record)[doc["Id"]].ip,
                                                       endpoint_settings.attached(c.record)[doc["Id"]].ip6)), None)
        if asker is None:
            return []
        links = (self.requested(asker).get(doc["Name"]) or {}).get("Links") or []
        for link in links:
            target, _, alias = str(link).partition(":")
            target = target.lstrip("/")
            if (alias or target).lower() != name:
                continue
            for c in running:
                if c.name == target or (len(target) >= 12 and c.id.startswith(target)):
                    ep = endpoint_settings.attached(c.record)[doc["Id"]]
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


__all__ = ["Networks", "PREDEFINED"]
