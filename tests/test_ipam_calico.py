"""BlockIPAM against Calico IPAM's own test cases, where they are deterministic.

Expected values come from projectcalico/calico ``libcalico-go/lib/ipam/``:
``ipam_test.go``, ``ipam_block_test.go``, ``randomblock_test.go``; the FNV-1
vectors from Go's ``hash/fnv/fnv_test.go``. Which block a host picks depends on
Go's ``math/rand`` and cannot be reproduced, so (as ipam.md says) these tests
check counts, containment, affinity and order inside a block. Error texts not
covered by a test are quoted from ``ipam.go``, ``ipam_block.go``, libcalico-go's
validator and the tigera operator's installation validation.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from kubenet_lab.ipam import BlockIPAM
from kubenet_lab.ipam.calico import (
    ERR_ALREADY_ASSIGNED,
    ERR_BLOCK_LIMIT,
    ERR_MAX_BLOCKS_NEEDS_STRICT,
    ERR_NOT_IN_POOL,
    ERR_NOT_STRICTLY_MASKED,
    ERR_POOL_TOO_SMALL,
    fnv32,
)


def state(ipam: BlockIPAM, *nodes: str) -> tuple:
    return ipam.used, [ipam.blocks(n) for n in nodes], [ipam.borrowed(n) for n in nodes]


# Go hash/fnv fnv_test.go golden32 (New32 is FNV-1, what Calico seeds with)
@pytest.mark.parametrize("text, digest", [("", 0x811C9DC5), ("a", 0x050C5D7E), ("ab", 0x70772D38), ("abc", 0x439C2F4B)])
def test_fnv32_golden(text, digest):
    assert fnv32(text) == digest


# randomblock_test "Test random block generator with different CIDRs": the walk
# visits every block of the pool exactly once, each inside the pool, and the
# number of blocks is numIP / blockSize. Here one host claims them all.
@pytest.mark.parametrize(
    "cidr, block_size",
    [
        ("10.10.0.0/24", 26),
        ("fd80:24e2:f998:72d6::/120", 122),
        ("10.10.0.0/16", 20),
        ("fd80:24e2:f998:72d6::/114", 116),
        ("10.10.0.0/24", 32),
        ("fd80:24e2:f998:72d6::/120", 128),
    ],
)
def test_every_block_once(cidr, block_size):
    pool = ip_network(cidr)
    n_blocks = pool.num_addresses >> (pool.max_prefixlen - block_size)
    ipam = BlockIPAM(cidr, block_size, strict_affinity=True, max_blocks_per_host=n_blocks)
    ips = {ipam.allocate("testHost").ip for _ in range(pool.num_addresses)}
    blocks = ipam.blocks("testHost")
    assert len(ips) == pool.num_addresses and all(ip in pool for ip in ips)
    assert len(blocks) == len(set(blocks)) == n_blocks
    assert all(b.subnet_of(pool) and b.prefixlen == block_size for b in blocks)
    with pytest.raises(Exhausted):
        ipam.allocate("testHost")


# ipam_test "Reservation tests": "before adding reservation, should assign all IPs" (64 of a /26)
# and "IPAM ReleaseIPs with duplicates": 64 then "Should fail to assign any more addresses".
def test_all_64_addresses_of_a_26():
    ipam = BlockIPAM("10.0.0.0/26")
    ips = {ipam.allocate("allocation-attributes").ip for _ in range(64)}
    assert ips == set(ip_network("10.0.0.0/26"))  # .0 and .63 included: Linux uses every address
    before = state(ipam, "allocation-attributes")
    with pytest.raises(Exhausted) as err:
        ipam.allocate("allocation-attributes")
    assert err.value.upstream.endswith("No IPs available in pools: [10.0.0.0/26]")
    assert state(ipam, "allocation-attributes") == before


# ipam_test "should only assign ips from the ip pool whose node selector matches":
# "Attempt to assign 300 ips but only the 256 ips from pool1 should be used."
def test_300_requested_256_assigned():
    ipam = BlockIPAM("10.0.0.0/24")
    got = []
    for _ in range(300):
        try:
            got.append(ipam.allocate("host").ip)
        except Exhausted:
            pass
    assert len(got) == len(set(got)) == 256
    assert all(ip in ip_network("10.0.0.0/24") for ip in got)


# ipam_test "should handle changing node selectors ...": "Assign three addresses to the node."
# "Should have one affine block to this host." Releasing one keeps the block.
def test_three_addresses_one_block():
    ipam = BlockIPAM("10.0.0.0/24")
    ips = [ipam.allocate("host") for _ in range(3)]
    assert len(ipam.blocks("host")) == 1
    assert all(ip.network == ipam.blocks("host")[0] for ip in ips)
    ipam.release(ips[0].ip)
    assert len(ipam.blocks("host")) == 1


# ipam_test "IPAM AutoAssign from different pools": the IP from a /24 pool with
# default blocks lands in a /26 block ("10.0.0.0/26" ... in use 1), the next one in the same block.
def test_default_block_is_26():
    ipam = BlockIPAM("10.0.0.0/24")
    first, second = ipam.allocate("host-a"), ipam.allocate("host-a")
    assert first.network.prefixlen == 26 and first.network.subnet_of(ip_network("10.0.0.0/24"))
    assert second.network == first.network
    assert BlockIPAM("fd80:24e2:f998:72d6::/120").block_size == 122


# ipam_test "should have strict IP pool affinity": 2 assigned, then 254 more, then none left.
def test_pool_fills_then_empty():
    ipam = BlockIPAM("20.0.0.0/24")
    ips = [ipam.allocate("host-a").ip for _ in range(2 + 254)]
    assert len(set(ips)) == 256 and all(ip in ip_network("20.0.0.0/24") for ip in ips)
    with pytest.raises(Exhausted):
        ipam.allocate("host-a")


# ipam_test "Affinity FV tests" "should release all non-empty blocks if there are multiple":
# /24 pool of /30 blocks; 12 addresses -> three blocks; released, they stay as three empty
# blocks; one more allocation reuses one of them.
def test_empty_blocks_stay_affine():
    ipam = BlockIPAM("10.0.0.0/24", 30)
    ips = [ipam.allocate("host-affinity-fvs").ip for _ in range(12)]
    assert len(ipam.blocks("host-affinity-fvs")) == 3
    for ip in ips:
        ipam.release(ip)
    blocks = ipam.blocks("host-affinity-fvs")
    assert len(blocks) == 3 and ipam.used == 0
    assert all(ipam.affinity(b) == "host-affinity-fvs" for b in blocks)
    assert ipam.allocate("host-affinity-fvs").network in blocks
    assert ipam.blocks("host-affinity-fvs") == blocks


# ipam_test "IPAM IP borrowing" "should respect IPAMConfig.StrictAffinity when it is changed":
# a /28 pool with /28 blocks has one block; without strict affinity both nodes get an
# address, with it only the node that holds the block does.
def test_strict_affinity_when_changed():
    ipam = BlockIPAM("10.0.0.0/28", 28)
    one, two = ipam.allocate("host1"), ipam.allocate("host2")
    assert ipam.blocks("host1") == [one.network] and ipam.blocks("host2") == []
    assert ipam.borrowed("host2") == [two.ip]
    ipam.strict_affinity = True
    ipam.allocate("host1")
    before = state(ipam, "host1", "host2")
    with pytest.raises(Exhausted) as err:
        ipam.allocate("host2")
    assert err.value.upstream == ("failed to request IPv4 addresses: Assigned 0 out of 1 requested IPv4 addresses; "
                                  "No more free affine blocks and strict affinity enabled")
    assert state(ipam, "host1", "host2") == before
    ipam.strict_affinity = False
    ipam.allocate("host1")
    ipam.allocate("host2")


# ipam_test "should borrow and release borrowed IPs as normal"
def test_borrow_and_release():
    ipam = BlockIPAM("10.0.0.0/28", 28)
    mine, borrowed = ipam.allocate("host1"), ipam.allocate("host2")
    assert ipam.borrowed("host2") == [borrowed.ip] and ipam.borrowed("host1") == []
    ipam.release(borrowed.ip)
    ipam.release(mine.ip)
    assert ipam.borrowed("host2") == [] and ipam.used == 0
    assert ipam.affinity("10.0.0.0/28") == "host1"


# ipam_test "should respect MaxBlocksPerHost": strict affinity, at most 2 blocks,
# a /28 pool of /30 blocks. host1 gets 8 addresses, not a ninth; host2 gets one;
# host1 still gets no ninth.
def test_max_blocks_per_host():
    ipam = BlockIPAM("10.0.0.0/28", 30, strict_affinity=True, max_blocks_per_host=2)
    for _ in range(8):
        ipam.allocate("host1")
    before = state(ipam, "host1")
    with pytest.raises(Exhausted) as err:
        ipam.allocate("host1")
    assert err.value.upstream == ERR_BLOCK_LIMIT
    assert state(ipam, "host1") == before
    ipam.allocate("host2")
    with pytest.raises(Exhausted):
        ipam.allocate("host1")


# ipam.go SetIPAMConfig: "MaxBlocksPerHost requires StrictAffinity to be enabled"
def test_max_blocks_needs_strict_affinity():
    with pytest.raises(InvalidValue) as err:
        BlockIPAM("10.0.0.0/16", max_blocks_per_host=2)
    assert err.value.upstream == ERR_MAX_BLOCKS_NEEDS_STRICT
    ipam = BlockIPAM("10.0.0.0/16", strict_affinity=True, max_blocks_per_host=2)
    with pytest.raises(InvalidValue):
        ipam.strict_affinity = False
    assert ipam.strict_affinity is True
    assert BlockIPAM("10.0.0.0/16", max_blocks_per_host=0).max_blocks_per_host == 20  # 0 means 20


# ipam_test testIPAMAssignIP: "Assign 1 IPv4 from a non-configured pool" and
# "Assign 1 IPv4 from a configured pool twice"
def test_assign_ip():
    ipam = BlockIPAM("192.168.1.0/24")
    with pytest.raises(InvalidValue) as err:
        ipam.assign("1.1.1.1", "testHost")
    assert err.value.upstream == ERR_NOT_IN_POOL
    assert str(ipam.assign("192.168.1.0", "testHost")) == "192.168.1.0/26"
    assert ipam.affinity("192.168.1.0/26") == "testHost"  # AssignIP claims the block
    before = state(ipam, "testHost")
    with pytest.raises(AlreadyExists) as err:
        ipam.assign("192.168.1.0", "testHost")
    assert err.value.upstream == ERR_ALREADY_ASSIGNED
    assert state(ipam, "testHost") == before


# ipam_block.go assign: "Block host affinity does not match" under strict affinity
def test_assign_into_foreign_block_with_strict_affinity():
    ipam = BlockIPAM("192.168.1.0/24", strict_affinity=True)
    ipam.assign("192.168.1.1", "a")
    with pytest.raises(InvalidValue) as err:
        ipam.assign("192.168.1.2", "b")
    assert err.value.upstream == "Block host affinity does not match"
    ipam.strict_affinity = False
    ipam.assign("192.168.1.2", "b")
    assert ipam.borrowed("b") == [ip_address("192.168.1.2")]


# ipam_block_test "returns free addresses with no reservations": 10 and 20 allocated -> 256 - 2 free
def test_free_addresses():
    ipam = BlockIPAM("100.64.0.0/24", 24)
    ipam.assign("100.64.0.10", "h")
    ipam.assign("100.64.0.20", "h")
    assert ipam.free == 256 - 2


# ipam_block_test "Releasing IPs by Handle" "removes multiple existing allocations ...":
# released ordinals go to the tail of Unallocated. With ordinals 15, 25, 35 released from a
# full block, the next allocations return exactly those, in release order.
def test_released_ordinals_go_to_the_tail():
    ipam = BlockIPAM("100.64.0.0/24", 24)
    fresh = [ipam.allocate("h").ip for _ in range(256)]
    # newBlock: Unallocated = 0..N-1 and AutoAssign takes from the front (ipam_block.go)
    assert fresh == list(ip_network("100.64.0.0/24"))
    for last_octet in (15, 25, 35):
        ipam.release(f"100.64.0.{last_octet}")
    assert [str(ipam.allocate("h").ip) for _ in range(3)] == ["100.64.0.15", "100.64.0.25", "100.64.0.35"]


def test_fifo_not_lowest_free_first():
    # ipam.md "Order of addresses inside a block": the longest-idle address is reused first.
    ipam = BlockIPAM("10.0.0.0/26")
    ips = [ipam.allocate("n").ip for _ in range(3)]  # .0 .1 .2
    ipam.release(ips[0])
    assert ipam.allocate("n").ip == ips[2] + 1  # .3, not the freed .0


# ipam_block_test "does nothing when no such IP exists" -> upstream reports it as unallocated;
# here release raises NotAllocated and changes nothing.
def test_release_unknown_ip():
    ipam = BlockIPAM("100.64.0.0/24", 24)
    ipam.allocate("h")
    before = state(ipam, "h")
    for ip in ("100.64.0.13", "10.0.0.1", "2001:db8::1"):
        with pytest.raises(NotAllocated):
            ipam.release(ip)
    assert state(ipam, "h") == before


# ipam.md: an empty block of another node is reclaimed when no unclaimed block is left
# (findUsableBlock's emptyBlocks; the 1-minute age is treated as passed).
def test_empty_block_reclaimed_by_another_node():
    ipam = BlockIPAM("10.0.0.0/28", 28)
    ip = ipam.allocate("a").ip
    ipam.release(ip)
    again = ipam.allocate("b")
    assert ipam.blocks("a") == [] and ipam.blocks("b") == [again.network]
    assert again.ip == ip_network("10.0.0.0/28").network_address  # a reclaimed block is a new block
    assert ipam.borrowed("b") == []


# Pool validation: libcalico-go validator and the tigera operator
@pytest.mark.parametrize(
    "pool, block_size, upstream",
    [
        ("10.200.0.0/28", None, ERR_POOL_TOO_SMALL),
        ("10.0.0.1/24", None, ERR_NOT_STRICTLY_MASKED),
        ("10.0.0.0/16", 19, "ipPool.blockSize must be greater than 19 and less than or equal to 32"),
        ("10.0.0.0/16", 33, "ipPool.blockSize must be greater than 19 and less than or equal to 32"),
        ("fd00::/64", 115, "ipPool.blockSize must be greater than 115 and less than or equal to 128"),
        ("fd00::/64", 129, "ipPool.blockSize must be greater than 115 and less than or equal to 128"),
    ],
)
def test_pool_validation(pool, block_size, upstream):
    with pytest.raises(InvalidValue) as err:
        BlockIPAM(pool, block_size)
    assert err.value.upstream == upstream


def test_each_node_keeps_its_own_blocks():
    ipam = BlockIPAM("10.0.0.0/16")
    for i in range(10):
        for _ in range(70):  # more than one /26 each
            ipam.allocate(f"node-{i}")
    seen = set()
    for i in range(10):
        blocks = ipam.blocks(f"node-{i}")
        assert len(blocks) == 2 and not seen & set(blocks)
        seen |= set(blocks)
        assert all(ipam.affinity(b) == f"node-{i}" for b in blocks)
    assert ipam.used == 700 and ipam.free == 65536 - 700


def test_deterministic_across_instances():
    def run():
        ipam = BlockIPAM("10.0.0.0/8")
        return [ipam.allocate(f"node-{i}") for i in range(20)]
    assert run() == run()


@pytest.mark.parametrize("node", ["", None, 3])
def test_bad_node(node):
    ipam = BlockIPAM("10.0.0.0/24")
    with pytest.raises(InvalidValue):
        ipam.allocate(node)
    assert ipam.used == 0
