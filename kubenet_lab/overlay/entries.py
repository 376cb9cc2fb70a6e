"""Table entries as iproute2 prints them: ``ip route``, ``ip neigh``, ``bridge fdb``, ``ip link``.

Each entry is an immutable value whose ``str()`` is the line the real command
prints, so a learner can hold the simulator's output next to a real node's.
The table rows are named tuples rather than dataclasses because a large
cluster has a million of them (one per node pair): they are five times
cheaper to create.

>>> from ipaddress import ip_address, ip_network
>>> print(Route(ip_network("10.244.1.0/24"), via=ip_address("10.244.1.0"), dev="flannel.1", onlink=True))
10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
>>> print(Neighbor(ip_address("10.244.1.0"), "flannel.1", "0e:5f:0a:f4:01:00"))
10.244.1.0 dev flannel.1 lladdr 0e:5f:0a:f4:01:00 PERMANENT
>>> print(FdbEntry("0e:5f:0a:f4:01:00", "flannel.1", ip_address("192.168.0.12")))
0e:5f:0a:f4:01:00 dev flannel.1 dst 192.168.0.12 self permanent
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from ..addresses import IPAddress, IPNetwork

__all__ = ["Route", "Neighbor", "FdbEntry", "TunnelMapEntry", "Link", "derived_mac"]


def derived_mac(*parts: str) -> str:
    """A stable, locally administered unicast MAC for a device, derived from its identity.

    Real agents pick random MACs (flannel's VtepMAC, the bridge plugin's
    veths); deriving them from the scenario, node and device names keeps every
    output reproducible. The first octet has the locally-administered bit set
    and the multicast bit clear (IEEE 802 §8.2), as Linux's random MACs do.

    >>> mac = derived_mac("lab", "node-1", "flannel.1")
    >>> mac, int(mac[:2], 16) & 0b11  # locally administered (bit 1 set), unicast (bit 0 clear)
    ('e2:87:f3:40:55:04', 2)
    """
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    first = (digest[0] & 0b11111100) | 0b10
    return ":".join(f"{b:02x}" for b in (first, *digest[1:6]))


class Route(NamedTuple):
    """One ``ip route`` entry. ``type`` is ``unicast`` or ``blackhole``."""

    dst: IPNetwork | str
    via: IPAddress | None = None
    dev: str | None = None
    proto: str | None = None
    scope: str | None = None
    src: IPAddress | None = None
    onlink: bool = False
    mtu: int | None = None
    type: str = "unicast"

    def matches(self, address: IPAddress) -> bool:
        if self.dst == "default":
            return True
        return address.version == self.dst.version and address in self.dst

    @property
    def prefixlen(self) -> int:
        return -1 if self.dst == "default" else self.dst.prefixlen

    def __str__(self) -> str:
        dst = str(self.dst)
        if self.dst != "default" and self.dst.prefixlen == self.dst.max_prefixlen:
            dst = str(self.dst.network_address)  # iproute2 prints host routes without /32
        parts = ["blackhole", dst] if self.type == "blackhole" else [dst]
        if self.via is not None:
            parts += ["via", str(self.via)]
        if self.dev is not None:
            parts += ["dev", self.dev]
        if self.proto:
            parts += ["proto", self.proto]
        if self.scope:
            parts += ["scope", self.scope]
        if self.src is not None:
            parts += ["src", str(self.src)]
        if self.mtu is not None:
            parts += ["mtu", str(self.mtu)]
        if self.onlink:
            parts.append("onlink")
        return " ".join(parts)


class Neighbor(NamedTuple):
    """One ``ip neigh`` entry: an IP's link-layer address on a device (ARP / NDP cache)."""

    ip: IPAddress
    dev: str
    lladdr: str
    state: str = "PERMANENT"

    def __str__(self) -> str:
        return f"{self.ip} dev {self.dev} lladdr {self.lladdr} {self.state}"


class FdbEntry(NamedTuple):
    """One ``bridge fdb`` entry of a VXLAN device: which remote VTEP owns an inner MAC.

    This is the VTEP's flood-and-learn table, filled statically by the agent
    (``nolearning``): inner destination MAC → outer destination IP.
    """

    mac: str
    dev: str
    dst: IPAddress

    def __str__(self) -> str:
        return f"{self.mac} dev {self.dev} dst {self.dst} self permanent"


class TunnelMapEntry(NamedTuple):
    """One entry of Cilium's eBPF tunnel map (``cilium bpf tunnel list``): pod prefix → node IP."""

    prefix: IPNetwork
    endpoint: IPAddress

    def __str__(self) -> str:
        return f"{self.prefix.network_address}:0  {self.endpoint}:0"


@dataclass(frozen=True)
class Link:
    """One ``ip -br link``-style row: a device, its kind, MAC, MTU and addresses."""

    name: str
    kind: str
    mac: str | None
    mtu: int
    addresses: tuple[str, ...] = ()
    details: str = ""

    def __str__(self) -> str:
        extra = f" ({self.details})" if self.details else ""
        return f"{self.name:<16} {self.kind:<8} {self.mac or '-':<17} mtu {self.mtu:<5} {' '.join(self.addresses)}{extra}".rstrip()
