"""MetalLB's LoadBalancer IP allocation, with cases ported from metallb internal/allocator/allocator_test.go."""

import ipaddress

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from kubenet_lab.ipam.metallb import AddressPool, LoadBalancerIPAllocator, parse_pool_range

ip = ipaddress.ip_address


def ports(*specs):
    return [(s.split("/")[0], int(s.split("/")[1])) for s in specs]


def test_assignment_sequence():
    # TestAssignment (IPv4 part): pools "test" 1.2.3.4/31 and "test2" 1.2.4.0/24 with AvoidBuggyIPs.
    a = LoadBalancerIPAllocator([AddressPool("test", ("1.2.3.4/31",)),
                                 AddressPool("test2", ("1.2.4.0/24",), avoid_buggy_ips=True)])
    ok, err = "ok", "err"
    steps = [
        ("assign s1", "s1", "1.2.3.4", (), None, None, ok),
        ("s1 idempotent reassign", "s1", "1.2.3.4", (), None, None, ok),
        ("s2 can't grab s1's IP", "s2", "1.2.3.4", (), None, None, err),
        ("s2 can get the other IP", "s2", "1.2.3.5", (), None, None, ok),
        ("s1 now can't grab s2's IP", "s1", "1.2.3.5", (), None, None, err),
        ("s1 frees its IP", "s1", None, (), None, None, ok),
        ("s2 can grab s1's former IP", "s2", "1.2.3.4", (), None, None, ok),
        ("s1 can now grab s2's former IP", "s1", "1.2.3.5", (), None, None, ok),
        ("s3 cannot grab a 0 buggy IP", "s3", "1.2.4.0", (), None, None, err),
        ("s3 cannot grab a 255 buggy IP", "s3", "1.2.4.255", (), None, None, err),
        ("s3 can grab another IP in that pool", "s3", "1.2.4.254", (), None, None, ok),
        ("s4 takes an IP, with sharing", "s4", "1.2.4.3", ports("tcp/80"), "share", "backend", ok),
        ("s3 can't share with s4 (port conflict)", "s3", "1.2.4.3", ports("tcp/80"), "share", "backend", err),
        ("s3 can't share with s4 (wrong sharing key)", "s3", "1.2.4.3", ports("tcp/443"), "othershare", "backend", err),
        ("s3 can't share with s4 (wrong backend key)", "s3", "1.2.4.3", ports("tcp/443"), "share", "otherbackend", err),
        ("s3 takes the same IP as s4", "s3", "1.2.4.3", ports("tcp/443"), "share", "backend", ok),
        ("s4 takes s3's former IP", "s4", "1.2.4.254", (), None, None, ok),
    ]
    for desc, svc, address, p, sharing, backend, want in steps:
        before = a.ip(svc)
        if address is None:
            a.release(svc)
            continue
        if want == err:
            with pytest.raises((AlreadyExists, InvalidValue)):
                a.assign(svc, address, p, sharing, backend)
            assert a.ip(svc) == before, desc
        else:
            assert a.assign(svc, address, p, sharing, backend) == ip(address), desc


def test_pool_allocation_and_sharing():
    # TestPoolAllocation: only pool "test" (1.2.3.4/31, 1.2.3.10/31) is used; 4 addresses, then sharing.
    a = LoadBalancerIPAllocator([AddressPool("not_this_one", ("192.168.0.0/16",)),
                                 AddressPool("test", ("1.2.3.4/31", "1.2.3.10/31")),
                                 AddressPool("test2", ("10.20.30.0/24",))])
    valid = {ip(x) for x in ("1.2.3.4", "1.2.3.5", "1.2.3.10", "1.2.3.11")}
    assert {a.allocate(s, pool="test") for s in ("s1", "s2", "s3", "s4")} == valid
    for s in ("s5", "s6"):
        with pytest.raises(Exhausted, match='no available IPs in pool "test"'):
            a.allocate(s, pool="test")
    a.release("s1")
    assert a.allocate("s5", pool="test") in valid
    with pytest.raises(Exhausted):
        a.allocate("s6", pool="test")
    a.release("s5")
    shared = a.allocate("s5", pool="test", ports=ports("tcp/80"), sharing_key="share")
    assert a.allocate("s6", pool="test", ports=ports("tcp/443"), sharing_key="share") == shared
    with pytest.raises(InvalidValue, match="unknown pool"):
        a.allocate("s7", pool="nonexistentpool")


