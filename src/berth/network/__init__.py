"""Container networking: the pure model of bridge networks.

Strategy: this package decides (which subnet, which address, which MAC, which host
port) and never touches the kernel; berth.host applies the decisions. Its one
socket-owning part is the embedded DNS resolver.

    ipam, ipam6   pools (subnet, gateway, ip_range), subnet choice, address allocation, MACs
    record        a network's record (NetworkRecord, its IPAM entries) and its stored JSON
    bridgeplan    rules over a bridge network's record: pools, new records, filters, interface names
    endpoint      a container on a network: the settings it asked for, its attachment once started
    portplan      published ports: PortBindings and -P as concrete host bindings (PortBinding)
    dns           the embedded resolver (resolvconf: upstreams; dnsupstream: asking one;
                  dnswire: the message values over dnspython)
"""
