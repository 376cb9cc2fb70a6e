"""kube-apiserver's ClusterIP allocator, with KEP-3070's static and dynamic bands.

Every Service of type ClusterIP gets one address from
``--service-cluster-ip-range`` (kubeadm's default ``serviceSubnet`` is
``10.96.0.0/12``). The network address is never handed out, nor is the IPv4
broadcast address; IPv6 uses its last address.

Two addresses are spoken for by convention:

* the ``kubernetes`` Service in ``default`` always gets network + 1
  (``ServiceIPRange`` → ``GetIndexedIP(range, 1)``);
* kubeadm points the cluster DNS at network + 10 (``GetDNSIP``) - a
  convention, not an API rule: any Service could take .10 first.

KEP-3070 (``ServiceIPStaticSubrange``, GA in 1.26) makes that collision
unlikely. It splits the range at ``offset = min(max(16, size / 16), 256)``
addresses from network + 1 (0, no split, when the whole CIDR has 16 addresses
or fewer): the lower *static* band is for Services that ask for a
``clusterIP``, and dynamic allocation picks a random start in the upper band,
scans forward wrapping within it, and falls back to a random start in the
lower band only when the upper one is full.

>>> svc = ServiceIPAllocator("10.96.0.0/24")
>>> svc.kubernetes_ip, svc.dns_ip
(IPv4Address('10.96.0.1'), IPv4Address('10.96.0.10'))
>>> svc.offset, svc.static_band, svc.dynamic_band
(16, (IPv4Address('10.96.0.1'), IPv4Address('10.96.0.16')), (IPv4Address('10.96.0.17'), IPv4Address('10.96.0.254')))
>>> svc.allocate(svc.kubernetes_ip)            # the apiserver's own Service, a static request
IPv4Address('10.96.0.1')
>>> web = svc.allocate()                        # a Service without clusterIP: somewhere in .17-.254
>>> svc.dynamic_band[0] <= web <= svc.dynamic_band[1], svc.free
(True, 252)

Since v1.34 the allocator tracks IPAddress objects (``MultiCIDRServiceAllocator``
and ``DisableAllocatorDualWrite`` both on by default): no upper size limit for
IPv4, IPv6 prefixes must be /64 or longer. ``legacy=True`` models the older
bitmap allocator instead: at most 20 host bits (``/12`` for IPv4, ``/108`` for
IPv6), and IPv6 capped at 65536 slots, so only the low 16 bits of a larger
IPv6 range are used. Either way the range must hold at least 8 addresses.

Upstream seeds its generator from the clock; here ``seed`` makes a lesson
reproducible (a :class:`random.Random`, drawn through ``rand_below``).
Releasing an address that is not allocated is a silent no-op upstream; here it
raises :class:`NotAllocated`, because in a lesson it is always a mistake.

Sources: ``pkg/registry/core/service/ipallocator/{ipallocator,bitmap,interfaces}.go``,
``pkg/registry/core/service/allocator/bitmap.go``, kube-apiserver options
``validation.go`` and ``ServiceIPRange``, kubeadm ``constants.go``; expected
values in ``tests/test_ipam_serviceip.py`` come from ``bitmap_test.go``,
``ipallocator_test.go`` and kubeadm's ``constants_test.go``. Introduced in the
course's Services chapter.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

from ..addresses import IPAddress, IPNetwork, parse_address, parse_network
from ..errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from ._rand import rand_below

__all__ = [
    "ServiceIPAllocator",
    "range_offset",
    "MIN_SERVICE_RANGE_SIZE",
    "LEGACY_MAX_CIDR_BITS",
    "MIN_IPV6_PREFIX",
    "LEGACY_IPV6_SLOTS",
    "DNS_IP_INDEX",
]

#: ``ServiceIPRange``: ``min(RangeSize, 1<<16)`` must be at least 8 addresses.
MIN_SERVICE_RANGE_SIZE = 8
#: ``maxCIDRBits`` of the legacy bitmap allocator: /12 for IPv4, /108 for IPv6.
LEGACY_MAX_CIDR_BITS = 20
#: The IPAddress allocator refuses IPv6 service CIDRs shorter than /64.
MIN_IPV6_PREFIX = 64
#: The legacy bitmap's cap on an IPv6 range ("the allocator keeps a bitmap of that size").
LEGACY_IPV6_SLOTS = 1 << 16
#: kubeadm ``GetDNSIP``: the cluster DNS Service takes the tenth address.
DNS_IP_INDEX = 10
# calculateRangeOffset: min(max($min, cidrSize/$step), $max)
_OFFSET_MIN, _OFFSET_MAX, _OFFSET_STEP = 16, 256, 16

ERR_FULL = "range is full"
ERR_ALLOCATED = "provided IP is already allocated"
ERR_TOO_SMALL = "the service cluster IP range must be at least 8 IP addresses"


def _range_size(net: IPNetwork) -> int:
    """``RangeSize`` of k8s.io/utils/net: 2**h, 0 for a /0 or /1 (sic), capped at MaxInt64."""
    host = net.max_prefixlen - net.prefixlen
    if host >= net.max_prefixlen - 1:
        return 0
    return min(1 << host, (1 << 63) - 1)


def range_offset(cidr: object) -> int:
    """KEP-3070's offset: ``min(max(16, size / 16), 256)``, or 0 when the CIDR has 16 addresses or fewer.

    ``size`` is the whole CIDR, network and broadcast included (``calculateRangeOffset``).

    >>> [range_offset(c) for c in ("10.0.0.0/28", "10.0.0.0/27", "10.0.0.0/22", "10.0.0.0/21", "10.96.0.0/12")]
    [0, 16, 64, 128, 256]
    """
    size = _range_size(parse_network(cidr, obj="range_offset", field="cidr", strict=False))
    if size <= _OFFSET_MIN:
        return 0
    return min(max(_OFFSET_MIN, size // _OFFSET_STEP), _OFFSET_MAX)


class ServiceIPAllocator:
    """The ClusterIP allocator for one ``--service-cluster-ip-range`` (one family).

    Args:
        service_cidr: ``--service-cluster-ip-range``; host bits are ignored, as
            the apiserver and kubeadm do (``10.96.0.12/24`` means ``10.96.0.0/24``).
        seed: seeds the random start of dynamic allocation.
        legacy: model the pre-1.34 bitmap allocator (size limits and IPv6 cap).

    State is a set of allocated integers, never a bitmap of the whole range (a
    /12 has a million addresses, an IPv6 /64 2**64).
    """

    def __init__(self, service_cidr: object, seed: int = 0, *, legacy: bool = False):
        net = parse_network(service_cidr, obj="ServiceIPAllocator", field="service_cidr", strict=False)
        obj = f"ServiceIPAllocator {net}"
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidValue(obj, "seed", seed, "must be an integer")
        if not isinstance(legacy, bool):
            raise InvalidValue(obj, "legacy", legacy, "must be True or False")
        host = net.max_prefixlen - net.prefixlen
        if min(_range_size(net), 1 << 16) < MIN_SERVICE_RANGE_SIZE:
            raise InvalidValue(obj, "service_cidr", service_cidr,
                               f"must hold at least {MIN_SERVICE_RANGE_SIZE} addresses (/{net.max_prefixlen - 3} or shorter)",
                               upstream=ERR_TOO_SMALL)
        if legacy and host > LEGACY_MAX_CIDR_BITS:
            shortest = net.max_prefixlen - LEGACY_MAX_CIDR_BITS
            raise InvalidValue(obj, "service_cidr", service_cidr,
                               f"must be /{shortest} or longer for the legacy bitmap allocator",
                               upstream=f"specified --service-cluster-ip-range is too large; "
                                        f"for {net.max_prefixlen}-bit addresses, the mask must be >= {shortest}")
        if not legacy and net.version == 6 and net.prefixlen < MIN_IPV6_PREFIX:
            raise InvalidValue(obj, "service_cidr", service_cidr, f"must be /{MIN_IPV6_PREFIX} or longer for IPv6",
                               upstream=f"shortest allowed prefix length for service CIDR is {MIN_IPV6_PREFIX}, got {net.prefixlen}")
        if net.version == 4:
            size = (1 << host) - 2  # neither the network nor the broadcast address
        elif legacy:
            size = min(1 << host, LEGACY_IPV6_SLOTS) - 1
        else:
            size = (1 << host) - 1  # not the network address; the last one is usable
        self._obj = obj
        self._net = net
        self._legacy = legacy
        self._address = IPv4Address if net.version == 4 else IPv6Address
        self._first = int(net.network_address) + 1
        self._last = self._first + size - 1
        self._size = size
        self._offset = range_offset(net)
        self._rng = random.Random(seed)
        self._allocated: set[int] = set()
        self._skip: dict[int, int] = {}  # see _first_free

    # -- what a reader asks ------------------------------------------------------------

    @property
    def service_cidr(self) -> IPNetwork:
        """The Service CIDR, host bits masked off."""
        return self._net

    @property
    def legacy(self) -> bool:
        """True when modelling the pre-1.34 bitmap allocator."""
        return self._legacy

    @property
    def offset(self) -> int:
        """How many addresses from network + 1 form the static band (KEP-3070)."""
        return self._offset

    @property
    def static_band(self) -> tuple[IPAddress, IPAddress] | None:
        """First and last address of the lower (static) band, or None when the range is not split."""
        if not self._offset:
            return None
        return self._address(self._first), self._address(self._first + self._offset - 1)

    @property
    def dynamic_band(self) -> tuple[IPAddress, IPAddress]:
        """First and last address of the upper (dynamic) band, where allocation starts."""
        return self._address(self._first + self._offset), self._address(self._last)

    @property
    def size(self) -> int:
        """Usable addresses: 2**h - 2 for IPv4, 2**h - 1 for IPv6 (legacy: at most 65535)."""
        return self._size

    @property
    def used(self) -> int:
        """ClusterIPs handed out."""
        return len(self._allocated)

    @property
    def free(self) -> int:
        """ClusterIPs left (upstream ``Free()``)."""
        return self._size - len(self._allocated)

    @property
    def kubernetes_ip(self) -> IPAddress:
        """The ``default/kubernetes`` Service's ClusterIP: network + 1."""
        return self._address(self._first)

    @property
    def dns_ip(self) -> IPAddress:
        """kubeadm's cluster DNS address: network + 10 (``GetDNSIP``)."""
        value = int(self._net.network_address) + DNS_IP_INDEX
        if value > int(self._net.broadcast_address):
            raise InvalidValue(self._obj, "service_cidr", str(self._net),
                               "must hold a tenth address for kubeadm's cluster DNS IP")
        return self._address(value)

    def __contains__(self, ip: object) -> bool:
        """Whether ``ip`` is an allocated ClusterIP (upstream ``Has``)."""
        address = parse_address(ip, obj=self._obj, field="ip")
        return address.version == self._net.version and int(address) in self._allocated

    def __repr__(self) -> str:
        return f"<ServiceIPAllocator {self._net}: {self.used} of {self._size} used, offset {self._offset}>"

    # -- Service create / delete -------------------------------------------------------

    def allocate(self, requested: object = None) -> IPAddress:
        """A ClusterIP: ``requested`` if given (``spec.clusterIP``), else a random free one.

        A requested address may be in either band. A dynamic one comes from the
        upper band, or from the lower band once the upper band is full.
        """
        if requested is not None:
            address = parse_address(requested, obj=self._obj, field="requested")
            value = int(address)
            if address.version != self._net.version or not self._first <= value <= self._last:
                raise InvalidValue(self._obj, "requested", requested,
                                   f"must be a usable address of {self._net} "
                                   f"({self._address(self._first)}-{self._address(self._last)})",
                                   upstream=f"provided IP {address} is not in the valid range")
            if value in self._allocated:
                raise AlreadyExists(self._obj, "requested", requested, "is already the ClusterIP of another Service",
                                    upstream=ERR_ALLOCATED)
        else:
            if len(self._allocated) == self._size:
                raise Exhausted(self._obj, "service_cidr", str(self._net),
                                f"must have a free address left (all {self._size} are in use)", upstream=ERR_FULL)
            value = self._scan(self._first + self._offset, self._last)
            if value is None:  # upper band full, so the range is split and the lower band has room
                value = self._scan(self._first, self._first + self._offset - 1)
        self._allocated.add(value)
        return self._address(value)

    def release(self, ip: object) -> None:
        """Free a ClusterIP when its Service is deleted."""
        address = parse_address(ip, obj=self._obj, field="ip")
        if address.version != self._net.version or int(address) not in self._allocated:
            raise NotAllocated(self._obj, "ip", ip, "must be a ClusterIP this allocator handed out")
        self._allocated.discard(int(address))
        self._skip.clear()

    # -- internals ---------------------------------------------------------------------

    def _scan(self, low: int, high: int) -> int | None:
        """A random start in ``[low, high]``, then forward with wrap-around, to the first free address."""
        start = low + rand_below(self._rng, high - low + 1)
        value = self._first_free(start, high)
        return value if value is not None else self._first_free(low, start - 1)

    def _first_free(self, value: int, high: int) -> int | None:
        """The first free address in ``[value, high]``, or None.

        The same answer as stepping one address at a time, as upstream does,
        but runs of allocated addresses are jumped with remembered pointers
        (``_skip[a] = b``: everything in ``[a, b)`` is allocated), so filling a
        large range does not cost quadratic time. A release forgets them all.
        """
        allocated, skip, path = self._allocated, self._skip, []
        while value <= high and value in allocated:
            path.append(value)
            value = skip.get(value, value + 1)
        for visited in path:
            skip[visited] = value
        return value if value <= high else None
