"""The CNI ``host-local`` IPAM plugin: pod addresses from the node's own range, round-robin.

Flannel, kubenet-style bridges and many other CNI configurations delegate
addressing to ``host-local``. Its configuration names one or more *range sets*
(``ipam.ranges``); a range is ``{subnet, rangeStart?, rangeEnd?, gateway?}``
and each ADD takes exactly one address from each range set (so dual-stack is
two range sets). The plugin keeps its state as files on the node, under
``/var/lib/cni/networks/<network name>/``: one file per address holding the
container ID and interface name, plus ``last_reserved_ip.<i>`` per range set.

Canonicalisation fills in what the configuration leaves out:

* ``gateway`` defaults to network + 1;
* ``rangeStart`` defaults to network + 1 too: the gateway is skipped while
  iterating, not by the range bounds, so the printed range starts at .1 while
  the first address handed out is .2;
* ``rangeEnd`` defaults to the broadcast address - 1 for IPv4 and to the very
  last address for IPv6.

Choosing the next address is **round-robin**: start just after
``last_reserved_ip`` (a file that is *not* cleared on release), step through
the ranges, wrap from the last range to the first, skip each range's gateway,
and give up after one full lap. A freed address therefore comes back only
after every other one has had its turn:

>>> pods = HostLocal("10.1.2.0/29")
>>> str(pods)                        # the range set as the plugin prints it
'10.1.2.1-10.1.2.6'
>>> pods.allocate("pod-a")
IPv4Interface('10.1.2.2/29')
>>> pods.release("pod-a")
>>> pods.allocate("pod-b"), pods.last_reserved
(IPv4Interface('10.1.2.3/29'), IPv4Address('10.1.2.3'))
>>> pods.gateway_for("10.1.2.3")
IPv4Address('10.1.2.1')

Sources: ``plugins/ipam/host-local/backend/allocator/{allocator,range,range_set,config}.go``
and ``backend/disk/backend.go`` in containernetworking/plugins; expected values
in ``tests/test_ipam_hostlocal.py`` come from ``allocator_test.go``,
``range_test.go``, ``range_set_test.go`` and ``host_local_test.go``.
Introduced in the course's IPAM chapter.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated, Overlap

__all__ = ["Range", "HostLocal"]


def _inside(net: IPNetwork, start: IPAddress | None, end: IPAddress | None, address: IPAddress) -> bool:
    """``Range.Contains`` while the range is still being canonicalised (bounds may be unset)."""
    return (
        address.version == net.version
        and address in net
        and (start is None or int(address) >= int(start))
        and (end is None or int(address) <= int(end))
    )


@dataclass(frozen=True)
class Range:
    """One host-local range: ``{"subnet", "rangeStart", "rangeEnd", "gateway"}``, canonicalised.

    Construct it from strings or :mod:`ipaddress` values; the missing fields
    are filled in and checked exactly as ``Range.Canonicalize`` does, with the
    plugin's own error texts.

    >>> Range("192.0.2.0/24")
    Range(subnet=IPv4Network('192.0.2.0/24'), range_start=IPv4Address('192.0.2.1'), range_end=IPv4Address('192.0.2.254'), gateway=IPv4Address('192.0.2.1'))
    >>> str(Range("2001:db8:1::/64"))
    '2001:db8:1::1-2001:db8:1:0:ffff:ffff:ffff:ffff'
    >>> Range("192.0.2.0/31")
    Traceback (most recent call last):
    ...
    kubenet_lab.errors.InvalidValue: Range 192.0.2.0/31: 'subnet' must hold at least 4 addresses (/30 or shorter) (got '192.0.2.0/31') [Network 192.0.2.0/31 too small to allocate from]
    """

    subnet: IPNetwork
    range_start: IPAddress | None = None
    range_end: IPAddress | None = None
    gateway: IPAddress | None = None

    def __post_init__(self) -> None:
        raw = self.subnet
        net = parse_network(raw, obj="Range", field="subnet", strict=False)
        obj = f"Range {net}"
        given = ipaddress.ip_interface(raw.strip()).ip if isinstance(raw, str) else net.network_address
        if net.prefixlen > net.max_prefixlen - 2:
            raise InvalidValue(obj, "subnet", raw, f"must hold at least 4 addresses (/{net.max_prefixlen - 2} or shorter)",
                               upstream=f"Network {given}/{net.prefixlen} too small to allocate from")
        if given != net.network_address:
            raise InvalidValue(obj, "subnet", raw, f"must be a network address without host bits set, e.g. '{net}'",
                               upstream=f"Network has host bits set. For a subnet mask of length {net.prefixlen} "
                                        f"the network address is {net.network_address}")
        start, end, gateway = (
            None if value is None else parse_address(value, obj=obj, field=field)
            for value, field in ((self.range_start, "range_start"), (self.range_end, "range_end"), (self.gateway, "gateway"))
        )
        if gateway is None:
            gateway = net.network_address + 1
        elif gateway.version != net.version or gateway not in net:
            raise InvalidValue(obj, "gateway", self.gateway, f"must be inside {net}",
                               upstream=f"gateway {gateway} not in network {net}")
        if start is None:
            start = net.network_address + 1
        elif not _inside(net, None, end, start):
            raise InvalidValue(obj, "range_start", self.range_start, f"must be inside {net} and not after range_end",
                               upstream=f"RangeStart {start} not in network {net}")
        if end is None:
            end = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
        elif not _inside(net, start, end, end):
            raise InvalidValue(obj, "range_end", self.range_end, f"must be inside {net} and not before range_start",
                               upstream=f"RangeEnd {end} not in network {net}")
        object.__setattr__(self, "subnet", net)
        object.__setattr__(self, "range_start", start)
        object.__setattr__(self, "range_end", end)
        object.__setattr__(self, "gateway", gateway)

    def __contains__(self, address: object) -> bool:
        """``Range.Contains``: inside the subnet and between rangeStart and rangeEnd (gateway included)."""
        return _inside(self.subnet, self.range_start, self.range_end, parse_address(address, obj=str(self), field="ip"))

    def overlaps(self, other: Range) -> bool:
        """``Range.Overlaps``: either range contains the other's start or end; families never overlap."""
        return self.subnet.version == other.subnet.version and (
            other.range_start in self or other.range_end in self or self.range_start in other or self.range_end in other
        )

    def __str__(self) -> str:
        return f"{self.range_start}-{self.range_end}"


