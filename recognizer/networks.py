"""Where the service may connect: the address lists, and one rule per kind of destination.

Image URLs may reach the public internet only (and, in development, private ranges). Cameras
and webhook receivers live on private networks, so stream sources and webhooks may reach only
the networks an operator lists (FACEREC_STREAM_NETWORKS, FACEREC_WEBHOOK_NETWORKS: CIDRs, and
``public`` for the public internet). Whatever is listed, "this host", link-local (where cloud
metadata lives), multicast and reserved addresses stay closed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_nets = lambda *cidrs: tuple(ipaddress.ip_network(c) for c in cidrs)  # noqa: E731

# Never reachable, whatever the settings: "this host", link-local (cloud metadata lives there,
# v4 and v6), multicast, reserved and broadcast, and IPv6's deprecated site-local range.
ALWAYS_DENIED = _nets(
    "0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "fe80::/10", "fec0::/10", "ff00::/8", "fd00:ec2::254/128",
)
# Reachable only with FACEREC_ALLOW_PRIVATE_NETWORKS: loopback, RFC 1918, CGNAT, ULA.
PRIVATE = _nets(
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "::1/128", "fc00::/7",
)
# The blocks of IANA's IPv4 and IPv6 Special-Purpose Address Registries that are not globally
# reachable, or terminated, or that reach internal hosts, which Python's ipaddress (its answer
# depends on its version) may call global; tests/test_fetch.py checks every entry of both.
DENIED = _nets(
    # IETF protocol assignments (the dummy address, NAT64 discovery, PCP and TURN anycast),
    # documentation (TEST-NET-1, -2, -3), benchmarking, the terminated 6to4 relay anycast
    "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15",
    "192.88.99.0/24",
    # IPv4-compatible IPv6 and the rest of ::/8, NAT64 (well-known and local-use prefixes),
    # discard-only, dummy prefix, IETF protocol assignments (Teredo, benchmarking, ORCHID, AMT,
    # AS112, anycast), documentation (RFC 3849, RFC 9637), 6to4, SRv6 SIDs (RFC 9602)
    "::/8", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "3fff::/20", "5f00::/16",
)
# IPv6's global unicast space (RFC 4291): anything outside it is reserved or special-purpose,
# so a block IANA assigns there later is refused before this list knows it.
GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


class Blocked(OSError):
    """The host does not resolve, or resolves to an address the rule refuses."""


def is_public(address: Address) -> bool:
    """Whether an address is on the public internet (globally reachable unicast)."""
    if address.version == 6 and address not in GLOBAL_UNICAST_V6:
        return False
    return address.is_global and not any(address in net for net in DENIED)


@dataclass(frozen=True)
class Networks:
    """A rule for one kind of destination: the public internet or not, and listed networks."""

    public: bool = True
    listed: tuple[Network, ...] = ()

    @classmethod
    def for_images(cls, allow_private: bool = False) -> "Networks":
        """Image URLs' rule: the public internet, and private ranges in development."""
        return cls(True, PRIVATE if allow_private else ())

    @classmethod
    def parse(cls, text: str) -> "Networks":
        """A listed rule from ``public`` and CIDRs separated by commas ("" allows nothing).

        :raises ValueError: an entry that is neither
        """
        public, listed = False, []
        for entry in (part.strip() for part in text.split(",")):
            if entry.lower() == "public":
                public = True
            elif entry:
                try:
                    listed.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{entry!r} is not a CIDR (10.0.0.0/8) or public") from None
        return cls(public, tuple(listed))

    def __str__(self) -> str:
        entries = (["public"] if self.public else []) + [str(net) for net in self.listed]
        return ",".join(entries) or "none"

    @property
    def empty(self) -> bool:
        """Whether the rule allows nothing at all."""
        return not self.public and not self.listed

    def allows(self, address: Address) -> bool:
        """Whether the service may connect to this address."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in ALWAYS_DENIED):
            return False
        if any(address.version == net.version and address in net for net in self.listed):
            return True
        return self.public and is_public(address)

    def resolve(self, host: str, port: int) -> str:
        """Resolve host once and return the address to connect to (the "pin"), if every
        address it has is allowed; an IPv6 address comes in brackets.

        :raises Blocked: the name does not resolve, or resolves to an address not allowed
        """
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise Blocked("name does not resolve") from error
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos
                     if info[0] in (socket.AF_INET, socket.AF_INET6)]
        if not addresses or not all(self.allows(address) for address in addresses):
            raise Blocked("address not allowed")
        first = addresses[0]
        return f"[{first}]" if first.version == 6 else str(first)
