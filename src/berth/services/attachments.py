"""Containers on networks: each start's namespace, veths (or a VM's tap), addresses and published ports.

Strategy: a container's attachments are part of its record (`endpoints`, by
network id; `ports`, its published bindings), written before the kernel
objects are made, so a daemon killed half-way finds what to undo. A started
container gets a network namespace of its own (the runtime joins it), one
veth per network with an address from the network's pool, its DNAT rules,
and the /etc/hosts lines and nameserver its bundle needs (`Attached`). A
VM-isolated container gets a tap on the bridge instead; the VM driver hands
it to the guest (`Attached.nic`). `connect`/`disconnect` change the record
and, for a running container, its interfaces; the network side (records,
bridges, DNS) is services.networks'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from berth.errors import Conflict, InvalidArgument, NotFound
from berth.host import hostports, ifnames, netlink, netns, nftables, nftrules
from berth.network import bridgeplan, ipam, ipam6, portplan
from berth.network.bridgeplan import MTU
from berth.network.endpoint import Endpoint, EndpointSettings
from berth.network.portplan import PortBinding
from berth.network.record import NetworkRecord
from berth.runtime.base import VmNic
from berth.services import endpoints as endpoint_settings
from berth.services.events import Events
from berth.services.networks import Networks
from berth.services.records import Container

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attached:
    """What a started container's networking needs written into its bundle."""

    netns: str  # the namespace path for config.json ("" = the runtime makes a loopback-only one)
    hosts: list[tuple[str, str]]  # (address, name) lines for /etc/hosts
    nameservers: list[str]  # for /etc/resolv.conf; empty = the host's
    nic: VmNic | None = None  # VM isolation: the card the VM driver gives its guest


