"""HostLocal and Range against the CNI host-local plugin's own test cases.

Every expected value below is taken from containernetworking/plugins,
``plugins/ipam/host-local/``: ``backend/allocator/range_test.go``,
``backend/allocator/range_set_test.go``, ``backend/allocator/allocator_test.go``
and ``host_local_test.go``. Each test names the upstream test it ports.
Error texts not covered by a test are quoted from ``allocator.go`` / ``range_set.go``.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_interface

import pytest

from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated, Overlap
from kubenet_lab.ipam import HostLocal, Range


def state(h: HostLocal) -> tuple:
    return h.allocated, h.last_reserved, h.free


# -- range_test.go ---------------------------------------------------------------------

@pytest.mark.parametrize(
    "subnet, start, end, gateway",
    [
        # "should generate sane defaults for ipv4 with a clean prefix"
        ("192.0.2.0/24", "192.0.2.1", "192.0.2.254", "192.0.2.1"),
        # "should generate sane defaults for a smaller ipv4 subnet"
        ("192.0.2.0/25", "192.0.2.1", "192.0.2.126", "192.0.2.1"),
        # "should generate sane defaults for ipv6 with a clean prefix"
        ("2001:DB8:1::/64", "2001:DB8:1::1", "2001:DB8:1::ffff:ffff:ffff:ffff", "2001:DB8:1::1"),
    ],
)
def test_range_defaults(subnet, start, end, gateway):
    r = Range(subnet)
    assert (r.range_start, r.range_end, r.gateway) == (ip_address(start), ip_address(end), ip_address(gateway))


@pytest.mark.parametrize(
    "kwargs, field, upstream",
    [
        # "should reject an explicit gateway outside the subnet"
        (dict(subnet="10.0.0.0/24", gateway="192.168.1.1"), "gateway", "gateway 192.168.1.1 not in network 10.0.0.0/24"),
        # "should reject an explicit gateway with mismatched address family"
        (dict(subnet="10.0.0.0/24", gateway="2001:db8::1"), "gateway", "gateway 2001:db8::1 not in network 10.0.0.0/24"),
        # "should reject ipv4 subnet using a masked address"
        (dict(subnet="192.0.2.12/24"), "subnet",
         "Network has host bits set. For a subnet mask of length 24 the network address is 192.0.2.0"),
        # "should reject ipv6 subnet using a masked address"
        (dict(subnet="2001:DB8:1::24:19ff:fee1:c44a/64"), "subnet",
         "Network has host bits set. For a subnet mask of length 64 the network address is 2001:db8:1::"),
        # "should reject ipv6 prefix with host bit set"
        (dict(subnet="2001:DB8:24:19ff::/63"), "subnet",
         "Network has host bits set. For a subnet mask of length 63 the network address is 2001:db8:24:19fe::"),
        # "should reject ipv4 network with host bit set"
        (dict(subnet="192.168.127.0/23"), "subnet",
         "Network has host bits set. For a subnet mask of length 23 the network address is 192.168.126.0"),
        # "Should reject a network that's too small"
        (dict(subnet="192.0.2.0/31"), "subnet", "Network 192.0.2.0/31 too small to allocate from"),
        # "should reject invalid RangeStart and RangeEnd specifications"
        (dict(subnet="192.0.2.0/24", range_start="192.0.3.0"), "range_start", "RangeStart 192.0.3.0 not in network 192.0.2.0/24"),
        (dict(subnet="192.0.2.0/24", range_end="192.0.4.0"), "range_end", "RangeEnd 192.0.4.0 not in network 192.0.2.0/24"),
        (dict(subnet="192.0.2.0/24", range_start="192.0.2.50", range_end="192.0.2.40"), "range_start",
         "RangeStart 192.0.2.50 not in network 192.0.2.0/24"),
    ],
)
def test_range_rejects(kwargs, field, upstream):
    with pytest.raises(InvalidValue) as err:
        Range(**kwargs)
    assert (err.value.field, err.value.upstream) == (field, upstream)


# range_test "should accept an explicit valid gateway inside the subnet"
def test_range_explicit_gateway():
    assert Range("10.0.0.0/24", gateway="10.0.0.254").gateway == ip_address("10.0.0.254")


# range_test "should parse all fields correctly"
def test_range_all_fields():
    r = Range("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254")
    assert r == Range(
        subnet=ip_interface("192.0.2.0/24").network,
        range_start=ip_address("192.0.2.40"),
        range_end=ip_address("192.0.2.50"),
        gateway=ip_address("192.0.2.254"),
    )


# range_test "should accept v4 IPs in range and reject IPs out of range" and the v6 twin
@pytest.mark.parametrize(
    "r, ip, inside",
    [
        (("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254"), "192.0.3.0", False),
        (("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254"), "192.0.2.39", False),
        (("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254"), "192.0.2.40", True),
        (("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254"), "192.0.2.50", True),
        (("192.0.2.0/24", "192.0.2.40", "192.0.2.50", "192.0.2.254"), "192.0.2.51", False),
        (("2001:DB8:1::/64", "2001:db8:1::40", "2001:db8:1::50"), "2001:db8:2::", False),
        (("2001:DB8:1::/64", "2001:db8:1::40", "2001:db8:1::50"), "2001:db8:1::39", False),
        (("2001:DB8:1::/64", "2001:db8:1::40", "2001:db8:1::50"), "2001:db8:1::40", True),
        (("2001:DB8:1::/64", "2001:db8:1::40", "2001:db8:1::50"), "2001:db8:1::50", True),
        (("2001:DB8:1::/64", "2001:db8:1::40", "2001:db8:1::50"), "2001:db8:1::51", False),
    ],
)
def test_range_contains(r, ip, inside):
    assert (ip in Range(*r)) is inside


# range_test "Detecting overlap" (checked both ways: "operation should be commutative")
@pytest.mark.parametrize(
    "first, second, expected",
    [
        (Range("10.0.0.0/24"), Range("10.0.1.0/24"), False),  # non-overlapping
        (Range("0.0.0.0/24"), Range("::/24"), False),  # different families
        (Range("10.0.0.0/24"), Range("10.0.0.0/24"), True),  # Identical
        (Range("10.0.0.0/20"), Range("10.0.1.0/24"), True),  # Containing
        (Range("10.0.0.0/24", range_end="10.0.0.127"), Range("10.0.0.0/24", range_start="10.0.0.128"), False),
        (Range("10.0.0.0/24", range_end="10.0.0.127"), Range("10.0.0.0/24", range_start="10.0.0.127"), True),
    ],
)
def test_range_overlaps(first, second, expected):
    assert first.overlaps(second) is expected
    assert second.overlaps(first) is expected


# -- range_set_test.go -----------------------------------------------------------------

# "should detect set membership correctly"
def test_range_set_membership():
    h = HostLocal(ranges=[Range("192.168.0.0/24"), Range("172.16.1.0/24")])
    assert h.gateway_for("192.168.0.55") == ip_address("192.168.0.1")  # RangeFor found p[0]
    with pytest.raises(InvalidValue) as err:
        h.gateway_for("192.168.99.99")
    assert err.value.upstream == "192.168.99.99 not in range set 192.168.0.1-192.168.0.254,172.16.1.1-172.16.1.254"


# "should discover overlaps within a set"
def test_range_set_overlap():
    with pytest.raises(Overlap) as err:
        HostLocal(ranges=["192.168.0.0/20", "192.168.2.0/24"])
    assert err.value.upstream == "subnets 192.168.0.1-192.168.15.254 and 192.168.2.1-192.168.2.254 overlap"


# range_set.go Canonicalize: "mixed address families"
def test_range_set_mixed_families():
    with pytest.raises(InvalidValue) as err:
        HostLocal(ranges=["10.0.0.0/24", "2001:db8::/64"])
    assert err.value.upstream == "mixed address families"


# -- allocator_test.go -----------------------------------------------------------------

def mkalloc() -> HostLocal:
    return HostLocal("192.168.1.0/29")


def walk(h: HostLocal, count: int) -> list[str]:
    return [str(h.allocate(f"pod-{i}").ip) for i in range(count)]


# RangeIter "should loop correctly from the beginning"
def test_loop_from_the_beginning():
    h = mkalloc()
    assert walk(h, 5) == ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5", "192.168.1.6"]
    with pytest.raises(Exhausted):
        h.allocate("one-more")


# RangeIter "should loop correctly from the end"
def test_loop_from_the_end():
    h = mkalloc()
    h.allocate("ID", "192.168.1.6")
    h.release("ID")
    assert walk(h, 5) == ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5", "192.168.1.6"]


# RangeIter "should loop correctly from the middle"
def test_loop_from_the_middle():
    h = mkalloc()
    h.allocate("ID", "192.168.1.3")
    h.release("ID")
    assert walk(h, 5) == ["192.168.1.4", "192.168.1.5", "192.168.1.6", "192.168.1.2", "192.168.1.3"]


# "should allocate ips in round robin": (subnets, ipmap, lastIP, expected)
@pytest.mark.parametrize(
    "subnets, taken, last, expected",
    [
        (["10.0.0.0/29"], [], None, "10.0.0.2"),  # fresh start
        (["2001:db8:1::0/64"], [], None, "2001:db8:1::2"),
        (["10.0.0.0/30"], [], None, "10.0.0.2"),
        (["10.0.0.0/29"], ["10.0.0.2"], None, "10.0.0.3"),
        (["10.0.0.0/29"], [], "10.0.0.5", "10.0.0.6"),  # next ip of last reserved ip
        (["10.0.0.0/29"], ["10.0.0.4", "10.0.0.5"], "10.0.0.3", "10.0.0.6"),
        (["10.0.0.0/29"], ["10.0.0.6"], "10.0.0.5", "10.0.0.2"),  # round robin to the beginning
        (["10.0.0.0/29"], ["10.0.0.2"], "10.0.0.128", "10.0.0.3"),  # lastIP is out of range
        # subnet is completely full except for lastip: wrap around and reserve lastIP
        (["10.0.0.0/29"], ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"], "10.0.0.3", "10.0.0.3"),
        (["10.0.0.0/30", "10.0.1.0/30"], [], None, "10.0.0.2"),  # allocate from multiple subnets
        (["10.0.0.0/30", "10.0.1.0/30"], [], "10.0.0.2", "10.0.1.2"),  # advance to next subnet
        (["10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30"], [], "10.0.2.2", "10.0.0.2"),  # roll to start subnet
    ],
)
def test_round_robin(subnets, taken, last, expected):
    h = HostLocal(ranges=subnets)
    for ip in taken:
        h.allocate("id", ip)  # a requested address skips the duplicate check, as upstream
    h.last_reserved = last
    assert str(h.allocate("ID").ip) == expected


# "should not allocate the broadcast address"
def test_not_the_broadcast_address():
    h = mkalloc()
    for i in range(2, 7):
        assert str(h.allocate(f"ID{i}")) == f"192.168.1.{i}/29"
    with pytest.raises(Exhausted):
        h.allocate("ID8")


# "should allocate in a round-robin fashion"
def test_round_robin_after_release():
    h = mkalloc()
    assert str(h.allocate("ID")) == "192.168.1.2/29"
    h.release("ID")
    assert str(h.allocate("ID")) == "192.168.1.3/29"


# "must allocate the requested IP" / "must fail when the requested IP is allocated"
def test_requested_ip():
    h = mkalloc()
    assert str(h.allocate("ID", "192.168.1.5").ip) == "192.168.1.5"
    before = state(h)
    with pytest.raises(AlreadyExists) as err:
        h.allocate("ID", "192.168.1.5")
    assert err.value.upstream == "requested IP address 192.168.1.5 is not available in range set 192.168.1.1-192.168.1.6"
    assert state(h) == before


# "must return an error when the requested IP is after RangeEnd" / "before RangeStart"
@pytest.mark.parametrize(
    "r, requested",
    [
        (Range("192.168.1.0/29", range_end="192.168.1.4"), "192.168.1.5"),
        (Range("192.168.1.0/29", range_start="192.168.1.3"), "192.168.1.2"),
    ],
)
def test_requested_ip_outside_bounds(r, requested):
    h = HostLocal(ranges=[r])
    with pytest.raises(InvalidValue) as err:
        h.allocate("ID", requested)
    assert err.value.upstream == f"{requested} not in range set {r}"


# allocator.go Get: "requested ip %s is subnet's gateway"
def test_requested_gateway():
    h = mkalloc()
    with pytest.raises(InvalidValue) as err:
        h.allocate("ID", "192.168.1.1")
    assert err.value.upstream == "requested ip 192.168.1.1 is subnet's gateway"
    assert state(h) == ({}, None, 5)


# "when out of ips" "returns a meaningful error"
@pytest.mark.parametrize(
    "subnets, taken",
    [
        (["10.0.0.0/30"], ["10.0.0.2"]),
        (["10.0.0.0/29"], ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]),
        (["10.0.0.0/30", "10.0.1.0/30"], ["10.0.0.2", "10.0.1.2"]),
    ],
)
def test_out_of_ips(subnets, taken):
    h = HostLocal(ranges=subnets)
    for ip in taken:
        h.allocate("id", ip)
    before = state(h)
    with pytest.raises(Exhausted) as err:
        h.allocate("ID")
    assert err.value.upstream.startswith("no IP addresses available in range set")
    assert state(h) == before


# "when lastReservedIP is at the end of one of multi ranges" / "when no lastReservedIP".
# Upstream builds these ranges from "192.168.1.1/30" and ignores Canonicalize's
# host-bits error; the canonical equivalent is used here.
def multi_ranges() -> HostLocal:
    return HostLocal(ranges=[
        Range("192.168.1.0/30", range_start="192.168.1.0", range_end="192.168.1.3"),
        Range("192.168.2.0/30", range_start="192.168.2.0", range_end="192.168.2.3"),
    ])


def test_multi_range_start_after_end_of_first_range():
    h = multi_ranges()
    h.allocate("ID", "192.168.1.3")
    assert str(h.allocate("next").ip) == "192.168.2.0"


def test_multi_range_start_without_last_reserved():
    assert str(multi_ranges().allocate("first").ip) == "192.168.1.0"


# -- host_local_test.go ----------------------------------------------------------------

# "allocates and releases addresses with ADD/DEL": two range sets, two HostLocals
def test_add_del_dual_stack():
    v4 = HostLocal(ranges=["10.1.2.0/24", "10.2.2.0/24"])
    v6 = HostLocal(ranges=["2001:db8:1::0/64"])
    a4, a6 = v4.allocate("dummy"), v6.allocate("dummy")
    assert (str(a4), v4.gateway_for(a4.ip)) == ("10.1.2.2/24", ip_address("10.1.2.1"))
    assert (str(a6), v6.gateway_for(a6.ip)) == ("2001:db8:1::2/64", ip_address("2001:db8:1::1"))
    assert (str(v4.last_reserved), str(v6.last_reserved)) == ("10.1.2.2", "2001:db8:1::2")  # last_reserved_ip.0 / .1
    v4.release("dummy")
    v6.release("dummy")
    assert v4.owner_of("10.1.2.2") is None and v6.owner_of("2001:db8:1::2") is None


# "repeat allocating addresses on specific interface for same container ID with ADD"
def test_repeat_add_same_container():
    h = HostLocal(ranges=["10.1.2.0/24"])
    assert str(h.allocate("dummy")) == "10.1.2.2/24"
    with pytest.raises(AlreadyExists) as err:
        h.allocate("dummy")
    assert err.value.upstream == "10.1.2.2 has been allocated to dummy, duplicate allocation is not allowed"
    assert str(h.allocate("dummy1")) == "10.1.2.3/24"
    with pytest.raises(AlreadyExists):
        h.allocate("dummy")
    h.release("dummy")
    assert h.owner_of("10.1.2.2") is None
    h.release("dummy1")


# "doesn't error when passed an unknown ID on DEL": upstream succeeds; here NotAllocated.
def test_del_unknown_id():
    h = HostLocal("10.1.2.0/24")
    with pytest.raises(NotAllocated):
        h.release("dummy")


# "allocates a custom IP when requested by config args" / "allocates custom IPs from multiple ranges"
def test_custom_ips():
    assert str(HostLocal(ranges=["10.1.2.0/24"]).allocate("dummy", "10.1.2.88").ip) == "10.1.2.88"
    first, second = HostLocal(ranges=["10.1.2.0/24"]), HostLocal(ranges=["10.1.3.0/24"])
    assert (str(first.allocate("dummy", "10.1.2.88").ip), str(second.allocate("dummy", "10.1.3.77").ip)) == (
        "10.1.2.88", "10.1.3.77")


# -- this implementation's contract ----------------------------------------------------

def test_constructor_forms():
    assert str(HostLocal("10.0.0.0/24", "10.0.0.10", "10.0.0.20")) == "10.0.0.10-10.0.0.20"
    with pytest.raises(InvalidValue) as err:
        HostLocal()
    assert err.value.upstream == "no IP ranges specified"
    with pytest.raises(InvalidValue):
        HostLocal("10.0.0.0/24", ranges=["10.0.1.0/24"])
    with pytest.raises(InvalidValue):
        HostLocal(ranges=[])
    with pytest.raises(InvalidValue):
        HostLocal(ranges="10.0.0.0/24")


def test_size_free_and_allocated():
    h = HostLocal("10.1.2.0/29")
    assert (h.size, h.free) == (5, 5)  # .1-.6 minus the gateway
    h.allocate("a")
    h.allocate("b", "10.1.2.6")
    assert h.allocated == {ip_address("10.1.2.2"): "a", ip_address("10.1.2.6"): "b"}
    assert h.free == 3


def test_last_reserved_survives_release_and_rejects_other_family():
    h = HostLocal("10.1.2.0/24")
    h.allocate("a")
    h.release("a")
    assert h.last_reserved == ip_address("10.1.2.2")
    with pytest.raises(InvalidValue):
        h.last_reserved = "2001:db8::1"
    assert h.last_reserved == ip_address("10.1.2.2")


@pytest.mark.parametrize("owner", ["", None, 5])
def test_bad_owner(owner):
    h = HostLocal("10.1.2.0/24")
    with pytest.raises(InvalidValue):
        h.allocate(owner)
    assert state(h) == ({}, None, 253)
