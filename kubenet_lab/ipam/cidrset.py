"""kube-controller-manager's node podCIDR allocator (the ``RangeAllocator`` and its ``cidrset``).

With ``--allocate-node-cidrs=true`` kube-controller-manager carves
``--cluster-cidr`` into equal node-sized slots (``--node-cidr-mask-size``,
default /24 for IPv4 and /64 for IPv6) and writes one slot into each Node's
``spec.podCIDR``. Flannel (``--kube-subnet-mgr``), kubenet and the host-local
plugin then hand out pod addresses from it.

Slot *i* is the cluster network with *i* written into the bits between the two
masks, so slot 0 is the cluster's own first subnet: nothing is skipped
(flannel's own etcd mode does skip it). The controller picks slots **next-fit**:
it remembers ``nextCandidate``, one past the slot it handed out last, scans
forward from there and wraps round once. A freed slot is therefore reused only
when the scan comes back round to it.

>>> cidrs = NodeCIDRAllocator("10.244.0.0/16")
>>> cidrs.allocate(), cidrs.allocate(), cidrs.allocate()
(IPv4Network('10.244.0.0/24'), IPv4Network('10.244.1.0/24'), IPv4Network('10.244.2.0/24'))
>>> cidrs.release("10.244.0.0/24")          # node-0 is deleted
>>> cidrs.allocate()                        # next-fit: slot 0 waits for the wrap
IPv4Network('10.244.3.0/24')

Occupy and Release take any CIDR and round it out to whole slots, which is how
the controller fences off a Service CIDR that overlaps the cluster CIDR, and
how it re-reads ``spec.podCIDRs`` of existing Nodes after a restart:

>>> cidrs.occupy("10.244.0.0/22")           # slots 0-3, of which 0 was free
>>> cidrs.used_ranges(), cidrs.used
([(0, 3)], 4)

Sources: ``pkg/controller/nodeipam/ipam/cidrset/cidr_set.go`` and
``range_allocator.go`` in kubernetes/kubernetes; the expected values in
``tests/test_ipam_cidrset.py`` come from ``cidr_set_test.go`` and
``range_allocator_test.go``. Introduced in the course's IPAM chapter.
"""

from __future__ import annotations

from ..addresses import IPNetwork, parse_network
from ..errors import Exhausted, InvalidValue, NotAllocated

__all__ = [
    "NodeCIDRAllocator",
    "DEFAULT_NODE_MASK_IPV4",
    "DEFAULT_NODE_MASK_IPV6",
    "CLUSTER_SUBNET_MAX_DIFF",
]

#: ``defaultNodeMaskCIDRIPv4`` in cmd/kube-controller-manager (``--node-cidr-mask-size-ipv4``).
DEFAULT_NODE_MASK_IPV4 = 24
#: ``defaultNodeMaskCIDRIPv6`` in cmd/kube-controller-manager (``--node-cidr-mask-size-ipv6``).
DEFAULT_NODE_MASK_IPV6 = 64
#: ``clusterSubnetMaxDiff`` in cidr_set.go: an IPv6 node mask may be at most 16 bits
#: longer than the cluster mask, "due to the uncompressed bitmap". IPv4 has no such limit.
CLUSTER_SUBNET_MAX_DIFF = 16

ERR_CIDR_RANGE_NO_CIDRS_REMAINING = (
    "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
)
ERR_CIDR_SET_SUBNET_TOO_BIG = "New CIDR set failed; the node CIDR size is too big"
ERR_NODE_MASK_SHORTER_THAN_CLUSTER = (
    "Controller: Invalid --cluster-cidr, mask size of cluster CIDR must be less than or equal to "
    "--node-cidr-mask-size configured for CIDR family"
)

_GROW_MIN = 1024  # slots the used-map grows by at least, so growth is amortised


