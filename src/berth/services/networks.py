"""Networks: the default bridge, user-defined bridge networks, and each container's place on them.

Strategy: a network is a record (DB) plus kernel objects made from it: a
Linux bridge, nftables rules in berth's own table (masquerade out, isolation
from other networks, DNAT for published ports) and, for user-defined
networks, the embedded DNS resolver served on the bridge's gateway address.
Kernel objects are made again from the records at every daemon start
(idempotent), so a restart or crash never leaves a network half-there.

A container on bridge networks gets a network namespace of its own, bound
at <run>/netns/<id> before its runtime starts (runc joins it through
config.json); each network adds a veth pair (host end on the bridge) with an
address from the network's pool. Addresses are allocated at start and kept
in the container's record (NetworkSettings) so a daemon restart knows them;
they are released, and the veths, namespace and port rules removed, when the
container stops. `lookup` answers the DNS resolver: container names, aliases
and short ids on the network the query arrived from.

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
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth import timefmt
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.host import netlink, nftables
from berth.metadata.db import Database
from berth.network import ipam, ipam6
from berth.network.dns import Resolver
from berth.runtime.base import VmNic
from berth.services import endpoints as endpoint_settings
from berth.services.events import Events

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
DEFAULT_BRIDGE = "berth0"
DEFAULT_SUBNET = "172.17.0.0/16"  # the default bridge's, unless berthd --bip says otherwise
MTU = 1500


@dataclass
class Endpoint:
    """A container's attachment to one network, as NetworkSettings.Networks shows it."""

    network: str  # network id
    ip: str
    prefix: int
    gateway: str
    mac: str
    host_if: str
    aliases: list[str] = field(default_factory=list)
    name: str = ""  # the network's name, for NetworkSettings.Networks
    ip6: str = ""  # on a network with IPv6 (--ipv6): the container's address, prefix and gateway
    prefix6: int = 0
    gateway6: str = ""
    ctr_if: str = ""  # its name in the container's namespace (eth0, eth1, ...)

    def settings(self, name: str) -> dict[str, Any]:
        return {"IPAMConfig": None, "Links": None, "Aliases": self.aliases or None, "MacAddress": self.mac,
                "NetworkID": self.network, "EndpointID": self.host_if, "Gateway": self.gateway,
                "IPAddress": self.ip, "IPPrefixLen": self.prefix, "IPv6Gateway": self.gateway6,
                "GlobalIPv6Address": self.ip6, "GlobalIPv6PrefixLen": self.prefix6, "DriverOpts": None,
                "DNSNames": [name, *self.aliases]}


@dataclass(frozen=True)
class Attached:
    """What a started container's networking needs written into its bundle."""

    netns: str  # the namespace path for config.json ("" = the runtime makes a loopback-only one)
    hosts: list[tuple[str, str]]  # (address, name) lines for /etc/hosts
    nameservers: list[str]  # for /etc/resolv.conf; empty = the host's
    nic: VmNic | None = None  # VM isolation: the card the VM driver gives its guest


