"""Container networking: the pure model of bridge networks.

Strategy: this package decides (which subnet, which address, which MAC) and never
acts; berth.host.netlink and berth.host.nftables apply the decisions to the kernel.

    ipam    pools (subnet, gateway, ip_range), subnet choice, address allocation, MACs
"""