class NodeCIDRAllocator:
    """One CIDR set: the podCIDR slots of one ``--cluster-cidr`` (one per IP family).

    Args:
        cluster_cidr: ``--cluster-cidr``, e.g. ``"10.244.0.0/16"``. Host bits
            are masked off as the controller does (``10.10.0.1/16`` means
            ``10.10.0.0/16``).
        node_mask: ``--node-cidr-mask-size``; default 24 (IPv4) or 64 (IPv6).
            It must not be shorter than the cluster prefix, and for IPv6 it may
            be at most 16 bits longer (so /48 is the widest IPv6 cluster CIDR
            at the default /64).

    The slot map is a ``bytearray`` with one byte per slot, grown only as far as
    the highest slot ever used, so allocation, ``find`` of the next free slot,
    and Occupy/Release of whole ranges all run at C speed.

    Deliberate difference: upstream ``Release`` is idempotent. Here releasing a
    CIDR none of whose slots is in use raises :class:`NotAllocated`, because in
    a lesson that is always a mistake worth pointing at. Releasing an allocated
    CIDR twice therefore succeeds once and then raises.

    >>> v6 = NodeCIDRAllocator("fd00:10:244::/56")
    >>> v6.node_mask, v6.size, v6.allocate()
    (64, 256, IPv6Network('fd00:10:244::/64'))
    >>> NodeCIDRAllocator("fd00::/32")
    Traceback (most recent call last):
    ...
    kubenet_lab.errors.InvalidValue: NodeCIDRAllocator fd00::/32: 'node_mask' must be at most /48 ... [New CIDR set failed; the node CIDR size is too big]
    """

    def __init__(self, cluster_cidr: object, node_mask: int | None = None):
        cluster = parse_network(cluster_cidr, obj="NodeCIDRAllocator", field="cluster_cidr", strict=False)
        obj = f"NodeCIDRAllocator {cluster}"
        if node_mask is None:
            node_mask = DEFAULT_NODE_MASK_IPV4 if cluster.version == 4 else DEFAULT_NODE_MASK_IPV6
        elif isinstance(node_mask, bool) or not isinstance(node_mask, int) or not 0 <= node_mask <= cluster.max_prefixlen:
            raise InvalidValue(obj, "node_mask", node_mask, f"must be a prefix length between 0 and {cluster.max_prefixlen}")
        if node_mask < cluster.prefixlen:
            raise InvalidValue(
                obj, "node_mask", node_mask,
                f"must be at least the cluster CIDR's prefix length /{cluster.prefixlen}",
                upstream=ERR_NODE_MASK_SHORTER_THAN_CLUSTER,
            )
        if cluster.version == 6 and node_mask - cluster.prefixlen > CLUSTER_SUBNET_MAX_DIFF:
            raise InvalidValue(
                obj, "node_mask", node_mask,
                f"must be at most /{cluster.prefixlen + CLUSTER_SUBNET_MAX_DIFF} for an IPv6 cluster CIDR "
                f"/{cluster.prefixlen} ({CLUSTER_SUBNET_MAX_DIFF} bits longer)",
                upstream=ERR_CIDR_SET_SUBNET_TOO_BIG,
            )
        self._obj = obj
        self._cluster = cluster
        self._node_mask = node_mask
        self._size = 1 << (node_mask - cluster.prefixlen)
        self._shift = cluster.max_prefixlen - node_mask
        self._base = int(cluster.network_address)
        self._used = bytearray()  # one byte per slot; slots past its end are free
        self._count = 0
        self._next = 0  # nextCandidate

    # -- what a reader asks ---------------------------------------------------------

    @property
    def cluster_cidr(self) -> IPNetwork:
        """The cluster CIDR this set carves up, host bits masked off."""
        return self._cluster

    @property
    def node_mask(self) -> int:
        """The prefix length of every node's podCIDR (``--node-cidr-mask-size``)."""
        return self._node_mask

    @property
    def size(self) -> int:
        """Number of slots: ``2 ** (node_mask - cluster prefix)`` (upstream ``maxCIDRs``)."""
        return self._size

    @property
    def used(self) -> int:
        """Slots in use, whether allocated or occupied (upstream ``allocatedCIDRs``)."""
        return self._count

    @property
    def free(self) -> int:
        """Slots still free."""
        return self._size - self._count

    @property
    def next_candidate(self) -> int:
        """The slot the next scan starts from (upstream ``nextCandidate``)."""
        return self._next

    def used_ranges(self) -> list[tuple[int, int]]:
        """The used slots as inclusive ``(first, last)`` index runs, lowest first."""
        runs, used = [], self._used
        start = used.find(1)
        while start != -1:
            stop = used.find(0, start)
            if stop == -1:
                stop = len(used)
            runs.append((start, stop - 1))
            start = used.find(1, stop)
        return runs

    def cidr_at(self, index: int) -> IPNetwork:
        """The podCIDR of slot ``index`` (upstream ``indexToCIDRBlock``).

        >>> NodeCIDRAllocator("10.244.0.0/16").cidr_at(15)
        IPv4Network('10.244.15.0/24')
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self._size:
            raise InvalidValue(self._obj, "index", index, f"must be a slot index between 0 and {self._size - 1}")
        return self._network(index)

    def slot_of(self, cidr: object) -> int:
        """The slot index that holds the first address of ``cidr`` (upstream ``getIndexForCIDR``).

        >>> NodeCIDRAllocator("192.168.0.0/16").slot_of("192.168.151.0/24")
        151
        """
        net = parse_network(cidr, obj=self._obj, field="cidr", strict=False)
        ip = net.network_address
        index = (self._base ^ int(ip)) >> self._shift
        if net.version != self._cluster.version or index >= self._size:
            raise InvalidValue(
                self._obj, "cidr", cidr, f"must lie inside the cluster CIDR {self._cluster}",
                upstream=f"CIDR: {ip}/{self._node_mask} is out of the range of CIDR allocator",
            )
        return index

    # -- what the controller does ----------------------------------------------------

    def allocate(self) -> IPNetwork:
        """Hand out the next free podCIDR, next-fit from ``next_candidate`` (``AllocateNext``)."""
        if self._count == self._size:
            raise Exhausted(
                self._obj, "cluster_cidr", str(self._cluster),
                f"must have a free /{self._node_mask} left (all {self._size} are in use)",
                upstream=ERR_CIDR_RANGE_NO_CIDRS_REMAINING,
            )
        index = self._first_free_from(self._next)
        self._grow(index + 1)
        self._used[index] = 1
        self._count += 1
        self._next = (index + 1) % self._size
        return self._network(index)

    def occupy(self, cidr: object) -> None:
        """Mark every slot that ``cidr`` touches as used (``Occupy``); already-used slots stay used.

        A CIDR inside one slot marks that slot; a CIDR as large as the cluster
        CIDR or larger marks all of them. ``next_candidate`` does not move.
        """
        begin, end = self._span(cidr)
        self._grow(end + 1)
        width = end - begin + 1
        self._count += width - self._used[begin : end + 1].count(1)
        self._used[begin : end + 1] = b"\x01" * width

    def release(self, cidr: object) -> None:
        """Free every slot that ``cidr`` touches (``Release``); ``next_candidate`` does not move.

        Raises :class:`NotAllocated` if none of those slots is in use (upstream
        returns success; see the class docstring).
        """
        begin, end = self._span(cidr)
        stop = min(end + 1, len(self._used))
        freed = self._used[begin:stop].count(1) if begin < stop else 0
        if not freed:
            raise NotAllocated(
                self._obj, "cidr", cidr,
                f"must cover at least one slot in use (slots {begin}-{end} are all free)",
            )
        self._used[begin:stop] = bytes(stop - begin)
        self._count -= freed

    def __repr__(self) -> str:
        return (
            f"<NodeCIDRAllocator {self._cluster} /{self._node_mask}: "
            f"{self._count} of {self._size} used, next slot {self._next}>"
        )

    # -- internals -------------------------------------------------------------------

    def _network(self, index: int) -> IPNetwork:
        return type(self._cluster)((self._base | (index << self._shift), self._node_mask))

    def _first_free_from(self, start: int) -> int:
        used = self._used
        if start >= len(used):
            return start
        index = used.find(0, start)
        if index != -1:
            return index
        if len(used) < self._size:
            return len(used)
        return used.find(0, 0, start)

    def _grow(self, needed: int) -> None:
        have = len(self._used)
        if needed > have:
            self._used.extend(bytes(min(self._size, max(needed, 2 * have, _GROW_MIN)) - have))

    def _span(self, cidr: object) -> tuple[int, int]:
        """First and last slot index touched by ``cidr`` (``getBeginningAndEndIndices``)."""
        net = parse_network(cidr, obj=self._obj, field="cidr", strict=False)
        cluster = self._cluster
        if net.version != cluster.version or not net.overlaps(cluster):
            raise InvalidValue(
                self._obj, "cidr", cidr, f"must overlap the cluster CIDR {cluster}",
                upstream=f"cidr {net} is out the range of cluster cidr {cluster}",
            )
        if net.prefixlen <= cluster.prefixlen:
            return 0, self._size - 1
        return (
            (int(net.network_address) - self._base) >> self._shift,
            (int(net.broadcast_address) - self._base) >> self._shift,
        )
