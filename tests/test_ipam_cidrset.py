"""NodeCIDRAllocator against kube-controller-manager's own test cases.

Every expected value below is taken from kubernetes/kubernetes:
``pkg/controller/nodeipam/ipam/cidrset/cidr_set_test.go`` (named ``cidr_set_test``)
and ``pkg/controller/nodeipam/ipam/range_allocator_test.go`` (``range_allocator_test``).
Each test names the upstream test it ports.
"""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from kubenet_lab.errors import Exhausted, InvalidValue, NotAllocated
from kubenet_lab.ipam import NodeCIDRAllocator
from kubenet_lab.ipam.cidrset import (
    ERR_CIDR_RANGE_NO_CIDRS_REMAINING,
    ERR_CIDR_SET_SUBNET_TOO_BIG,
    ERR_NODE_MASK_SHORTER_THAN_CLUSTER,
)


def state(a: NodeCIDRAllocator) -> tuple:
    return a.used, a.used_ranges(), a.next_candidate


# cidr_set_test TestCIDRSetFullyAllocated
@pytest.mark.parametrize(
    "cluster, mask, expected",
    [
        ("127.123.234.0/30", 30, "127.123.234.0/30"),
        ("beef:1234::/30", 30, "beef:1234::/30"),
    ],
)
def test_fully_allocated(cluster, mask, expected):
    a = NodeCIDRAllocator(cluster, mask)
    p = a.allocate()
    assert str(p) == expected
    with pytest.raises(Exhausted) as err:
        a.allocate()
    assert err.value.upstream == ERR_CIDR_RANGE_NO_CIDRS_REMAINING
    a.release(p)
    assert str(a.allocate()) == expected
    with pytest.raises(Exhausted):
        a.allocate()


# cidr_set_test TestIndexToCIDRBlock
@pytest.mark.parametrize(
    "cluster, mask, index, block",
    [
        ("127.123.3.0/16", 24, 0, "127.123.0.0/24"),
        ("127.123.0.0/16", 24, 15, "127.123.15.0/24"),
        ("192.168.5.219/28", 32, 5, "192.168.5.213/32"),
        ("2001:0db8:1234:3::/48", 64, 0, "2001:db8:1234::/64"),
        ("2001:0db8:1234::/48", 64, 15, "2001:db8:1234:f::/64"),
        ("2001:0db8:85a3::8a2e:0370:7334/50", 63, 6425, "2001:db8:85a3:3232::/63"),
        ("2001:0db8::/32", 48, 0, "2001:db8::/48"),
        ("2001:0db8::/32", 48, 15, "2001:db8:f::/48"),
        ("2001:0db8:85a3::8a2e:0370:7334/32", 48, 6425, "2001:db8:1919::/48"),
        ("2001:0db8:1234:ff00::/56", 72, 0, "2001:db8:1234:ff00::/72"),
        ("2001:0db8:1234:ff00::/56", 72, 15, "2001:db8:1234:ff00:f00::/72"),
        ("2001:0db8:1234:ff00::0370:7334/56", 72, 6425, "2001:db8:1234:ff19:1900::/72"),
        ("2001:0db8:1234:0:1234::/80", 96, 0, "2001:db8:1234:0:1234::/96"),
        ("2001:0db8:1234:0:1234::/80", 96, 15, "2001:db8:1234:0:1234:f::/96"),
        ("2001:0db8:1234:ff00::0370:7334/80", 96, 6425, "2001:db8:1234:ff00:0:1919::/96"),
    ],
)
def test_index_to_cidr_block(cluster, mask, index, block):
    assert str(NodeCIDRAllocator(cluster, mask).cidr_at(index)) == block


# cidr_set_test TestCIDRSet_RandomishAllocation
@pytest.mark.parametrize("cluster", ["127.123.234.0/16", "beef:1234::/16"])
def test_randomish_allocation(cluster):
    a = NodeCIDRAllocator(cluster, 24)
    cidrs = [a.allocate() for _ in range(256)]
    with pytest.raises(Exhausted):
        a.allocate()
    for c in cidrs:
        a.release(c)
    again = [a.allocate() for _ in range(256)]
    with pytest.raises(Exhausted):
        a.allocate()
    assert again == cidrs


# cidr_set_test TestCIDRSet_AllocationOccupied
@pytest.mark.parametrize("cluster", ["127.123.234.0/16", "beef:1234::/16"])
def test_allocation_occupied(cluster):
    a = NodeCIDRAllocator(cluster, 24)
    cidrs = [a.allocate() for _ in range(256)]
    with pytest.raises(Exhausted):
        a.allocate()
    for c in cidrs:
        a.release(c)
    for c in cidrs[128:]:
        a.occupy(c)
    a.occupy(cidrs[128])  # occupying twice changes nothing
    again = [a.allocate() for _ in range(128)]
    with pytest.raises(Exhausted):
        a.allocate()
    assert again + cidrs[128:] == cidrs


