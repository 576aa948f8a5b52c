"""Container networking: the pure model of bridge networks.

Strategy: this package decides (which subnet, which address, which MAC, which host
port) and never touches the kernel; berth.host applies the decisions. Its one
socket-owning part is the embedded DNS resolver.

    ipam, ipam6   pools (subnet, gateway, ip_range), subnet choice, address allocation, MACs
    bridgeplan    a bridge network's record: pools, new records, filters, interface names
    portplan      published ports: PortBindings and -P as concrete host bindings
    dns           the embedded resolver (resolvconf: upstreams; dnsupstream: asking one;
                  dnswire: the message values over dnspython)
"""