def test_buggy_ips_and_auto_assign():
    # TestBuggyIPs: /31s at .0 and .254, with and without AvoidBuggyIPs: six usable, the seventh fails.
    a = LoadBalancerIPAllocator([AddressPool("test", ("1.2.3.0/31",)), AddressPool("test2", ("1.2.3.254/31",)),
                                 AddressPool("test3", ("1.2.4.0/31",), avoid_buggy_ips=True),
                                 AddressPool("test4", ("1.2.4.254/31",), avoid_buggy_ips=True)])
    got = {a.allocate(f"s{i}") for i in range(1, 7)}
    assert got == {ip(x) for x in ("1.2.3.0", "1.2.3.1", "1.2.3.254", "1.2.3.255", "1.2.4.1", "1.2.4.254")}
    with pytest.raises(Exhausted):
        a.allocate("s7")
    # TestAutoAssign: a pool with autoAssign false is never used by Allocate.
    b = LoadBalancerIPAllocator([AddressPool("test1", ("1.2.3.4/31",), auto_assign=False),
                                 AddressPool("test2", ("1.2.3.10/31",))])
    assert {b.allocate("s1"), b.allocate("s2")} == {ip("1.2.3.10"), ip("1.2.3.11")}
    with pytest.raises(Exhausted):
        b.allocate("s3")


@pytest.mark.parametrize("pool, want", [
    # TestPoolCount
    (AddressPool("p", ("1.2.3.0/24",)), 256),
    (AddressPool("p", ("1.2.3.0/24", "2.3.4.128/25")), 384),
])
def test_pool_count(pool, want):
    assert pool.size == want


def test_ranges_and_bad_pools():
    # metallb config_test: "40.0.0.210 - 40.0.0.240" (spaces allowed) is a range of 31 addresses.
    first, last = parse_pool_range("40.0.0.210 - 40.0.0.240", obj="pool")
    assert (first, last, int(last) - int(first) + 1) == (ip("40.0.0.210"), ip("40.0.0.240"), 31)
    with pytest.raises(InvalidValue):
        AddressPool("bad", ("40.0.0.240-40.0.0.210",))
    with pytest.raises(InvalidValue):
        AddressPool("bad", ())
    with pytest.raises(NotAllocated):
        LoadBalancerIPAllocator([AddressPool("p", ("1.2.3.0/30",))]).release("nobody")


def test_cluster_gives_loadbalancers_their_vips_and_keeps_foreign_ones():
    c = Cluster(load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    c.add_node("node-1")
    lb = c.add_service("web", type="LoadBalancer", port=80)
    assert lb.load_balancer_ips == (ip("192.168.100.1"),)  # .0 avoided
    asked = c.add_service("api", type="LoadBalancer", port=443, load_balancer_ips=["192.168.100.9"])
    assert asked.load_balancer_ips == (ip("192.168.100.9"),)
    cloud = c.add_service("ext", type="LoadBalancer", port=443, load_balancer_ips=["203.0.113.7"])
    assert cloud.load_balancer_ips == (ip("203.0.113.7"),)  # outside every pool: a cloud's VIP, kept as given
    c.remove_service("web")
    assert c.add_service("web2", type="LoadBalancer", port=80).load_balancer_ips == (ip("192.168.100.1"),)
    again = Cluster.from_objects(c.to_objects())
    assert again.to_objects() == c.to_objects()