# cidr_set_test TestDoubleOccupyRelease
def test_double_occupy_release():
    a = NodeCIDRAllocator("10.42.0.0/16", 24)
    a.occupy("10.42.5.0/24")
    assert a.used == 1
    a.occupy("10.42.9.0/24")
    assert a.used == 2
    a.occupy("10.42.8.0/22")  # four slots, one already used: +3
    assert a.used == 5
    a.occupy("10.42.9.0/24")
    assert a.used == 5
    a.release("10.42.9.0/24")
    assert a.used == 4
    # upstream: "Release an unoccupied element: no change" (and no error).
    # Here it raises NotAllocated, and still changes nothing.
    with pytest.raises(NotAllocated):
        a.release("10.42.9.0/24")
    assert a.used == 4
    a.release("10.42.4.0/22")  # four slots, only one of which is used: -1
    assert a.used == 3
    for _ in range((1 << 8) - 3):
        a.allocate()
    with pytest.raises(Exhausted):
        a.allocate()


# cidr_set_test TestGetBitforCIDR
@pytest.mark.parametrize(
    "cluster, mask, subnet, bit",
    [
        ("127.0.0.0/8", 16, "127.0.0.0/16", 0),
        ("be00::/8", 16, "be00::/16", 0),
        ("127.0.0.0/8", 16, "127.123.0.0/16", 123),
        ("be00::/8", 16, "beef::/16", 0xEF),
        ("127.0.0.0/8", 16, "127.168.0.0/16", 168),
        ("be00::/8", 16, "be68::/16", 0x68),
        ("127.0.0.0/8", 16, "127.224.0.0/16", 224),
        ("be00::/8", 16, "be24::/16", 0x24),
        ("192.168.0.0/16", 24, "192.168.12.0/24", 12),
        ("beef::/16", 24, "beef:1200::/24", 0x12),
        ("192.168.0.0/16", 24, "192.168.151.0/24", 151),
        ("beef::/16", 24, "beef:9700::/24", 0x97),
    ],
)
def test_get_bit_for_cidr(cluster, mask, subnet, bit):
    assert NodeCIDRAllocator(cluster, mask).slot_of(subnet) == bit


# cidr_set_test TestGetBitforCIDR, the two error cases
@pytest.mark.parametrize(
    "cluster, subnet, upstream",
    [
        ("192.168.0.0/16", "127.168.224.0/24", "CIDR: 127.168.224.0/24 is out of the range of CIDR allocator"),
        ("beef::/16", "2001:db00::/24", "CIDR: 2001:db00::/24 is out of the range of CIDR allocator"),
    ],
)
def test_get_bit_for_cidr_out_of_range(cluster, subnet, upstream):
    with pytest.raises(InvalidValue) as err:
        NodeCIDRAllocator(cluster, 24).slot_of(subnet)
    assert err.value.upstream == upstream


# cidr_set_test TestOccupy
@pytest.mark.parametrize(
    "cluster, mask, subnet, begin, end",
    [
        ("127.0.0.0/8", 16, "127.0.0.0/8", 0, 255),
        ("2001:beef:1200::/40", 48, "2001:beef:1200::/40", 0, 255),
        ("127.0.0.0/8", 16, "127.0.0.0/2", 0, 255),
        ("2001:beef:1200::/40", 48, "2001:beef:1234::/34", 0, 255),
        ("127.0.0.0/8", 16, "127.0.0.0/16", 0, 0),
        ("2001:beef:1200::/40", 48, "2001:beef:1200::/48", 0, 0),
        ("127.0.0.0/8", 32, "127.0.0.0/16", 0, 65535),
        ("2001:beef:1200::/48", 64, "2001:beef:1200::/48", 0, 65535),
        ("127.0.0.0/7", 16, "127.0.0.0/15", 256, 257),
        ("2001:beef:7f00::/39", 48, "2001:beef:7f00::/47", 256, 257),
        ("127.0.0.0/7", 15, "127.0.0.0/15", 128, 128),
        ("2001:beef:7f00::/39", 47, "2001:beef:7f00::/47", 128, 128),
        ("127.0.0.0/7", 18, "127.0.0.0/15", 1024, 1031),
        ("2001:beef:7f00::/39", 50, "2001:beef:7f00::/47", 1024, 1031),
    ],
)
def test_occupy(cluster, mask, subnet, begin, end):
    a = NodeCIDRAllocator(cluster, mask)
    a.occupy(subnet)
    assert a.used_ranges() == [(begin, end)]
    assert a.used == end - begin + 1