class HostLocal:
    """One host-local range set on one node: one address per pod, round-robin.

    Args:
        subnet, range_start, range_end, gateway: the single-range form
            (``ipam.subnet`` …), e.g. ``HostLocal("10.244.1.0/24")`` for a node
            whose ``spec.podCIDR`` is 10.244.1.0/24.
        ranges: the list form (``ipam.ranges[i]``): several non-overlapping
            :class:`Range` values (or subnets) of one family, visited in order.
            Use one or the other: upstream turns the single-range form into a
            range set of its own, so combining them would be two range sets.

    ``owner`` stands for the container ID and interface name that the real
    plugin writes into each address file. As upstream, a requested address
    skips the one-address-per-owner check, and :meth:`release` frees every
    address the owner holds. Differences: releasing an owner that holds nothing
    raises :class:`NotAllocated` (upstream DEL succeeds silently), and every
    error leaves the state as it was (upstream can leave a stale
    ``last_reserved_ip`` after a failed multi-range-set ADD).
    """

    def __init__(
        self,
        subnet: object = None,
        range_start: object = None,
        range_end: object = None,
        gateway: object = None,
        *,
        ranges: object = None,
    ):
        if ranges is None:
            if subnet is None:
                raise InvalidValue("HostLocal", "subnet", None, "must be given, or ranges=[Range(...), ...]",
                                   upstream="no IP ranges specified")
            ranges = (Range(subnet, range_start, range_end, gateway),)
        elif any(v is not None for v in (subnet, range_start, range_end, gateway)):
            raise InvalidValue("HostLocal", "ranges", ranges,
                               "must not be combined with subnet/range_start/range_end/gateway: a HostLocal is one range set")
        elif isinstance(ranges, (str, bytes)) or not hasattr(ranges, "__iter__"):
            raise InvalidValue("HostLocal", "ranges", ranges, "must be a list of Range values or subnets")
        else:
            ranges = tuple(r if isinstance(r, Range) else Range(r) for r in ranges)
            if not ranges:
                raise InvalidValue("HostLocal", "ranges", [], "must hold at least one range", upstream="empty range set")
        text = ",".join(str(r) for r in ranges)
        obj = f"HostLocal {text}"
        if len({r.subnet.version for r in ranges}) > 1:
            raise InvalidValue(obj, "ranges", text, "must all be of one address family", upstream="mixed address families")
        for i, first in enumerate(ranges):
            for second in ranges[i + 1 :]:
                if first.overlaps(second):
                    raise Overlap(obj, "ranges", text, f"must not overlap ({first} and {second} do)",
                                  upstream=f"subnets {first} and {second} overlap")
        self._obj = obj
        self._text = text
        self._ranges = ranges
        self._version = ranges[0].subnet.version
        self._iface = IPv4Interface if self._version == 4 else IPv6Interface
        self._address = IPv4Address if self._version == 4 else IPv6Address
        self._spans = [(int(r.range_start), int(r.range_end), int(r.gateway), r.subnet.prefixlen) for r in ranges]
        self._owners: dict[int, str] = {}  # address -> owner: the files in /var/lib/cni/networks/<net>/
        self._held: dict[str, list[int]] = {}  # owner -> addresses, in the order they were reserved
        self._last: int | None = None  # last_reserved_ip.<i>

    # -- what a reader asks ------------------------------------------------------------

    @property
    def ranges(self) -> tuple[Range, ...]:
        """The canonicalised ranges of this range set, in iteration order."""
        return self._ranges

    @property
    def last_reserved(self) -> IPAddress | None:
        """The ``last_reserved_ip`` file: the last address handed out, kept across releases.

        It can be set, as an administrator could edit the file; the next walk
        starts just after it if it lies in the range set, else from the top.
        """
        return None if self._last is None else self._address(self._last)

    @last_reserved.setter
    def last_reserved(self, ip: object) -> None:
        # Like editing the file on the node: any address of the family will do,
        # even one outside the range set (the iterator then starts from the top).
        if ip is None:
            self._last = None
            return
        address = parse_address(ip, obj=self._obj, field="last_reserved")
        if address.version != self._version:
            raise InvalidValue(self._obj, "last_reserved", ip, f"must be an IPv{self._version} address")
        self._last = int(address)

    @property
    def allocated(self) -> dict[IPAddress, str]:
        """Every address in use and its owner, lowest address first (the store's files)."""
        return {self._address(v): self._owners[v] for v in sorted(self._owners)}

    @property
    def size(self) -> int:
        """Addresses this range set can hand out: every range's span minus its gateway."""
        return sum(end - start + 1 - (start <= gw <= end) for start, end, gw, _ in self._spans)

    @property
    def free(self) -> int:
        """Addresses still free."""
        return self.size - len(self._owners)

    def owner_of(self, ip: object) -> str | None:
        """Who holds ``ip``, or None if it is free."""
        address = parse_address(ip, obj=self._obj, field="ip")
        return self._owners.get(int(address)) if address.version == self._version else None

    def gateway_for(self, ip: object) -> IPAddress:
        """The gateway the CNI result carries for ``ip``: that of the range containing it."""
        address = parse_address(ip, obj=self._obj, field="ip")
        return self._ranges[self._range_of(address, ip, "ip")].gateway

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"<HostLocal {self._text}: {len(self._owners)} of {self.size} used, last_reserved {self.last_reserved}>"

    # -- CNI ADD / DEL -----------------------------------------------------------------

    def allocate(self, owner: str, requested: object = None) -> IPv4Interface | IPv6Interface:
        """Reserve an address for ``owner`` (``IPAllocator.Get``); it carries the subnet's prefix length.

        With ``requested`` (``CNI_ARGS IP=``, ``args.cni.ips``) that exact
        address is reserved if it is in the range set, not a gateway, and free.
        Without it, the round-robin iterator picks the next free address.
        """
        if not isinstance(owner, str) or not owner:
            raise InvalidValue(self._obj, "owner", owner, "must be a non-empty container ID")
        if requested is not None:
            address = parse_address(requested, obj=self._obj, field="requested")
            index = self._range_of(address, requested, "requested")
            value = int(address)
            if value == self._spans[index][2]:
                raise InvalidValue(self._obj, "requested", requested, "must not be the range's gateway",
                                   upstream=f"requested ip {address} is subnet's gateway")
            if value in self._owners:
                raise AlreadyExists(self._obj, "requested", requested, f"is already held by {self._owners[value]}",
                                    upstream=f"requested IP address {address} is not available in range set {self._text}")
        else:
            held = self._held.get(owner)
            if held:
                address = self._address(held[0])
                raise AlreadyExists(self._obj, "owner", owner, f"already holds {address}",
                                    upstream=f"{address} has been allocated to {owner}, duplicate allocation is not allowed")
            value, index = self._next_free()
            if value is None:
                raise Exhausted(self._obj, "ranges", self._text, "must have a free address left",
                                upstream=f"no IP addresses available in range set: {self._text}")
        self._owners[value] = owner
        self._held.setdefault(owner, []).append(value)
        self._last = value
        return self._iface((value, self._spans[index][3]))

    def release(self, owner: str) -> None:
        """Free every address ``owner`` holds (``ReleaseByID``); ``last_reserved`` stays."""
        held = self._held.pop(owner, None) if isinstance(owner, str) else None
        if not held:
            raise NotAllocated(self._obj, "owner", owner, "must hold an address in this range set")
        for value in held:
            del self._owners[value]

    # -- internals ---------------------------------------------------------------------

    def _range_of(self, address: IPAddress, raw: object, field: str) -> int:
        """``RangeSet.RangeFor``: the index of the range containing ``address``."""
        if address.version == self._version:
            value = int(address)
            for index, (start, end, _, _) in enumerate(self._spans):
                if start <= value <= end:
                    return index
        raise InvalidValue(self._obj, field, raw, f"must be inside the range set {self._text}",
                           upstream=f"{address} not in range set {self._text}")

    def _next_free(self) -> tuple[int | None, int]:
        """The ``RangeIter`` walk: from just after last_reserved_ip (or the first rangeStart), one lap."""
        spans, owners, last, count = self._spans, self._owners, self._last, len(self._spans)
        index, current = 0, spans[0][0]
        if last is not None:
            for i, (start, end, _, _) in enumerate(spans):
                if start <= last <= end:
                    index, current = ((i + 1) % count, spans[(i + 1) % count][0]) if last == end else (i, last + 1)
                    break
        first = current
        _, end, gateway, _ = spans[index]
        while True:
            if current != gateway and current not in owners:
                return current, index
            if current == end:
                index = (index + 1) % count
                current, end, gateway, _ = spans[index]
            else:
                current += 1
            if current == first:
                return None, index
