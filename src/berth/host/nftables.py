"""berth's rules applied to the kernel's nftables, one ``nft`` transaction per change.

Strategy: berth owns exactly one table, ``ip berth`` (plus ``ip6 berth`` once a
network has IPv6), and touches nothing else: other tables (a host firewall,
Docker's iptables-nft rules) keep working beside it. The rule text comes from
host.nftrules, each rule tagged with its owner (a network or container id).
Each change is one ``nft -f -`` script, which nft applies as a single
transaction: the chains are (re)declared with idempotent ``add``, the owner's
old rules are deleted by handle and its new rules added, all or nothing, its
IPv4 and IPv6 rules together. So add_network and publish *set* an owner's
rules (applying them again after a daemon restart changes nothing), and a
failure leaves the previous state intact. A handle made stale by a concurrent
change fails the whole transaction, which is then listed and built again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from berth.errors import CommandFailed
from berth.host import proc
from berth.host.nftrules import (
    FAMILIES,
    TABLE,
    PortRule,
    check_family,
    check_table,
    delete_rules,
    network_rules,
    network_rules6,
    owned_handles,
    parse_owners,
    port_rules,
    script,
    skeleton,
)


async def _nft_script(lines: Sequence[str]) -> None:
    await proc.run(["nft", "-f", "-"], input=script(lines).encode(), timeout=30)


async def _listing(table: str, family: str = "ip") -> dict[str, Any]:
    check_table(table)
    check_family(family)
    result = await proc.run(["nft", "-j", "list", "table", family, table], timeout=30, check=False)
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace")
        if "No such file or directory" in err or (family == "ip6" and "not supported" in err.lower()):
            return {"nftables": []}  # no table: nothing of ours exists
        raise CommandFailed(["nft", "-j", "list", "table", family, table], result.returncode, err)
    parsed: dict[str, Any] = json.loads(result.stdout or b"{}")
    return parsed


async def _replace(owner: str, new_rules: Sequence[str], table: str,
                   new_rules6: Sequence[str] | None = None) -> None:
    # list + one transaction; a concurrent change can make a listed handle stale,
    # in which case the transaction fails as a whole and is rebuilt once more.
    # new_rules6 None: the owner has nothing in the ip6 table (published ports), do not look there.
    for attempt in range(3):
        handles = owned_handles(await _listing(table), owner)
        handles6 = owned_handles(await _listing(table, "ip6"), owner) if new_rules6 is not None else []
        lines = [*skeleton(table), *delete_rules(handles, table), *new_rules]
        if new_rules6 or handles6:
            lines += [*skeleton(table, "ip6"), *delete_rules(handles6, table, "ip6"), *(new_rules6 or ())]
        try:
            await _nft_script(lines)
            return
        except CommandFailed as exc:
            if attempt == 2 or not (handles or handles6) or "No such file or directory" not in exc.stderr:
                raise


async def ensure_table(table: str = TABLE) -> None:
    """Create the table and its chains if missing (idempotent)."""
    await _nft_script(skeleton(table))


async def add_network(net_id: str, bridge: str, subnet: str, *, table: str = TABLE,
                      internal: bool = False, gateway: str = "", subnet6: str = "") -> None:
    """Set network *net_id*'s rules (loopback guards, isolation, forwarding, masquerade).

    Call it before the bridge gets route_localnet=1 (host.sysctl.enable_route_localnet,
    which published ports on 127.0.0.1 need): the guards must be in place first.
    ip_forward=1 is needed for any of this to route. See network_rules for *internal*.
    *subnet6* (a network with IPv6) adds network_rules6 in the ip6 table; "" removes any.
    """
    rules6 = network_rules6(net_id, bridge, subnet6, table, internal=internal) if subnet6 else []
    await _replace(net_id, network_rules(net_id, bridge, subnet, table, internal=internal, gateway=gateway),
                   table, rules6)


async def remove_network(net_id: str, *, table: str = TABLE) -> None:
    """Delete network *net_id*'s rules; fine when there are none."""
    await remove_owner(net_id, table=table)


async def publish(container_id: str, ports: Sequence[PortRule], *, table: str = TABLE) -> None:
    """Set container *container_id*'s published ports to exactly *ports* (an empty list removes them)."""
    await _replace(container_id, port_rules(container_id, ports, table), table)


async def unpublish(container_id: str, *, table: str = TABLE) -> None:
    """Delete every published-port rule of *container_id*; fine when there are none."""
    await remove_owner(container_id, table=table, families=("ip",))  # no IPv6 port rules exist


async def remove_owner(owner_id: str, *, table: str = TABLE, families: Sequence[str] = FAMILIES) -> None:
    """Delete exactly the rules tagged "berth:<owner_id>" (in the tables of *families*); fine when there are none."""
    for attempt in range(3):
        lines: list[str] = []
        for family in families:
            lines += delete_rules(owned_handles(await _listing(table, family), owner_id), table, family)
        if not lines:
            return
        try:
            await _nft_script(lines)
            return
        except CommandFailed as exc:
            if attempt == 2 or "No such file or directory" not in exc.stderr:
                raise


async def owners(*, table: str = TABLE) -> set[str]:
    """Every owner id with rules in the tables, ip and ip6 (for leak checks)."""
    return parse_owners(await _listing(table)) | parse_owners(await _listing(table, "ip6"))


async def remove_all(*, table: str = TABLE) -> None:
    """Delete the whole table (``berthd --cleanup``); fine when it does not exist."""
    check_table(table)
    # Declaring it first makes the delete valid whether or not the table existed.
    await _nft_script([f"add table ip {table}", f"delete table ip {table}"])
    try:
        await _nft_script([f"add table ip6 {table}", f"delete table ip6 {table}"])
    except CommandFailed:
        pass  # no IPv6 in this kernel's nftables: there is no such table either