# cidr_set_test TestCIDRSetv6
@pytest.mark.parametrize(
    "cluster, mask, first, second",
    [
        ("127.0.0.0/8", 32, "127.0.0.0/32", "127.0.0.1/32"),
        ("2001:beef:1234:369b::/60", 64, "2001:beef:1234:3690::/64", "2001:beef:1234:3691::/64"),
    ],
)
def test_cidr_set_v6(cluster, mask, first, second):
    a = NodeCIDRAllocator(cluster, mask)
    assert (str(a.allocate()), str(a.allocate())) == (first, second)


# cidr_set_test TestCIDRSetv6 "Max cluster subnet size with IPv6"
def test_ipv6_node_mask_at_most_16_bits_longer():
    with pytest.raises(InvalidValue) as err:
        NodeCIDRAllocator("beef:1234::/32", 49)
    assert err.value.upstream == ERR_CIDR_SET_SUBNET_TOO_BIG
    assert NodeCIDRAllocator("beef:1234::/32", 48).size == 1 << 16


# cidr_set_test TestCidrSetMetrics: release and occupy of the whole cluster CIDR
def test_release_and_occupy_whole_cluster():
    a = NodeCIDRAllocator("10.0.0.0/16", 24)
    for i in range(1, 257):
        a.allocate()
        assert a.used == i
    a.release("10.0.0.0/16")
    assert a.used == 0
    a.occupy("10.0.0.0/16")
    assert a.used == 256


# cidr_set_test TestCidrSetMetricsHistogram: Occupy does not move nextCandidate,
# so AllocateNext tries 128 slots and lands on slot 128.
def test_occupy_does_not_move_next_candidate():
    a = NodeCIDRAllocator("10.0.0.0/16", 24)
    a.occupy("10.0.0.0/17")
    assert (a.used, a.next_candidate) == (128, 0)
    assert a.allocate() == ip_network("10.0.128.0/24")
    assert (a.used, a.next_candidate) == (129, 129)


# cidr_set_test TestCidrSetMetricsDual
def test_dual_stack_whole_range_occupy_release():
    v4, v6 = NodeCIDRAllocator("10.0.0.0/16", 24), NodeCIDRAllocator("2001:db8::/48", 64)
    v4.occupy("10.0.0.0/16")
    v6.occupy("2001:db8::/48")
    assert (v4.used, v6.used) == (256, 65536)
    v4.release("10.0.0.0/16")
    v6.release("2001:db8::/48")
    assert (v4.used, v6.used) == (0, 0)


# range_allocator_test TestAllocateOrOccupyCIDRSuccess
@pytest.mark.parametrize(
    "cluster, mask, service_cidr, occupied, expected",
    [
        # "When there's no ServiceCIDR return first CIDR in range"
        ("127.123.234.0/24", 30, None, [], "127.123.234.0/30"),
        # "Correctly filter out ServiceCIDR"
        ("127.123.234.0/24", 30, "127.123.234.0/26", [], "127.123.234.64/30"),
        # "Correctly ignore already allocated CIDRs"
        ("127.123.234.0/24", 30, "127.123.234.0/26",
         ["127.123.234.64/30", "127.123.234.68/30", "127.123.234.72/30", "127.123.234.80/30"], "127.123.234.76/30"),
        # "no double counting": two nodes already hold 10.10.0.0/24 and 10.10.2.0/24
        ("10.10.0.0/22", 24, None, ["10.10.0.0/24", "10.10.2.0/24"], "10.10.1.0/24"),
    ],
)
def test_allocate_or_occupy_success(cluster, mask, service_cidr, occupied, expected):
    a = NodeCIDRAllocator(cluster, mask)
    if service_cidr:
        a.occupy(service_cidr)
    for c in occupied:
        a.occupy(c)
    assert str(a.allocate()) == expected


# range_allocator_test TestAllocateOrOccupyCIDRSuccess "Dualstack CIDRs v4,v6": these sets are valid
@pytest.mark.parametrize("cluster, mask", [("127.123.234.0/8", 24), ("ace:cab:deca::/84", 98)])
def test_dual_stack_cluster_cidrs_are_valid(cluster, mask):
    assert NodeCIDRAllocator(cluster, mask).allocate().prefixlen == mask


# range_allocator_test TestAllocateOrOccupyCIDRFailure
def test_allocate_fails_when_all_occupied():
    a = NodeCIDRAllocator("127.123.234.0/28", 30)
    for c in ["127.123.234.0/30", "127.123.234.4/30", "127.123.234.8/30", "127.123.234.12/30"]:
        a.occupy(c)
    before = state(a)
    with pytest.raises(Exhausted):
        a.allocate()
    assert state(a) == before