class Attachments:
    def __init__(self, networks: Networks, events: Events, containers: Callable[[], Iterable[Container]], *,
                 netns_dir: Path, table: str) -> None:
        self._networks, self._events, self._containers = networks, events, containers
        self._netns_dir, self._table = netns_dir, table

    async def attach(self, c: Container, pid_of: Callable[[str], int], *, vm: bool = False) -> Attached:
        """Prepare the container's networking before its runtime starts.

        With *vm* (VM isolation) the container's card is a tap device on the
        bridge instead of a veth in a namespace: QEMU gives it to the guest, and
        the VM driver hands it to the guest (Attached.nic, passed in CreateOptions).
        """
        mode = c.record.network_mode
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
        netns.delete_netns(path)  # a crash's leftover
        netns.create_netns(path)
        hosts: list[tuple[str, str]] = []
        nameservers: list[str] = []
        try:
            for net_name, cfg in self._networks.requested(c).items():
                net = self._networks.get(net_name)
                ep = await self._connect_endpoint(c, net, cfg, path)
                hosts.append((ep.ip, c.record.hostname))
                if ep.ip6:  # as Docker writes it on a network with IPv6
                    hosts.append((ep.ip6, hosts[-1][1]))
                if net.name != "bridge":
                    nameservers.append(ep.gateway)
            await self._publish(c)
        except BaseException:
            await self.detach(c)
            raise
        return Attached(str(path), hosts, nameservers[:1])

    async def _attach_vm(self, c: Container) -> Attached:
        wanted = self._networks.requested(c)
        if len(wanted) != 1:
            raise InvalidArgument("a VM-isolated container joins one network (its VM has one network card)")
        (net_name, cfg), = wanted.items()
        net = self._networks.get(net_name)
        try:
            ep = await self._connect_endpoint(c, net, cfg, None)
            # No default route on an internal network, in the guest as in a namespace.
            nic = VmNic(tap=ep.host_if, mac=ep.mac, address=f"{ep.ip}/{ep.prefix}",
                        gateway="" if bridgeplan.is_internal(net) else ep.gateway)
            await self._publish(c)
        except BaseException:
            await self.detach(c)
            raise
        hostname = c.record.hostname
        return Attached("", [(ep.ip, hostname)], [ep.gateway] if net.name != "bridge" else [], nic)

    async def _connect_endpoint(self, c: Container, net: NetworkRecord, cfg: EndpointSettings,
                                netns: Path | None) -> Endpoint:
        async with self._networks.lock:
            pool = bridgeplan.pool_of(net)
            used = {ep.ip for other in self._containers() if other.id != c.id
                    for ep in other.record.endpoints.values() if ep.network == net.id}
            used |= set(net.ipam[0].aux.values())  # reserved
            ip = ipam.allocate(pool, used, cfg.ipv4 or None)
            host_if = ifnames.veth_name(c.id, net.id)
            if netns is None:  # a VM's tap, not a veth
                host_if = "tap" + host_if[len("veth"):]
            endpoints = dict(c.record.endpoints)
            # The default route goes through the first network that has a way out (an internal one has none).
            routed = not bridgeplan.is_internal(net) and not any(not self._internal_id(n) for n in endpoints)
            ip6, prefix6, gateway6 = self._address6(c, net, cfg, vm=netns is None)
            # The IPv6 default route: through the first network with IPv6 and a way out.
            routed6 = bool(ip6) and not bridgeplan.is_internal(net) and not any(
                e.ip6 and not self._internal_id(n) for n, e in endpoints.items())
            ep = Endpoint(network=net.id, ip=ip, prefix=pool.subnet.prefixlen, gateway=str(pool.gateway),
                          mac=self._mac(c, net, cfg, ip), host_if=host_if,
                          aliases=tuple(a for a in cfg.aliases or () if a), name=net.name,
                          ip6=ip6, prefix6=prefix6, gateway6=gateway6,
                          # a name a disconnect freed is taken again
                          ctr_if=bridgeplan.free_ifname([e.ctr_if for e in endpoints.values()]))
            endpoints[net.id] = ep
            c.record.endpoints = endpoints  # recorded before the kernel objects: a crash leaves them findable
        if netns is None:
            netlink.create_tap(host_if, bridgeplan.bridge_name(net), MTU)
        else:
            netlink.attach(bridgeplan.bridge_name(net), netns, host_if, pool.address_cidr(ip),
                           str(pool.gateway) if routed else None, ep.mac, MTU, ctr_if=ep.ctr_if,
                           address6_cidr=f"{ip6}/{prefix6}" if ip6 else None,
                           gateway6=gateway6 if routed6 else None)
        self._endpoint_event("connect", net, c.id)
        return ep

    def _endpoint_event(self, action: str, net: NetworkRecord, cid: str) -> None:
        """`connect`/`disconnect`, as Docker emits them: when an endpoint joins or leaves (a start or a
        stop, or a connect/disconnect of a running container), not when only the configuration changes."""
        self._events.publish("network", action, net.id, {"container": cid, "name": net.name,
                                                         "type": net.driver or "bridge"})

    def _address6(self, c: Container, net: NetworkRecord, cfg: EndpointSettings, *,
                  vm: bool) -> tuple[str, int, str]:
        """(address, prefix, gateway) on a network with IPv6, from --ip6 or the first free one; else ("", 0, "")."""
        pool6 = bridgeplan.pool6_of(net)
        wanted6 = cfg.ipv6 or None
        if pool6 is None or vm:
            if wanted6:
                why = ("a VM-isolated container gets IPv4 only" if pool6 is not None else
                       f"network {net.name} has no IPv6: create it with --ipv6")
                raise InvalidArgument(f"invalid IPv6 address {wanted6} (--ip6): {why}")
            return "", 0, ""
        used6 = {ep.ip6 for other in self._containers() if other.id != c.id
                 for ep in other.record.endpoints.values() if ep.network == net.id and ep.ip6}
        return ipam6.allocate6(pool6, used6, wanted6), pool6.subnet.prefixlen, str(pool6.gateway)

    def _mac(self, c: Container, net: NetworkRecord, cfg: EndpointSettings, ip: str) -> str:
        """The endpoint's MAC: its own MacAddress (API 1.44+), else Config.MacAddress on the container's
        NetworkMode network (--mac-address, older APIs), else Docker's address-derived one."""
        chosen = cfg.mac
        if not chosen:
            mode = c.record.network_mode
            primary = net.name == "bridge" if mode in ("default", "bridge") else mode in (net.name, net.id)
            chosen = (c.config.mac_address or "") if primary else ""
        return ipam.parse_mac(chosen) if chosen else ipam.mac_for(ip)

    async def _publish(self, c: Container) -> None:
        rules = self.port_rules(c)
        if rules:
            await nftables.publish(c.id, rules, table=self._table)
        elif c.record.ports:
            # Only internal networks: ports are not published there, as with Docker.
            log.info("container %s is only on internal networks: its ports are not published", c.id[:12])
            c.record.ports = []

    async def _republish(self, c: Container) -> None:
        """Point a running container's published ports at its first routed endpoint again (after a (dis)connect)."""
        if c.record.ports:
            await nftables.publish(c.id, self.port_rules(c), table=self._table)

    def _internal_id(self, net_id: str) -> bool:
        try:
            return bridgeplan.is_internal(self._networks.get(net_id))
        except NotFound:
            return False

    def port_rules(self, c: Container) -> list[nftrules.PortRule]:
        """The DNAT rules for the container's published ports (on its first non-internal network's address)."""
        eps = [ep for ep in c.record.endpoints.values() if not self._internal_id(ep.network)]
        if not eps:
            return []
        return [nftrules.PortRule(host_ip=b.host_ip, host_port=b.host_port, proto=b.proto, container_ip=eps[0].ip,
                                  container_port=b.port) for b in c.record.ports]

    async def detach(self, c: Container) -> None:
        """Undo attach: port rules, veths, the namespace, the addresses. Safe to call twice."""
        if c.record.ports:
            with contextlib.suppress(Exception):
                await nftables.unpublish(c.id, table=self._table)
        for ep in c.record.endpoints.values():
            with contextlib.suppress(Exception):
                netlink.detach(ep.host_if)
            with contextlib.suppress(NotFound):
                self._endpoint_event("disconnect", self._networks.get(ep.network), c.id)
        with contextlib.suppress(Exception):
            netns.delete_netns(self._netns_dir / c.id)
        c.record.endpoints = {}

    async def connect(self, net_ref: str, c: Container, cfg: EndpointSettings) -> None:
        """Join network *net_ref* with settings *cfg* (endpoints.parse_endpoint's): now if running, else at start.

        A container whose NetworkMode is a bridge network joins whatever it was
        disconnected from; only host, none and container:<id> modes are refused.
        """
        net = self._networks.get(net_ref)
        mode = c.record.network_mode
        self._networks.check_joinable(mode, net)
        if net.id in c.record.endpoints or self._networks.wants(c, net):
            raise Conflict(f"endpoint with name {c.name} already exists in network {net.name}")
        self._networks.check_endpoint(net, cfg)
        before = c.record.endpoints_config, c.record.endpoints_listed
        wanted = self._networks.requested(c)  # every network listed from now on, the NetworkMode's included
        # --mac-address of `docker network connect` (API 1.44+): kept normalised
        wanted[net.name] = dataclasses.replace(cfg, network_id=net.id, given=True,
                                               mac=ipam.parse_mac(cfg.mac) if cfg.mac else "")
        c.record.endpoints_listed = True
        c.record.endpoints_config = wanted
        if c.running:
            try:
                await self._connect_endpoint(c, net, wanted[net.name], self._netns_dir / c.id)
            except BaseException:  # e.g. the address asked for is taken: the container stays as it was
                eps = dict(c.record.endpoints)
                gone = eps.pop(net.id, None)
                if gone is not None:
                    with contextlib.suppress(Exception):
                        netlink.detach(gone.host_if)
                c.record.endpoints = eps
                c.record.endpoints_config, c.record.endpoints_listed = before
                raise
            await self._republish(c)

    async def disconnect(self, net_ref: str, c: Container) -> None:
        """Leave network *net_ref*; NetworkMode stays as it is (a later connect is accepted, as with Docker)."""
        net = self._networks.get(net_ref)
        mode = c.record.network_mode
        if mode == "host" and net.driver == "host":
            raise InvalidArgument(endpoint_settings.HOST_NETWORK)
        wanted = self._networks.requested(c)
        was = any(k in (net.name, net.id) for k in wanted)
        if not was and net.id not in c.record.endpoints:
            raise NotFound(f"container {c.id[:12]} is not connected to network {net.name}")
        c.record.endpoints_config = {k: v for k, v in wanted.items() if k not in (net.name, net.id)}
        c.record.endpoints_listed = True
        eps = dict(c.record.endpoints)
        ep = eps.pop(net.id, None)
        if ep is not None:
            with contextlib.suppress(Exception):
                netlink.detach(ep.host_if)
        c.record.endpoints = eps
        if ep is not None and c.running:
            await self._republish(c)
        if ep is not None:
            self._endpoint_event("disconnect", net, c.id)

    def plan_ports(self, c: Container) -> list[PortBinding]:
        """HostConfig.PortBindings (+ -P with the image's EXPOSE) of *c* as concrete bindings (network.portplan)."""
        taken = {(b.proto, b.host_port, b.host_ip or "0.0.0.0")
                 for other in self._containers() if other.running for b in other.record.ports}
        return portplan.plan_ports(c.host.port_bindings, c.host.publish_all_ports, list(c.config.exposed_ports or {}),
                                   taken, hostports.port_free, hostports.random_port)