class Networks:
    def __init__(self, db: Database, run_dir: str, events: Events,
                 containers: Callable[[], Iterable[Any]], *, bridge: str = DEFAULT_BRIDGE,
                 bip: str = "", table: str = nftables.TABLE, upstream_resolv: str = "") -> None:
        self._db, self._events = db, events
        self._containers = containers  # the live Container objects (for DNS and in-use checks)
        self._netns_dir = Path(run_dir) / "netns"
        self._bridge = bridge
        self._bip = bip  # the default bridge's gateway/prefix, e.g. 172.17.0.1/16
        self._table = table
        self._lock = asyncio.Lock()
        self.resolver = Resolver(self.lookup, upstream_resolv, client_lookup=self.link_lookup)

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

    def _bridge_of(self, doc: dict[str, Any]) -> str:
        return str(doc["Options"].get("com.docker.network.bridge.name") or f"br-{doc['Id'][:12]}")

    def _pool(self, doc: dict[str, Any]) -> ipam.Pool:
        cfg = doc["IPAM"]["Config"][0]
        return ipam.Pool.parse(cfg["Subnet"], cfg["Gateway"], cfg.get("IPRange") or None)

    @staticmethod
    def _pool6(doc: dict[str, Any]) -> ipam6.Pool6 | None:
        """The network's IPv6 pool; None unless it was made with --ipv6 (EnableIPv6)."""
        if not doc.get("EnableIPv6") or doc["Driver"] != "bridge":
            return None
        cfg = next((c for c in doc["IPAM"]["Config"][1:] if ipam6.is_v6_config(c)), None)
        return ipam6.Pool6.parse(cfg["Subnet"], cfg["Gateway"], cfg.get("IPRange") or None) if cfg else None

    # -- daemon start ----------------------------------------------------------------
    async def startup(self) -> None:
        """Make the predefined networks' records, then every bridge network's kernel objects."""
        names = {d["Name"] for d in self._records()}
        for name in PREDEFINED:
            if name not in names:
                driver = {"bridge": "bridge", "host": "host", "none": "null"}[name]
                options = {"com.docker.network.bridge.name": self._bridge,
                           "com.docker.network.bridge.default_bridge": "true"} if name == "bridge" else {}
                config = [self._default_config()] if name == "bridge" else []
                self._db.put_network(self._new_doc(name, driver, config, options=options))
        await nftables.ensure_table(self._table)
        netlink.prepare_netns_dir(self._netns_dir)
        for stale in self.leftovers():  # containers removed while the daemon was down
            netlink.delete_netns(self._netns_dir / stale)
        netlink.enable_ip_forward()
        for doc in self._records():
            if doc["Driver"] == "bridge":
                await self._realize(doc)
        known = {d["Id"] for d in self._records()} | {c.id for c in self._containers() if c.doc.get("Ports")}
        for owner in await nftables.owners(table=self._table) - known:  # rules of containers gone while down
            await nftables.remove_owner(owner, table=self._table)

    async def _realize(self, doc: dict[str, Any]) -> None:
        bridge = self._bridge_of(doc)
        pool, pool6 = self._pool(doc), self._pool6(doc)
        internal = _internal(doc)
        # The rules first: they guard the host's loopback, which route_localnet opens to the bridge.
        await nftables.add_network(doc["Id"], bridge, str(pool.subnet), table=self._table,
                                   internal=internal, gateway=str(pool.gateway),
                                   subnet6=str(pool6.subnet) if pool6 else "")
        netlink.ensure_bridge(bridge, pool.gateway_cidr, MTU)
        if pool6 is not None:  # --ipv6: the gateway address, guarded by the ip6 rules just set
            netlink.enable_ipv6(bridge, pool6.gateway_cidr)
        else:
            netlink.disable_ipv6(bridge)  # IPv4-only networks: no link-local way to the host's [::] services
        # Published ports answer on 127.0.0.1 too; none are published on internal networks.
        netlink.enable_route_localnet(bridge, on=not internal)
        if doc["Name"] != "bridge":
            with contextlib.suppress(OSError):
                await self.resolver.start(str(pool.gateway), forward=not internal)

    async def shutdown(self) -> None:
        for doc in self._records():
            if doc["Driver"] == "bridge" and doc["Name"] != "bridge":
                with contextlib.suppress(Exception):
                    await self.resolver.stop(str(self._pool(doc).gateway))

    # -- API ---------------------------------------------------------------------------
    def _default_config(self) -> dict[str, str]:
        if not self._bip:
            return self._ipam_config(DEFAULT_SUBNET, None, None)
        iface = ipaddress.ip_interface(self._bip)
        return self._ipam_config(str(iface.network), str(iface.ip), None)

    @staticmethod
    def _ipam_config(subnet: str, gateway: str | None, ip_range: str | None) -> dict[str, str]:
        net = ipaddress.ip_network(subnet, strict=False)
        gw = gateway or str(next(net.hosts()))
        out = {"Subnet": str(net), "Gateway": gw}
        if ip_range:
            out["IPRange"] = ip_range
        return out

    def _new_doc(self, name: str, driver: str, config: list[dict[str, Any]], *, internal: bool = False,
                 labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
                 attachable: bool = False, ipv6: bool = False,
                 ipam_options: dict[str, str] | None = None) -> dict[str, Any]:
        # IPAM.Options as sent (null when none were), as Docker shows them
        return {"Name": name, "Id": secrets.token_hex(32), "Created": timefmt.now(), "Scope": "local",
                "Driver": driver, "EnableIPv6": ipv6,
                "IPAM": {"Driver": "default", "Options": ipam_options or None, "Config": config},
                "Internal": internal, "Attachable": attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
                "ConfigOnly": False, "Options": options or {}, "Labels": labels or {}}

    async def create(self, body: dict[str, Any]) -> dict[str, str]:
        name = str(body.get("Name") or "")
        if not name:
            raise InvalidArgument("a network needs a name")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported: berth has bridge networks")
        async with self._lock:
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
            config: dict[str, Any] = self._ipam_config(str(pool.subnet), str(pool.gateway),
                                                       str(pool.ip_range) if pool.ip_range else None)
            aux = ipam.auxiliary_addresses(pool, cfg.get("AuxiliaryAddresses"))
            if aux:
                config["AuxiliaryAddresses"] = aux
            ipam_body = body.get("IPAM") or {}
            if (ipam_body.get("Driver") or "default") != "default":
                raise InvalidArgument(f"IPAM driver {ipam_body['Driver']!r} is not supported: berth has the "
                                      "default IPAM driver")
            doc = self._new_doc(name, "bridge", [config, *config6], internal=bool(body.get("Internal")),
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
        """The IPv6 IPAM.Config entry of a new network ([] for none), checked against the others.

        --ipv6 without an IPv6 subnet gets a random unique local /64 (Docker 27+'s
        behaviour). An IPv6 subnet without --ipv6 is recorded and left unused, as Docker does.
        """
        existing6 = [c["Subnet"] for d in self._records() if d["Driver"] == "bridge"
                     for c in d["IPAM"]["Config"][1:] if ipam6.is_v6_config(c) and c.get("Subnet")]
        if cfg6 is not None and not cfg6.get("Subnet"):
            raise InvalidArgument("an IPv6 --gateway or --ip-range needs its IPv6 --subnet")
        if cfg6 is not None:
            pool6 = ipam6.Pool6.parse(str(cfg6["Subnet"]), cfg6.get("Gateway"), cfg6.get("IPRange"))
            ipam6.check_overlap6(pool6.subnet, existing6)
        elif enable6:
            pool6 = ipam6.Pool6.parse(str(ipam6.ula_subnet(secrets.token_bytes(5), existing6)))
        else:
            return []
        return [pool6.config()]

    def listing(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        out = []
        for doc in self._records():
            if filters and not _matches(doc, filters):
                continue
            out.append(self.inspect(doc["Id"]))
        out.sort(key=lambda d: d["Name"])
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        doc = dict(self.get(ref))
        containers = {}
        for c in self._containers():
            ep = self.endpoints(c).get(doc["Id"])
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
        users = [c.id for c in self._containers() if doc["Id"] in self.endpoints(c) or
                 self._wants(c, doc)]
        if users:
            raise Conflict(f"error while removing network: network {doc['Name']} id {doc['Id']} has active "
                           f"endpoints ({', '.join(u[:12] for u in users)}): stop or disconnect them first")
        async with self._lock:
            await self._unrealize(doc)
            self._db.delete_network(doc["Id"])
        self._events.publish("network", "destroy", doc["Id"], {"name": doc["Name"], "type": "bridge"})

    async def _unrealize(self, doc: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.resolver.stop(str(self._pool(doc).gateway))
        await nftables.remove_network(doc["Id"], table=self._table)
        netlink.delete_bridge(self._bridge_of(doc))

    async def prune(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        deleted = []
        for doc in self._records():
            if doc["Name"] in PREDEFINED or (filters and not _matches(doc, filters)):
                continue
            try:
                await self.remove(doc["Id"])
                deleted.append(doc["Name"])
            except Conflict:
                continue
        self._events.publish("network", "prune", "", {"reclaimed": "0"})  # as Docker: no bytes to count
        return {"NetworksDeleted": deleted or None}

    # -- containers ------------------------------------------------------------------
    def _wants(self, c: Any, doc: dict[str, Any]) -> bool:
        """Is *c* configured to be on network *doc* (running or not)?"""
        return doc["Name"] in self.requested(c) or doc["Id"] in self.requested(c)

    @staticmethod
    def requested(c: Any) -> dict[str, dict[str, Any]]:
        """The networks a container is on: name -> endpoint settings (aliases, IPAMConfig, ...)."""
        return endpoint_settings.requested(c.doc)

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
            self._check_joinable(mode, doc)
            self._check_endpoint(doc, cfg)
            out[doc["Name"]] = {**cfg, "NetworkID": doc["Id"]}
        return out

    def _check_joinable(self, mode: str, doc: dict[str, Any]) -> None:
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

    def _check_endpoint(self, doc: dict[str, Any], cfg: dict[str, Any]) -> None:
        """Checks of one endpoint's settings against its network (at create and connect, as Docker 1.44+)."""
        ipam_cfg = cfg.get("IPAMConfig") or {}
        if not endpoint_settings.user_defined(doc["Name"]):
            if ipam_cfg.get("IPv4Address") or ipam_cfg.get("IPv6Address"):
                raise InvalidArgument(endpoint_settings.IP_ON_DEFAULT)
            if cfg.get("Aliases"):
                raise InvalidArgument(endpoint_settings.ALIAS_ON_DEFAULT)
        wanted = ipam_cfg.get("IPv4Address")
        if wanted and ipaddress.IPv4Address(wanted) not in self._pool(doc).subnet:
            raise InvalidArgument(f"invalid IPv4Address {wanted}: no configured subnet or ip-range contain the IP "
                                  f"address {wanted} (network {doc['Name']} is {self._pool(doc).subnet})")

    def endpoints(self, c: Any) -> dict[str, Endpoint]:
        """The container's current attachments, by network id (from its record)."""
        out = {}
        for net_id, ep in (c.doc.get("Endpoints") or {}).items():
            out[net_id] = Endpoint(**ep)
        return out

    def check_mode(self, mode: str) -> None:
        """Refuse a NetworkMode that names no network (at create, as Docker does)."""
        if mode in ("default", "bridge", "none", "host") or mode.startswith("container:"):
            return
        try:
            self.get(mode)
        except NotFound as exc:  # 400, not 404: a 404 makes the docker CLI try to pull the image
            raise InvalidArgument(f"{exc}: create it with `docker network create {mode}`") from None

    async def attach(self, c: Any, pid_of: Callable[[str], int], *, vm: bool = False) -> Attached:
        """Prepare the container's networking before its runtime starts.

        With *vm* (VM isolation) the container's card is a tap device on the
        bridge instead of a veth in a namespace: QEMU gives it to the guest, and
        the VM driver hands it to the guest (Attached.nic, passed in CreateOptions).
        """
        host = c.doc["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        if mode == "host":
            return Attached("host", [], [])
        if mode == "none":
            return Attached("", [], [])
        if mode.startswith("container:"):
            return Attached(f"/proc/{pid_of(mode.split(':', 1)[1])}/ns/net", [], [])
        if vm:
            return await self._attach_vm(c)
        self._netns_dir.mkdir(parents=True, exist_ok=True)
        path = self._netns_dir / c.id
        netlink.delete_netns(path)  # a crash's leftover
        netlink.create_netns(path)
        hosts: list[tuple[str, str]] = []
        nameservers: list[str] = []
        try:
            for net_name, cfg in self.requested(c).items():
                doc = self.get(net_name)
                ep = await self._connect_endpoint(c, doc, cfg, path)
                hosts.append((ep.ip, str(c.doc["Config"].get("Hostname") or c.id[:12])))
                if ep.ip6:  # as Docker writes it on a network with IPv6
                    hosts.append((ep.ip6, hosts[-1][1]))
                if doc["Name"] != "bridge":
                    nameservers.append(ep.gateway)
            await self._publish(c)
        except BaseException:
            await self.detach(c)
            raise
        return Attached(str(path), hosts, nameservers[:1])

    async def _attach_vm(self, c: Any) -> Attached:
        wanted = self.requested(c)
        if len(wanted) != 1:
            raise InvalidArgument("a VM-isolated container joins one network (its VM has one network card)")
        (net_name, cfg), = wanted.items()
        doc = self.get(net_name)
        try:
            ep = await self._connect_endpoint(c, doc, cfg, None)
            # No default route on an internal network, in the guest as in a namespace.
            nic = VmNic(tap=ep.host_if, mac=ep.mac, address=f"{ep.ip}/{ep.prefix}",
                        gateway="" if _internal(doc) else ep.gateway)
            await self._publish(c)
        except BaseException:
            await self.detach(c)
            raise
        hostname = str(c.doc["Config"].get("Hostname") or c.id[:12])
        return Attached("", [(ep.ip, hostname)], [ep.gateway] if doc["Name"] != "bridge" else [], nic)

    async def _connect_endpoint(self, c: Any, doc: dict[str, Any], cfg: dict[str, Any],
                                netns: Path | None) -> Endpoint:
        async with self._lock:
            pool = self._pool(doc)
            used = {ep.ip for other in self._containers() if other.id != c.id
                    for ep in self.endpoints(other).values() if ep.network == doc["Id"]}
            used |= set((doc["IPAM"]["Config"][0].get("AuxiliaryAddresses") or {}).values())  # reserved
            wanted = ((cfg.get("IPAMConfig") or {}).get("IPv4Address")) or None
            ip = ipam.allocate(pool, used, wanted)
            prefix = pool.subnet.prefixlen
            host_if = netlink.veth_name(c.id, doc["Id"])
            if netns is None:  # a VM's tap, not a veth
                host_if = "tap" + host_if[len("veth"):]
            aliases = [a for a in (cfg.get("Aliases") or []) if a]
            endpoints = dict(c.doc.get("Endpoints") or {})
            # The default route goes through the first network that has a way out (an internal one has none).
            routed = not _internal(doc) and not any(not self._internal_id(n) for n in endpoints)
            ctr_if = _free_ifname(endpoints)  # a name a disconnect freed is taken again
            ip6, prefix6, gateway6 = self._address6(c, doc, cfg, vm=netns is None)
            # The IPv6 default route: through the first network with IPv6 and a way out.
            routed6 = bool(ip6) and not _internal(doc) and not any(
                e.get("ip6") and not self._internal_id(n) for n, e in endpoints.items())
            ep = Endpoint(doc["Id"], ip, prefix, str(pool.gateway), self._mac(c, doc, cfg, ip), host_if, aliases,
                          doc["Name"], ip6, prefix6, gateway6)
            ep.ctr_if = ctr_if
            endpoints[doc["Id"]] = ep.__dict__
            c.doc["Endpoints"] = endpoints  # recorded before the kernel objects: a crash leaves them findable
        if netns is None:
            netlink.create_tap(host_if, self._bridge_of(doc), MTU)
        else:
            netlink.attach(self._bridge_of(doc), netns, host_if, pool.address_cidr(ip),
                           str(pool.gateway) if routed else None, ep.mac, MTU, ctr_if=ctr_if,
                           address6_cidr=f"{ip6}/{prefix6}" if ip6 else None,
                           gateway6=gateway6 if routed6 else None)
        self._endpoint_event("connect", doc, c.id)
        return ep

    def _endpoint_event(self, action: str, doc: dict[str, Any], cid: str) -> None:
        """`connect`/`disconnect`, as Docker emits them: when an endpoint joins or leaves (a start or a
        stop, or a connect/disconnect of a running container), not when only the configuration changes."""
        self._events.publish("network", action, doc["Id"], {"container": cid, "name": doc["Name"],
                                                           "type": doc.get("Driver") or "bridge"})

    def _address6(self, c: Any, doc: dict[str, Any], cfg: dict[str, Any], *, vm: bool) -> tuple[str, int, str]:
        """(address, prefix, gateway) on a network with IPv6, from --ip6 or the first free one; else ("", 0, "")."""
        pool6 = self._pool6(doc)
        wanted6 = str((cfg.get("IPAMConfig") or {}).get("IPv6Address") or "") or None
        if pool6 is None or vm:
            if wanted6:
                why = ("a VM-isolated container gets IPv4 only" if pool6 is not None else
                       f"network {doc['Name']} has no IPv6: create it with --ipv6")
                raise InvalidArgument(f"invalid IPv6 address {wanted6} (--ip6): {why}")
            return "", 0, ""
        used6 = {ep.ip6 for other in self._containers() if other.id != c.id
                 for ep in self.endpoints(other).values() if ep.network == doc["Id"] and ep.ip6}
        return ipam6.allocate6(pool6, used6, wanted6), pool6.subnet.prefixlen, str(pool6.gateway)

    def _mac(self, c: Any, doc: dict[str, Any], cfg: dict[str, Any], ip: str) -> str:
        """The endpoint's MAC: its own MacAddress (API 1.44+), else Config.MacAddress on the container's
        NetworkMode network (--mac-address, older APIs), else Docker's address-derived one."""
        chosen = cfg.get("MacAddress")
        if not chosen:
            mode = c.doc["HostConfig"].get("NetworkMode") or "default"
            primary = doc["Name"] == "bridge" if mode in ("default", "bridge") else mode in (doc["Name"], doc["Id"])
            chosen = c.doc["Config"].get("MacAddress") if primary else None
        return ipam.parse_mac(chosen) if chosen else ipam.mac_for(ip)

    async def _publish(self, c: Any) -> None:
        rules = self.port_rules(c)
        if rules:
            await nftables.publish(c.id, rules, table=self._table)
        elif c.doc.get("Ports"):
            # Only internal networks: ports are not published there, as with Docker.
            log.info("container %s is only on internal networks: its ports are not published", c.id[:12])
            c.doc["Ports"] = []

    async def _republish(self, c: Any) -> None:
        """Point a running container's published ports at its first routed endpoint again (after a (dis)connect)."""
        if c.doc.get("Ports"):
            await nftables.publish(c.id, self.port_rules(c), table=self._table)

    def _internal_id(self, net_id: str) -> bool:
        try:
            return _internal(self.get(net_id))
        except NotFound:
            return False

    def port_rules(self, c: Any) -> list[nftables.PortRule]:
        """The DNAT rules for the container's published ports (on its first non-internal network's address)."""
        eps = [ep for ep in self.endpoints(c).values() if not self._internal_id(ep.network)]
        if not eps:
            return []
        out = []
        for binding in c.doc.get("Ports") or []:
            out.append(nftables.PortRule(host_ip=binding["HostIp"], host_port=int(binding["HostPort"]),
                                         proto=binding["Proto"], container_ip=eps[0].ip,
                                         container_port=int(binding["Port"])))
        return out

    async def detach(self, c: Any) -> None:
        """Undo attach: port rules, veths, the namespace, the addresses. Safe to call twice."""
        if c.doc.get("Ports"):
            with contextlib.suppress(Exception):
                await nftables.unpublish(c.id, table=self._table)
        for ep in self.endpoints(c).values():
            with contextlib.suppress(Exception):
                netlink.detach(ep.host_if)
            with contextlib.suppress(NotFound):
                self._endpoint_event("disconnect", self.get(ep.network), c.id)
        with contextlib.suppress(Exception):
            netlink.delete_netns(self._netns_dir / c.id)
        c.doc["Endpoints"] = {}

    async def connect(self, net_ref: str, c: Any, cfg: dict[str, Any]) -> None:
        """Join network *net_ref* with settings *cfg* (endpoints.parse_endpoint's): now if running, else at start.

        A container whose NetworkMode is a bridge network joins whatever it was
        disconnected from; only host, none and container:<id> modes are refused.
        """
        doc = self.get(net_ref)
        mode = c.doc["HostConfig"].get("NetworkMode") or "default"
        self._check_joinable(mode, doc)
        if doc["Id"] in self.endpoints(c) or self._wants(c, doc):
            raise Conflict(f"endpoint with name {c.name} already exists in network {doc['Name']}")
        self._check_endpoint(doc, cfg)
        before = c.doc.get("EndpointsConfig"), c.doc.get("EndpointsListed")
        wanted = self.requested(c)  # every network listed from now on, the NetworkMode's included
        wanted[doc["Name"]] = {k: cfg.get(k) for k in endpoint_settings.CONFIG_KEYS} | {"NetworkID": doc["Id"]}
        c.doc["EndpointsListed"] = True
        if cfg.get("MacAddress"):  # --mac-address of `docker network connect` (API 1.44+)
            wanted[doc["Name"]]["MacAddress"] = ipam.parse_mac(cfg["MacAddress"])
        c.doc["EndpointsConfig"] = wanted
        if c.running:
            try:
                await self._connect_endpoint(c, doc, wanted[doc["Name"]], self._netns_dir / c.id)
            except BaseException:  # e.g. the address asked for is taken: the container stays as it was
                eps = dict(c.doc.get("Endpoints") or {})
                gone = eps.pop(doc["Id"], None)
                if gone is not None:
                    with contextlib.suppress(Exception):
                        netlink.detach(gone["host_if"])
                c.doc["Endpoints"] = eps
                c.doc["EndpointsConfig"], c.doc["EndpointsListed"] = before
                raise
            await self._republish(c)

    async def disconnect(self, net_ref: str, c: Any) -> None:
        """Leave network *net_ref*; NetworkMode stays as it is (a later connect is accepted, as with Docker)."""
        doc = self.get(net_ref)
        mode = c.doc["HostConfig"].get("NetworkMode") or "default"
        if mode == "host" and doc["Driver"] == "host":
            raise InvalidArgument(endpoint_settings.HOST_NETWORK)
        wanted = self.requested(c)
        was = any(k in (doc["Name"], doc["Id"]) for k in wanted)
        if not was and doc["Id"] not in self.endpoints(c):
            raise NotFound(f"container {c.id[:12]} is not connected to network {doc['Name']}")
        c.doc["EndpointsConfig"] = {k: v for k, v in wanted.items() if k not in (doc["Name"], doc["Id"])}
        c.doc["EndpointsListed"] = True
        eps = dict(c.doc.get("Endpoints") or {})
        ep = eps.pop(doc["Id"], None)
        if ep is not None:
            with contextlib.suppress(Exception):
                netlink.detach(ep["host_if"])
        c.doc["Endpoints"] = eps
        if ep is not None and c.running:
            await self._republish(c)
        if ep is not None:
            self._endpoint_event("disconnect", doc, c.id)

    # -- ports -----------------------------------------------------------------------
    def plan_ports(self, host: dict[str, Any], exposed: dict[str, Any]) -> list[dict[str, Any]]:
        """HostConfig.PortBindings (+ -P with the image's EXPOSE) as concrete bindings; random ports chosen.

        A host port another running container publishes is taken even though no
        socket holds it (DNAT rules do not bind), so those are checked here too.
        """
        taken = {(b["Proto"], int(b["HostPort"]), b["HostIp"] or "0.0.0.0")
                 for c in self._containers() if c.running for b in c.doc.get("Ports") or []}

        def clash(proto: str, port: int, ip: str) -> bool:
            ip = ip or "0.0.0.0"
            return any(p == proto and n == port and (i == ip or "0.0.0.0" in (i, ip)) for p, n, i in taken)
        wanted: list[tuple[str, str, str, str]] = []  # (port, proto, host ip, host port)
        for key, bindings in (host.get("PortBindings") or {}).items():
            port, _, proto = str(key).partition("/")
            for b in bindings or [{}]:
                wanted.append((port, proto or "tcp", (b or {}).get("HostIp") or "", (b or {}).get("HostPort") or ""))
        if host.get("PublishAllPorts"):
            for key in exposed or {}:
                port, _, proto = str(key).partition("/")
                if not any(w[0] == port and w[1] == (proto or "tcp") for w in wanted):
                    wanted.append((port, proto or "tcp", "", ""))
        out = []
        for port, proto, host_ip, host_port in wanted:
            host_port = "" if host_port == "0" else host_port  # 0: any free port, as Docker takes it
            if proto not in ("tcp", "udp"):
                raise InvalidArgument(f"invalid proto {proto!r} for port {port}: use tcp or udp")
            try:
                number = int(port)
                if "-" in host_port:  # a host range for one port: the first free one in it, as Docker does
                    lo, hi = (int(x) for x in host_port.split("-", 1))
                    free = [n for n in range(lo, hi + 1)
                            if not clash(proto, n, host_ip) and nftables.port_free(host_ip, n, proto)]
                    if not free:
                        raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{host_port} failed: all ports of the range "
                                       "are already allocated")
                    host_port = str(free[0])
                chosen = int(host_port) if host_port else nftables.random_port(
                    proto, host_ip, exclude=[n for p, n, _ in taken if p == proto])
            except ValueError:
                raise InvalidArgument(f"invalid port {port}:{host_port}") from None
            if not (0 < number < 65536 and 0 < chosen < 65536):
                raise InvalidArgument(f"invalid port {host_port or chosen}:{port}: ports are 1-65535")
            if host_port and (clash(proto, chosen, host_ip) or not nftables.port_free(host_ip, chosen, proto)):
                raise Conflict(f"Bind for {host_ip or '0.0.0.0'}:{chosen} failed: port is already allocated")
            taken.add((proto, chosen, host_ip or "0.0.0.0"))
            out.append({"Port": number, "Proto": proto, "HostIp": host_ip, "HostPort": str(chosen)})
        return out

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
            ep = self.endpoints(c).get(doc["Id"])
            if ep is None:
                continue
            names = {c.name.lower(), c.id[:12], str(c.doc["Config"].get("Hostname") or "").lower(),
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
        running = [c for c in self._containers() if c.running and doc["Id"] in self.endpoints(c)]
        asker = next((c for c in running if client in (self.endpoints(c)[doc["Id"]].ip,
                                                       self.endpoints(c)[doc["Id"]].ip6)), None)
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
                    ep = self.endpoints(c)[doc["Id"]]
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


def _free_ifname(endpoints: dict[str, dict[str, Any]]) -> str:
    """The first ethN no endpoint in the namespace has (records from before ctr_if count in order)."""
    used = {ep.get("ctr_if") or f"eth{i}" for i, ep in enumerate(endpoints.values())}
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


def _internal(doc: dict[str, Any]) -> bool:
    """Is *doc* an internal network (no route out, no NAT, DNS for its own names only)?"""
    return bool(doc.get("Internal")) and doc["Name"] != "bridge"


def _matches(doc: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name":
            if not any(v in doc["Name"] for v in values):
                return False
        elif key == "id":
            if not any(doc["Id"].startswith(v) for v in values):
                return False
        elif key == "driver":
            if doc["Driver"] not in values:
                return False
        elif key == "type":
            builtin = doc["Name"] in PREDEFINED
            if not any((v == "builtin") == builtin for v in values):
                return False
        elif key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in doc["Labels"] or (eq and doc["Labels"][k] != val):
                    return False
        elif key == "dangling":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


__all__ = ["Networks", "Endpoint", "Attached", "PREDEFINED"]
