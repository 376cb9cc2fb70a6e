"""Property tests for the four allocators (hypothesis).

For random sequences of allocate / release / occupy / assign calls on small
ranges, each allocator is checked against a plain model kept by the test:

* no address (or node CIDR) is handed out twice while held;
* every result lies inside its range, with the right prefix length;
* a call that raises leaves the allocator exactly as it was;
* after filling a range, releasing one thing and allocating again gets that thing back.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubenet_lab.errors import KubenetLabError
from kubenet_lab.ipam import BlockIPAM, HostLocal, NodeCIDRAllocator, Range, ServiceIPAllocator

SETTINGS = settings(max_examples=60, deadline=None)
OPS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 1 << 16)), max_size=40)


# -- NodeCIDRAllocator -----------------------------------------------------------------

def cidr_state(a: NodeCIDRAllocator) -> tuple:
    return a.used, a.used_ranges(), a.next_candidate


def model_span(cluster, mask: int, cidr) -> set[int]:
    """The slots a CIDR touches, computed independently with ipaddress."""
    if cidr.prefixlen <= cluster.prefixlen:
        return set(range(1 << (mask - cluster.prefixlen)))
    if cidr.prefixlen >= mask:
        return {(int(cidr.network_address) - int(cluster.network_address)) >> (cluster.max_prefixlen - mask)}
    return {
        (int(s.network_address) - int(cluster.network_address)) >> (cluster.max_prefixlen - mask)
        for s in cidr.subnets(new_prefix=mask)
    }


@SETTINGS
@given(family=st.sampled_from(["10.1.0.0/24", "fd00:1::/120"]), extra=st.integers(0, 5), ops=OPS)
def test_cidrset_model(family, extra, ops):
    cluster = ip_network(family)
    mask = cluster.prefixlen + extra
    a = NodeCIDRAllocator(cluster, mask)
    used: set[int] = set()
    for kind, x, y in ops:
        before = cidr_state(a)
        if kind in (0, 1):
            try:
                cidr = a.allocate()
            except KubenetLabError:
                assert len(used) == a.size and cidr_state(a) == before
                continue
            index = a.slot_of(cidr)
            assert cidr.subnet_of(cluster) and cidr.prefixlen == mask and index not in used
            used.add(index)
        else:
            prefix = cluster.prefixlen - 1 + y % (cluster.max_prefixlen - cluster.prefixlen + 2)
            address = cluster.network_address + x % cluster.num_addresses
            cidr = ip_network(f"{address}/{prefix}", strict=False)
            span = model_span(cluster, mask, cidr)
            if kind == 2:
                a.occupy(cidr)
                used |= span
            elif span & used:
                a.release(cidr)
                used -= span
            else:
                with pytest.raises(KubenetLabError):
                    a.release(cidr)
                assert cidr_state(a) == before
        assert a.used == len(used)
        assert {i for lo, hi in a.used_ranges() for i in range(lo, hi + 1)} == used


@SETTINGS
@given(extra=st.integers(1, 6), pick=st.integers(0, 1 << 16))
def test_cidrset_reuses_after_release(extra, pick):
    a = NodeCIDRAllocator("10.2.0.0/20", 20 + extra)
    cidrs = [a.allocate() for _ in range(a.size)]
    freed = cidrs[pick % len(cidrs)]
    a.release(freed)
    assert a.allocate() == freed


# -- HostLocal -------------------------------------------------------------------------

def hostlocal_state(h: HostLocal) -> tuple:
    return h.allocated, h.last_reserved, h.free


RANGE_SETS = st.sampled_from([
    ["10.3.0.0/28"],
    ["10.3.0.0/29", "10.3.1.0/30"],
    [Range("10.3.0.0/28", "10.3.0.4", "10.3.0.12", "10.3.0.8")],
    ["fd00:3::/124"],
])


@SETTINGS
@given(ranges=RANGE_SETS, ops=OPS)
def test_hostlocal_model(ranges, ops):
    h = HostLocal(ranges=ranges)
    gateways = {r.gateway for r in h.ranges}
    held: dict = {}  # owner -> addresses
    for kind, x, y in ops:
        before = hostlocal_state(h)
        owner = f"pod-{x % 12}"
        try:
            if kind == 0:
                iface = h.allocate(owner)
            elif kind == 1:
                subnet = h.ranges[y % len(h.ranges)].subnet
                iface = h.allocate(owner, subnet.network_address + x % subnet.num_addresses)
            else:
                h.release(owner)
                del held[owner]
                continue
        except KubenetLabError:
            assert hostlocal_state(h) == before
            continue
        taken = {a for addresses in held.values() for a in addresses}
        r = next(r for r in h.ranges if iface.ip in r)
        assert iface.ip not in taken and iface.ip not in gateways
        assert iface.network == r.subnet
        held.setdefault(owner, []).append(iface.ip)
        assert h.last_reserved == iface.ip
    assert {a: o for o, addresses in held.items() for a in addresses} == h.allocated


@SETTINGS
@given(ranges=RANGE_SETS, pick=st.integers(0, 1 << 16))
def test_hostlocal_reuses_after_release(ranges, pick):
    h = HostLocal(ranges=ranges)
    got = [h.allocate(f"pod-{i}") for i in range(h.size)]
    victim = pick % len(got)
    h.release(f"pod-{victim}")
    assert h.allocate("new") == got[victim]


# -- BlockIPAM -------------------------------------------------------------------------

def calico_state(ipam: BlockIPAM, nodes) -> tuple:
    return ipam.used, [ipam.blocks(n) for n in nodes], [ipam.borrowed(n) for n in nodes]


@SETTINGS
@given(
    pool=st.sampled_from(["10.4.0.0/26", "fd00:4::/122"]),
    extra=st.integers(0, 4),
    strict=st.booleans(),
    ops=OPS,
)
def test_calico_model(pool, extra, strict, ops):
    net = ip_network(pool)
    block_size = (26 if net.version == 4 else 122) + extra
    ipam = BlockIPAM(pool, block_size, strict_affinity=strict)
    nodes = [f"node-{i}" for i in range(4)]
    held: dict = {}  # address -> node
    for kind, x, y in ops:
        node = nodes[y % len(nodes)]
        before = calico_state(ipam, nodes)
        try:
            if kind in (0, 1):
                iface = ipam.allocate(node)
            elif kind == 2:
                iface = ipam.assign(net.network_address + x % net.num_addresses, node)
            else:
                if not held:
                    continue
                address = sorted(held)[x % len(held)]
                ipam.release(address)
                del held[address]
                continue
        except KubenetLabError:
            assert calico_state(ipam, nodes) == before
            continue
        assert iface.ip in net and iface.ip not in held
        assert iface.network.prefixlen == block_size and iface.network.subnet_of(net)
        held[iface.ip] = node
    for node in nodes:
        mine = set(ipam.blocks(node))
        assert all(ipam.affinity(b) == node for b in mine)
        expected = sorted(a for a, n in held.items() if n == node and ip_network(f"{a}/{block_size}", strict=False) not in mine)
        assert ipam.borrowed(node) == expected
    assert ipam.used == len(held)


@SETTINGS
@given(extra=st.integers(0, 4), pick=st.integers(0, 1 << 16))
def test_calico_reuses_after_release(extra, pick):
    ipam = BlockIPAM("10.5.0.0/26", 26 + extra, strict_affinity=True, max_blocks_per_host=1 << extra)
    got = [ipam.allocate("node") for _ in range(64)]
    victim = got[pick % 64]
    ipam.release(victim.ip)
    assert ipam.allocate("node") == victim


# -- ServiceIPAllocator ----------------------------------------------------------------

@SETTINGS
@given(cidr=st.sampled_from(["10.6.0.0/27", "10.6.0.0/28", "fd00:6::/122"]), seed=st.integers(0, 9), ops=OPS)
def test_serviceip_model(cidr, seed, ops):
    s = ServiceIPAllocator(cidr, seed=seed)
    net = ip_network(cidr)
    usable = [a for a in net if a != net.network_address and not (net.version == 4 and a == net.broadcast_address)]
    upper = usable[s.offset:]
    held: set = set()
    for kind, x, _ in ops:
        before = (s.used, s.free)
        try:
            if kind == 0:
                ip = s.allocate()
                # KEP-3070: dynamic allocation stays in the upper band while it has room
                assert ip in upper or all(a in held for a in upper)
            elif kind == 1:
                ip = s.allocate(net.network_address + x % net.num_addresses)
            else:
                victim = net.network_address + x % net.num_addresses
                s.release(victim)
                held.remove(victim)
                continue
        except KubenetLabError:
            assert (s.used, s.free) == before
            continue
        assert ip in usable and ip not in held
        held.add(ip)
        assert s.used == len(held) and s.free == len(usable) - len(held)


@SETTINGS
@given(cidr=st.sampled_from(["10.7.0.0/26", "fd00:7::/121"]), seed=st.integers(0, 9), pick=st.integers(0, 1 << 16))
def test_serviceip_reuses_after_release(cidr, seed, pick):
    s = ServiceIPAllocator(cidr, seed=seed)
    got = [s.allocate() for _ in range(s.size)]
    victim = got[pick % len(got)]
    s.release(victim)
    assert s.allocate() == victim
    assert ip_address(victim) in s