# range_allocator_test TestReleaseCIDRSuccess "Correctly release preallocated CIDR"
def test_release_preallocated_cidr():
    a = NodeCIDRAllocator("127.123.234.0/28", 30)
    for c in ["127.123.234.0/30", "127.123.234.4/30", "127.123.234.8/30", "127.123.234.12/30"]:
        a.occupy(c)
    with pytest.raises(Exhausted):
        a.allocate()
    a.release("127.123.234.4/30")
    assert str(a.allocate()) == "127.123.234.4/30"


# range_allocator_test TestReleaseCIDRSuccess "Correctly recycle CIDR"
def test_recycle_cidr():
    a = NodeCIDRAllocator("127.123.234.0/28", 30)
    for c in ["127.123.234.4/30", "127.123.234.8/30", "127.123.234.12/30"]:
        a.occupy(c)
    assert str(a.allocate()) == "127.123.234.0/30"
    a.release("127.123.234.0/30")
    assert str(a.allocate()) == "127.123.234.0/30"


# range_allocator_test TestOccupyPreExistingCIDR
@pytest.mark.parametrize(
    "cluster, pod_cidr",
    [
        ("10.10.0.0/16", "10.10.0.1/24"),  # "success, single stack correct node allocation"
        ("ace:cab:deca::/8", "a00::/86"),  # "success, dual stack both allocated correctly"
    ],
)
def test_occupy_pre_existing_cidr(cluster, pod_cidr):
    a = NodeCIDRAllocator(cluster, 24)
    a.occupy(pod_cidr)
    assert a.used == 1


# range_allocator_test TestOccupyPreExistingCIDR, the failure cases
@pytest.mark.parametrize(
    "cluster, pod_cidr, upstream",
    [
        # "fail, single stack incorrect node allocation"
        ("10.10.0.0/16", "172.10.0.1/24", "cidr 172.10.0.0/24 is out the range of cluster cidr 10.10.0.0/16"),
        # "fail, dualstack node allocating from non existing cidr": an IPv6 podCIDR, only an IPv4 set
        ("10.10.0.0/16", "a00::/86", "cidr a00::/86 is out the range of cluster cidr 10.10.0.0/16"),
        # "fail, dualstack node allocating bad v6"
        ("ace:cab:deca::/8", "cdd::/86", "cidr cdd::/86 is out the range of cluster cidr a00::/8"),
    ],
)
def test_occupy_out_of_range(cluster, pod_cidr, upstream):
    a = NodeCIDRAllocator(cluster, 24)
    with pytest.raises(InvalidValue) as err:
        a.occupy(pod_cidr)
    assert err.value.upstream == upstream
    with pytest.raises(InvalidValue):
        a.release(pod_cidr)
    assert state(a) == (0, [], 0)


# ipam.md "Configuration": defaults 24/64 (core.go defaultNodeMaskCIDRIPv4/IPv6)
# and "mask size of cluster CIDR must be less than or equal to --node-cidr-mask-size".
def test_defaults_and_mask_shorter_than_cluster():
    assert NodeCIDRAllocator("10.244.0.0/16").node_mask == 24
    assert NodeCIDRAllocator("fd00:10:244::/56").node_mask == 64
    with pytest.raises(InvalidValue) as err:
        NodeCIDRAllocator("10.244.0.0/16", 8)
    assert err.value.upstream == ERR_NODE_MASK_SHORTER_THAN_CLUSTER


@pytest.mark.parametrize("bad", [33, -1, "24", 24.0, True])
def test_bad_node_mask(bad):
    with pytest.raises(InvalidValue):
        NodeCIDRAllocator("10.0.0.0/8", bad)


def test_release_twice_then_not_allocated_and_state_unchanged():
    a = NodeCIDRAllocator("10.244.0.0/16")
    cidr = a.allocate()
    a.allocate()
    a.release(cidr)
    before = state(a)
    with pytest.raises(NotAllocated):
        a.release(cidr)
    assert state(a) == before


def test_next_fit_skips_freed_slot_until_wrap():
    # ipam.md "AllocateNext is next-fit with wrap-around" (cidr_set.go AllocateNext)
    a = NodeCIDRAllocator("10.0.0.0/22", 24)
    first = [a.allocate() for _ in range(3)]
    a.release(first[0])
    assert str(a.allocate()) == "10.0.3.0/24"
    assert a.allocate() == first[0]  # the scan wrapped


def test_large_ipv4_set_is_cheap():
    # 127.0.0.0/8 with /32 node CIDRs (cidr_set_test TestCIDRSetv6) has 2**24 slots;
    # the used-map grows only as far as it is used.
    a = NodeCIDRAllocator("127.0.0.0/8", 32)
    assert a.size == 1 << 24
    assert [str(a.allocate()) for _ in range(3)] == ["127.0.0.0/32", "127.0.0.1/32", "127.0.0.2/32"]
