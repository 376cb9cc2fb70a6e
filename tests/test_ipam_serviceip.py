"""ServiceIPAllocator against kube-apiserver's and kubeadm's own test cases.

Expected values come from kubernetes/kubernetes:
``pkg/registry/core/service/ipallocator/bitmap_test.go`` (the legacy bitmap
allocator), ``ipallocator_test.go`` (the IPAddress allocator, default since
v1.34) and kubeadm's ``cmd/kubeadm/app/constants/constants_test.go``. Error texts
not covered by a test are quoted from ``interfaces.go``, ``ipallocator.go`` and
kube-apiserver's options ``validation.go``.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from kubenet_lab.ipam import ServiceIPAllocator
from kubenet_lab.ipam.serviceip import ERR_ALLOCATED, ERR_FULL, ERR_TOO_SMALL, range_offset


def state(s: ServiceIPAllocator) -> tuple:
    return s.used, s.free


def fill(s: ServiceIPAllocator) -> set:
    found = set()
    while s.free > 0:
        ip = s.allocate()
        assert ip in s.service_cidr and ip not in found
        found.add(ip)
    return found


# bitmap_test TestAllocate (IPv4, IPv4 large, IPv6 with the legacy 65536 cap) and
# ipallocator_test TestAllocateIPAllocator (IPv4, IPv6 /116)
@pytest.mark.parametrize(
    "cidr, legacy, free, released, out_of_range, already",
    [
        ("192.168.1.0/24", True, 254, "192.168.1.5",
         ["192.168.0.1", "192.168.1.0", "192.168.1.255", "192.168.2.2"], "192.168.1.1"),
        ("10.0.0.0/15", True, 131070, "10.0.0.5", ["10.0.0.0", "10.15.255.255", "10.255.255.2"], "10.0.0.1"),
        # Upstream runs the bitmap on 2001:db8:1::/48 directly; kube-apiserver's flag
        # validation allows at most /108 with the legacy allocator, so the same
        # expectations (65535 free, ::1:0 beyond the low 16 bits) are checked on a /108.
        ("2001:db8:1::/108", True, 65535, "2001:db8:1::5",
         ["2001:db8::1", "2001:db8:1::", "2001:db8:1::1:0", "2001:db8:2::2"], "2001:db8:1::1"),
        ("192.168.1.0/24", False, 254, "192.168.1.5",
         ["192.168.0.1", "192.168.1.0", "192.168.1.255", "192.168.2.2"], "192.168.1.1"),
        ("2001:db8:1::/116", False, 4095, "2001:db8:1::5", ["2001:db8::1", "2001:db8:1::", "2001:db8:2::2"],
         "2001:db8:1::1"),
    ],
)
def test_allocate(cidr, legacy, free, released, out_of_range, already):
    s = ServiceIPAllocator(cidr, legacy=legacy)
    assert str(s.service_cidr) == cidr
    assert (s.free, s.used) == (free, 0)
    assert len(fill(s)) == free
    with pytest.raises(Exhausted) as err:
        s.allocate()
    assert err.value.upstream == ERR_FULL
    s.release(released)
    assert (s.free, s.used) == (1, free - 1)
    assert s.allocate() == ip_address(released)
    s.release(released)
    for ip in out_of_range:
        with pytest.raises(InvalidValue) as err:
            s.allocate(ip)
        assert err.value.upstream == f"provided IP {ip_address(ip)} is not in the valid range"
    with pytest.raises(AlreadyExists) as err:
        s.allocate(already)
    assert err.value.upstream == ERR_ALLOCATED
    assert (s.free, s.used) == (1, free - 1)
    s.allocate(released)
    assert (s.free, s.used) == (0, free)


# bitmap_test TestAllocateReserved / ipallocator_test TestAllocateReservedIPAllocator:
# a /25 has offset 16; 110 dynamic allocations fill exactly .17-.126, then the static
# band can be allocated by hand, and after releasing .10 a dynamic allocation finds it.
@pytest.mark.parametrize("legacy", [True, False])
def test_allocate_reserved(legacy):
    s = ServiceIPAllocator("192.168.1.0/25", legacy=legacy)
    offset = s.offset
    assert offset == 16
    for _ in range(s.size - offset):
        s.allocate()
    assert all(f"192.168.1.{i + 1}" in s for i in range(offset, s.size))
    assert s.free == offset
    for i in range(offset):
        s.allocate(f"192.168.1.{i + 1}")
    assert s.free == 0
    s.release("192.168.1.10")
    assert s.allocate() == ip_address("192.168.1.10")
    assert s.free == 0


# bitmap_test Test_calculateRangeOffset
@pytest.mark.parametrize(
    "cidr, offset",
    [
        ("192.168.1.1/32", 0), ("fd00::1/128", 0), ("192.168.1.1/30", 0), ("fd00::1/126", 0),
        ("192.168.1.1/28", 0), ("192.168.1.1/27", 16), ("fd00::1/124", 0), ("fd00::1/122", 16),
        ("192.168.1.1/22", 64), ("fd00::1/118", 64), ("192.168.1.1/8", 256), ("fd00::1/12", 256),
    ],
)
def test_calculate_range_offset(cidr, offset):
    assert range_offset(cidr) == offset


# bitmap_test TestClusterIPMetrics / ipallocator_test TestIPAllocatorClusterIPMetrics:
# /24 -> 254 free; 2 allocated -> 252; static re-allocation of them fails; released -> 254;
# 264 more attempts fill the /24 (10 fail) and take 264 of 2001:db8::/112 (65535 -> 65271).
@pytest.mark.parametrize("legacy", [True, False])
def test_cluster_ip_counts(legacy):
    a = ServiceIPAllocator("10.0.0.0/24", legacy=legacy)
    b = ServiceIPAllocator("2001:db8::/112", legacy=legacy)
    assert (a.free, b.free) == (254, 65535)
    found = {a.allocate(), a.allocate()}
    assert (a.free, a.used) == (252, 2)
    for ip in found:
        with pytest.raises(AlreadyExists):
            a.allocate(ip)
    for ip in found:
        a.release(ip)
    assert (a.free, a.used) == (254, 0)
    errors = 0
    for _ in range(264):
        try:
            a.allocate()
        except Exhausted:
            errors += 1
        b.allocate()
    assert (a.free, a.used, errors) == (0, 254, 10)
    assert (b.free, b.used) == (65271, 264)


# bitmap_test TestClusterIPAllocatedMetrics: a /25 starts with 126 free
def test_slash_25_free():
    assert ServiceIPAllocator("10.0.0.0/25").free == 126


# bitmap_test TestAllocateSmall / TestAllocateTiny build a /30 and a /32 in the bitmap
# itself; kube-apiserver refuses such a --service-cluster-ip-range before that
# (ServiceIPRange: "must be at least 8 IP addresses"), and so does this class.
@pytest.mark.parametrize("cidr", ["192.168.1.240/30", "192.168.1.0/32", "fd00::/126", "0.0.0.0/0", "128.0.0.0/1"])
def test_too_small(cidr):
    with pytest.raises(InvalidValue) as err:
        ServiceIPAllocator(cidr)
    assert err.value.upstream == ERR_TOO_SMALL


@pytest.mark.parametrize("cidr, size", [("10.0.0.0/29", 6), ("fd00::/125", 7)])
def test_smallest_ranges(cidr, size):
    s = ServiceIPAllocator(cidr)
    assert (s.size, s.offset, s.static_band) == (size, 0, None)
    assert len(fill(s)) == size


# kube-apiserver options validation.go validateMaxCIDRRange (legacy) and
# ipallocator.go NewIPAllocator ("shortest allowed prefix length ... is 64")
@pytest.mark.parametrize(
    "cidr, legacy, upstream",
    [
        ("10.0.0.0/11", True, "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12"),
        ("fd00::/107", True, "specified --service-cluster-ip-range is too large; for 128-bit addresses, the mask must be >= 108"),
        ("2001:db8:1::/48", False, "shortest allowed prefix length for service CIDR is 64, got 48"),
    ],
)
def test_too_large(cidr, legacy, upstream):
    with pytest.raises(InvalidValue) as err:
        ServiceIPAllocator(cidr, legacy=legacy)
    assert err.value.upstream == upstream


def test_v134_default_has_no_ipv4_upper_limit():
    s = ServiceIPAllocator("10.0.0.0/8")
    assert (s.size, s.offset) == ((1 << 24) - 2, 256)
    assert ServiceIPAllocator("fd00::/64").size == (1 << 64) - 1
    assert ServiceIPAllocator("10.96.0.0/12", legacy=True).size == (1 << 20) - 2


# kubeadm constants_test TestGetAPIServerVirtualIP (the primary range of each list)
@pytest.mark.parametrize(
    "subnet, expected",
    [
        ("10.96.0.12/24", "10.96.0.1"),
        ("10.96.0.0/12", "10.96.0.1"),
        ("10.87.116.64/26", "10.87.116.65"),
        ("fd03::/112", "fd03::1"),
    ],
)
def test_kubernetes_ip(subnet, expected):
    assert ServiceIPAllocator(subnet).kubernetes_ip == ip_address(expected)


# kubeadm constants_test TestGetDNSIP (both versions of the test; primary range)
@pytest.mark.parametrize(
    "subnet, expected",
    [
        ("10.96.0.0/12", "10.96.0.10"),
        ("10.87.116.64/26", "10.87.116.74"),
        ("192.168.10.0/24", "192.168.10.10"),
        ("fd03::/112", "fd03::a"),
    ],
)
def test_dns_ip(subnet, expected):
    assert ServiceIPAllocator(subnet).dns_ip == ip_address(expected)


def test_dns_ip_needs_a_tenth_address():
    with pytest.raises(InvalidValue):
        ServiceIPAllocator("10.0.0.0/29").dns_ip


# ipam.md worked bands: /24 -> static .1-.16, dynamic .17-.254; /12 -> static up to 10.96.1.0
def test_bands():
    s = ServiceIPAllocator("10.96.0.0/24")
    assert s.static_band == (ip_address("10.96.0.1"), ip_address("10.96.0.16"))
    assert s.dynamic_band == (ip_address("10.96.0.17"), ip_address("10.96.0.254"))
    big = ServiceIPAllocator("10.96.0.0/12")
    assert big.static_band == (ip_address("10.96.0.1"), ip_address("10.96.1.0"))
    assert big.dynamic_band[1] == ip_address("10.111.255.254")


def test_dynamic_stays_in_upper_band_until_full():
    s = ServiceIPAllocator("10.96.0.0/24", seed=7)
    low, high = s.dynamic_band
    for _ in range(s.size - s.offset):
        assert low <= s.allocate() <= high
    static = {s.allocate() for _ in range(s.offset)}
    assert static == {ip_address(f"10.96.0.{i}") for i in range(1, 17)}


def test_seed_makes_runs_reproducible():
    def run(seed):
        s = ServiceIPAllocator("10.96.0.0/12", seed=seed)
        return [s.allocate() for _ in range(50)]
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_release_not_allocated():
    s = ServiceIPAllocator("10.96.0.0/24")
    s.allocate("10.96.0.10")
    for ip in ("10.96.0.11", "10.1.0.1", "fd00::1"):
        with pytest.raises(NotAllocated):
            s.release(ip)
    assert state(s) == (1, 253)
    s.release("10.96.0.10")
    with pytest.raises(NotAllocated):
        s.release("10.96.0.10")


def test_failed_calls_change_nothing():
    s = ServiceIPAllocator("10.96.0.0/29")
    fill(s)
    before = state(s)
    for call in (lambda: s.allocate(), lambda: s.allocate("10.96.0.1"), lambda: s.allocate("10.96.0.7"),
                 lambda: s.allocate("bogus")):
        with pytest.raises((Exhausted, AlreadyExists, InvalidValue)):
            call()
    assert state(s) == before


@pytest.mark.parametrize("kwargs", [dict(seed="1"), dict(seed=True), dict(legacy="yes")])
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidValue):
        ServiceIPAllocator("10.96.0.0/12", **kwargs)
