"""IP addresses compared by value, not by spelling.

Kubernetes writes an IPv6 pod IP compressed (``fd00::1``); Java prints it in full
(``fd00:0:0:0:0:0:0:1``), and a JVM's sockets show IPv4 peers as ``::ffff:10.0.0.5``. The
registry and the kernel may use any of these for the same address.
"""

from __future__ import annotations

import ipaddress


def plain_address(addr: str) -> str:
    """The canonical text of ``addr``; an IPv4-mapped IPv6 address as IPv4; non-IPs unchanged."""
    try:
        ip = ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def same_ip(a: object, b: object) -> bool:
    """Whether two addresses (any spelling) are the same IP; non-IPs compare as text."""
    return plain_address(str(a)) == plain_address(str(b))
