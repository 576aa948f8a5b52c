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
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
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
from berth.network import ipam
from berth.network.dns import Resolver
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

    def settings(self, name: str) -> dict[str, Any]:
        return {"IPAMConfig": None, "Links": None, "Aliases": self.aliases or None, "MacAddress": self.mac,
                "NetworkID": self.network, "EndpointID": self.host_if, "Gateway": self.gateway,
                "IPAddress": self.ip, "IPPrefixLen": self.prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": [name, *self.aliases]}


@dataclass(frozen=True)
class Attached:
    """What a started container's networking needs written into its bundle."""

    netns: str  # the namespace path for config.json ("" = the runtime makes a loopback-only one)
    hosts: list[tuple[str, str]]  # (address, name) lines for /etc/hosts
    nameservers: list[str]  # for /etc/resolv.conf; empty = the host's


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
        self.resolver = Resolver(self.lookup, upstream_resolv)

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
        pool = self._pool(doc)
        internal = _internal(doc)
        # The rules first: they guard the host's loopback, which route_localnet opens to the bridge.
        await nftables.add_network(doc["Id"], bridge, str(pool.subnet), table=self._table,
                                   internal=internal, gateway=str(pool.gateway))
        netlink.ensure_bridge(bridge, pool.gateway_cidr, MTU)
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

    def _new_doc(self, name: str, driver: str, config: list[dict[str, str]], *, internal: bool = False,
                 labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
                 attachable: bool = False) -> dict[str, Any]:
        return {"Name": name, "Id": secrets.token_hex(32), "Created": timefmt.now(), "Scope": "local",
                "Driver": driver, "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": {}, "Config": config},
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
            configs = (body.get("IPAM") or {}).get("Config") or []
            cfg = configs[0] if configs else {}
            existing = [ipam.parse_subnet(d["IPAM"]["Config"][0]["Subnet"]) for d in self._records()
                        if d["Driver"] == "bridge" and d["IPAM"]["Config"]]
            if cfg.get("Subnet"):
                pool = ipam.Pool.parse(str(cfg["Subnet"]), cfg.get("Gateway"), cfg.get("IPRange"))
                ipam.check_overlap(pool.subnet, existing)
            else:
                taken = existing + [ipam.parse_subnet(n) for n in netlink.host_networks() if ":" not in n]
                pool = ipam.Pool.parse(str(ipam.pick_subnet(taken)), cfg.get("Gateway"), cfg.get("IPRange"))
            config = self._ipam_config(str(pool.subnet), str(pool.gateway),
                                       str(pool.ip_range) if pool.ip_range else None)
            doc = self._new_doc(name, "bridge", [config], internal=bool(body.get("Internal")),
                                labels=dict(body.get("Labels") or {}), options=dict(body.get("Options") or {}),
                                attachable=bool(body.get("Attachable")))
            self._db.put_network(doc)
            try:
                await self._realize(doc)
            except BaseException:
                self._db.delete_network(doc["Id"])
                raise
        self._events.publish("network", "create", doc["Id"], {"name": name, "type": "bridge"})
        return {"Id": doc["Id"], "Warning": ""}

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
                                    "IPv4Address": f"{ep.ip}/{ep.prefix}", "IPv6Address": ""}
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
        return {"NetworksDeleted": deleted or None}

    # -- containers ------------------------------------------------------------------
    def _wants(self, c: Any, doc: dict[str, Any]) -> bool:
        """Is *c* configured to be on network *doc* (running or not)?"""
        return doc["Name"] in self.requested(c) or doc["Id"] in self.requested(c)

    @staticmethod
    def requested(c: Any) -> dict[str, dict[str, Any]]:
        """The networks a container asked for: name -> endpoint config (aliases, IPAMConfig)."""
        host = c.doc["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        wanted = {("bridge" if k == "default" else k): (v or {})
                  for k, v in (c.doc.get("EndpointsConfig") or {}).items()}
        if mode in ("default", "bridge"):
            wanted.setdefault("bridge", {})
        elif mode not in ("none", "host") and not mode.startswith("container:"):
            wanted.setdefault(mode, {})
        return wanted

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
        the monitor configures it there from <bundle>/network.json.
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
            nic = {"tap": ep.host_if, "mac": ep.mac, "address": f"{ep.ip}/{ep.prefix}",
                   "gateway": "" if _internal(doc) else ep.gateway}
            Path(c.dir, "network.json").write_text(json.dumps(nic))
            await self._publish(c)
        except BaseException:
            await self.detach(c)
            raise
        hostname = str(c.doc["Config"].get("Hostname") or c.id[:12])
        return Attached("", [(ep.ip, hostname)], [ep.gateway] if doc["Name"] != "bridge" else [])

    async def _connect_endpoint(self, c: Any, doc: dict[str, Any], cfg: dict[str, Any],
                                netns: Path | None) -> Endpoint:
        async with self._lock:
            pool = self._pool(doc)
            used = {ep.ip for other in self._containers() if other.id != c.id
                    for ep in self.endpoints(other).values() if ep.network == doc["Id"]}
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
            ctr_if = f"eth{len(endpoints)}"
            ep = Endpoint(doc["Id"], ip, prefix, str(pool.gateway), ipam.mac_for(ip), host_if, aliases, doc["Name"])
            endpoints[doc["Id"]] = ep.__dict__
            c.doc["Endpoints"] = endpoints  # recorded before the kernel objects: a crash leaves them findable
        if netns is None:
            netlink.create_tap(host_if, self._bridge_of(doc), MTU)
        else:
            netlink.attach(self._bridge_of(doc), netns, host_if, pool.address_cidr(ip),
                           str(pool.gateway) if routed else None, ep.mac, MTU, ctr_if=ctr_if)
        return ep

    async def _publish(self, c: Any) -> None:
        rules = self.port_rules(c)
        if rules:
            await nftables.publish(c.id, rules, table=self._table)
        elif c.doc.get("Ports"):
            # Only internal networks: ports are not published there, as with Docker.
            log.info("container %s is only on internal networks: its ports are not published", c.id[:12])
            c.doc["Ports"] = []

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
        with contextlib.suppress(Exception):
            netlink.delete_netns(self._netns_dir / c.id)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(c.dir, "network.json"))
        c.doc["Endpoints"] = {}

    async def connect(self, net_ref: str, c: Any, cfg: dict[str, Any]) -> None:
        doc = self.get(net_ref)
        if doc["Driver"] != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {doc['Name']}: only bridge "
                                  "networks can be joined")
        mode = c.doc["HostConfig"].get("NetworkMode") or "default"
        if mode in ("host", "none") or mode.startswith("container:"):
            raise Conflict(f"container sharing network namespace with another container or host cannot be "
                           f"connected to any other network (its mode is {mode})")
        if doc["Id"] in self.endpoints(c) or self._wants(c, doc):
            raise Conflict(f"endpoint with name {c.name} already exists in network {doc['Name']}")
        wanted = dict(c.doc.get("EndpointsConfig") or {})
        wanted[doc["Name"]] = {"Aliases": cfg.get("Aliases") or [], "IPAMConfig": cfg.get("IPAMConfig") or {}}
        c.doc["EndpointsConfig"] = wanted
        if c.running:
            await self._connect_endpoint(c, doc, wanted[doc["Name"]], self._netns_dir / c.id)
        self._events.publish("network", "connect", doc["Id"], {"name": doc["Name"], "container": c.id})

    async def disconnect(self, net_ref: str, c: Any) -> None:
        doc = self.get(net_ref)
        wanted = dict(c.doc.get("EndpointsConfig") or {})
        was = wanted.pop(doc["Name"], None) is not None or wanted.pop(doc["Id"], None) is not None
        mode = c.doc["HostConfig"].get("NetworkMode") or "default"
        if mode == doc["Name"] or (doc["Name"] == "bridge" and mode in ("default", "bridge")):
            c.doc["HostConfig"]["NetworkMode"] = "none"
            was = True
        if not was and doc["Id"] not in self.endpoints(c):
            raise NotFound(f"container {c.id[:12]} is not connected to network {doc['Name']}")
        c.doc["EndpointsConfig"] = wanted
        eps = dict(c.doc.get("Endpoints") or {})
        ep = eps.pop(doc["Id"], None)
        if ep is not None:
            with contextlib.suppress(Exception):
                netlink.detach(ep["host_if"])
        c.doc["Endpoints"] = eps
        self._events.publish("network", "disconnect", doc["Id"], {"name": doc["Name"], "container": c.id})

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
        return out

    # -- leftovers ---------------------------------------------------------------------
    def netns_path(self, cid: str) -> str:
        return str(self._netns_dir / cid)

    def leftovers(self) -> list[str]:
        """Namespaces of containers that no longer exist (cleaned at start)."""
        known = {c.id for c in self._containers()}
        if not self._netns_dir.is_dir():
            return []
        return [n for n in os.listdir(self._netns_dir) if n not in known]


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
