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

A route with several next hops (ECMP, what BGP multipath installs) prints the
way ``ip -o route`` prints it, and a flow picks one of them by hash:

>>> ecmp = Route.multipath(ip_network("192.168.100.1/32"), [(ip_address("192.168.1.11"), "rack"),
...                                                        (ip_address("192.168.1.12"), "rack")], proto="bgp")
>>> print(ecmp)
192.168.100.1 proto bgp nexthop via 192.168.1.11 dev rack weight 1 nexthop via 192.168.1.12 dev rack weight 1
>>> index, chosen = ecmp.select(ip_address("172.31.255.255"), ip_address("192.168.100.1"))
>>> index, str(chosen)
(1, '192.168.100.1 via 192.168.1.12 dev rack proto bgp')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple

from ..addresses import IPAddress, IPNetwork

__all__ = ["Route", "Neighbor", "FdbEntry", "TunnelMapEntry", "Link", "derived_mac", "multipath_hash",
           "MULTIPATH_HASH_KEY"]

#: The key of :func:`multipath_hash`. Linux keys its flow hash with a secret drawn at boot, so two
#: routers (or two boots) spread the same flows differently; a fixed key keeps every walk reproducible.
MULTIPATH_HASH_KEY = b"kubenet-lab"


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


def multipath_hash(src: IPAddress, dst: IPAddress) -> int:
    """The 31-bit hash that picks an ECMP next hop for a flow from ``src`` to ``dst``.

    Linux's default, ``net.ipv4.fib_multipath_hash_policy = 0``, hashes layer 3
    only: the source and destination addresses (net/ipv4/route.c
    ``fib_multipath_hash``), so every packet between two hosts takes the same
    path whatever its ports. The kernel's hash is keyed with a secret chosen at
    boot (``net.ipv4.fib_multipath_hash_seed`` pins it since Linux 6.11); here
    BLAKE2s with :data:`MULTIPATH_HASH_KEY` stands in for it: the same inputs,
    a different but fixed mapping. ``fib_select_multipath`` uses the upper 31
    bits, as this does.

    >>> from ipaddress import ip_address
    >>> h = multipath_hash(ip_address("172.31.255.255"), ip_address("192.168.100.1"))
    >>> 0 <= h < 2**31, h == multipath_hash(ip_address("172.31.255.255"), ip_address("192.168.100.1"))
    (True, True)
    """
    digest = hashlib.blake2s(src.packed + dst.packed, digest_size=4, key=MULTIPATH_HASH_KEY).digest()
    return int.from_bytes(digest, "big") >> 1


class Route(NamedTuple):
    """One ``ip route`` entry. ``type`` is ``unicast`` or ``blackhole``.

    ``nexthops`` holds the (gateway, device) pairs of a multipath route (two or
    more, ``weight 1`` each); ``via`` and ``dev`` are then its first next hop,
    the one Linux reports when it needs a single answer (source address
    selection). :meth:`select` picks the next hop of one flow.
    """

    dst: IPNetwork | str
    via: IPAddress | None = None
    dev: str | None = None
    proto: str | None = None
    scope: str | None = None
    src: IPAddress | None = None
    onlink: bool = False
    mtu: int | None = None
    type: str = "unicast"
    nexthops: tuple[tuple[IPAddress, str], ...] = ()

    @classmethod
    def multipath(cls, dst: IPNetwork, nexthops, proto: str | None = None) -> Route:
        """A route over ``nexthops`` [(gateway, device), ...]: a plain route when there is one."""
        nexthops = tuple(nexthops)
        via, dev = nexthops[0]
        return cls(dst, via, dev, proto, nexthops=nexthops if len(nexthops) > 1 else ())

    def select(self, src: IPAddress, dst: IPAddress) -> tuple[int, Route]:
        """(index, single-next-hop route) this flow takes, as ``fib_select_multipath`` chooses.

        With equal weights the kernel gives next hop *i* of *n* the hashes up to
        its upper bound ``round((i + 1) * 2**31 / n) - 1`` (``fib_rebalance``) and
        takes the first next hop whose bound is not below the flow's
        :func:`multipath_hash`. A route with one next hop returns itself.
        """
        if not self.nexthops:
            return 0, self
        flow, count = multipath_hash(src, dst), len(self.nexthops)
        # DIV_ROUND_CLOSEST_ULL(w << 31, total) - 1; the last bound is 2**31 - 1, so some index matches
        index = next(i for i in range(count) if flow <= (((i + 1) << 31) + count // 2) // count - 1)
        via, dev = self.nexthops[index]
        return index, self._replace(via=via, dev=dev, nexthops=())

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
        if self.via is not None and not self.nexthops:
            parts += ["via", str(self.via)]
        if self.dev is not None and not self.nexthops:
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
        for via, dev in self.nexthops:
            parts += ["nexthop", "via", str(via), "dev", dev, "weight", "1"]
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
