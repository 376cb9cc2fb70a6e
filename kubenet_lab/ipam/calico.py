"""Calico IPAM: an IP pool carved into blocks, each block affine to one node.

Calico does not use ``spec.podCIDR``. Its IPAM (libcalico-go ``lib/ipam``)
cuts an IPPool (``cidr``, ``blockSize``: default /26 for IPv4, /122 for IPv6)
into blocks and gives them to nodes lazily: the first pod on a node makes the
node *claim* a block, writing a BlockAffinity ``host:<node>``. The node then
advertises the whole block (one route per block, not per pod), and hands out
pod addresses from it until it is full, when it claims another.

* **Which block.** A node walks the pool's blocks from a pseudo-random start
  seeded with the FNV-1 32-bit hash of its hostname (Go ``hash/fnv.New32``),
  so a node tries blocks in the same order every time and two nodes diverge.
  It takes the first block nobody has created yet.
* **Which address.** A block keeps a FIFO free list of ordinals: a fresh /26
  hands out .0, .1, .2, … (every address is usable on Linux, including the
  block's network and last address), and a released ordinal goes to the
  *back* of the queue, so the longest-idle address is reused first.
* **Results** carry the block's prefix length (``10.0.0.5/26``), not /32.
* **Borrowing.** When a node can claim no block (none left in the pool) and
  ``strictAffinity`` is false (the default), it takes a free address from any
  other node's block, walking blocks in its hostname order. The block keeps its
  affinity, so the borrowing node needs a /32 route for that address:
  :meth:`BlockIPAM.borrowed` lists them.
* **Empty blocks stay.** Releasing the last address of a block does not give
  the block back; only another node that finds no unclaimed block may reclaim
  an empty one (upstream waits until it is ``EmptyBlockMinReclaimAge`` = 1
  minute old; the simulator has no clock and treats every block as old enough).

>>> ipam = BlockIPAM("10.0.0.0/24")                 # four /26 blocks
>>> first = ipam.allocate("node-1")
>>> first.network.prefixlen, first.ip == first.network.network_address
(26, True)
>>> int(ipam.allocate("node-1").ip) - int(first.ip)   # the next ordinal of the same block
1
>>> ipam.blocks("node-1") == [first.network]
True

Go's ``math/rand`` stream cannot be reproduced in Python, so the start of each
node's walk comes from :class:`random.Random` seeded with the same FNV-1 hash:
deterministic across runs and Python versions, but not the block the real
Calico would pick. Counts, containment, FIFO order and affinity are exact;
the block addresses are not. (Upstream seeds /32 blocks from the clock; here
they use the hostname too.)

Sources: libcalico-go ``lib/ipam/ipam.go`` (``autoAssign``, ``AssignIP``),
``ipam_block.go``, ``ipam_block_reader_writer.go`` (``findUsableBlock``,
``randomBlockGenerator``) in projectcalico/calico; expected values in
``tests/test_ipam_calico.py`` come from ``ipam_test.go`` and
``randomblock_test.go``. Introduced in the course's IPAM chapter.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from ipaddress import IPv4Interface, IPv6Interface

from ..addresses import IPAddress, IPNetwork, family_name, parse_address, parse_network
from ..errors import AlreadyExists, Exhausted, InvalidValue, NotAllocated
from ._rand import rand_below

__all__ = [
    "BlockIPAM",
    "DEFAULT_BLOCK_SIZE_IPV4",
    "DEFAULT_BLOCK_SIZE_IPV6",
    "DEFAULT_MAX_BLOCKS_PER_HOST",
    "fnv32",
]

#: IPPool ``blockSize`` default for IPv4 (``CALICO_IPV4POOL_BLOCK_SIZE``).
DEFAULT_BLOCK_SIZE_IPV4 = 26
#: IPPool ``blockSize`` default for IPv6 (``CALICO_IPV6POOL_BLOCK_SIZE``).
DEFAULT_BLOCK_SIZE_IPV6 = 122
#: What ``autoAssign`` substitutes when IPAMConfig ``maxBlocksPerHost`` is 0 (unset).
DEFAULT_MAX_BLOCKS_PER_HOST = 20
_BLOCK_SIZES = {4: (20, 32), 6: (116, 128)}

ERR_BLOCK_LIMIT = "cannot allocate new block due to per host block limit"
ERR_STRICT_AFFINITY = "No more free affine blocks and strict affinity enabled"
ERR_MAX_BLOCKS_NEEDS_STRICT = "MaxBlocksPerHost requires StrictAffinity to be enabled"
ERR_POOL_TOO_SMALL = (
    "IP pool size is too small for use with Calico IPAM. It must be equal to or greater than the block size."
)
ERR_NOT_STRICTLY_MASKED = "IP pool CIDR is not strictly masked"
ERR_NOT_IN_POOL = "The provided IP address is not in a configured pool"
ERR_AFFINITY_MISMATCH = "Block host affinity does not match"
ERR_ALREADY_ASSIGNED = "Address already assigned in block"


def fnv32(text: str) -> int:
    """FNV-1 32-bit hash of ``text`` (Go ``hash/fnv.New32``), Calico's per-host seed.

    >>> fnv32("")        # the FNV-1 offset basis
    2166136261
    >>> hex(fnv32("a"))
    '0x50c5d7e'
    """
    value = 0x811C9DC5
    for byte in text.encode():
        value = (value * 0x01000193) & 0xFFFFFFFF
        value ^= byte
    return value


class _Block:
    """One allocation block: its affinity, its FIFO free list and who holds what."""

    __slots__ = ("index", "affinity", "seq", "free", "holders")

    def __init__(self, index: int, affinity: str, seq: int, addresses: int):
        self.index = index
        self.affinity = affinity
        self.seq = seq  # claim order; a reclaimed block is a new block with a new seq
        self.free = deque(range(addresses))  # ``Unallocated``: take from the front, release to the back
        self.holders: dict[int, str] = {}  # ordinal -> node that asked for it


class BlockIPAM:
    """Calico IPAM for one IPPool (one family).

    Args:
        pool: the IPPool ``cidr``, e.g. ``"192.168.0.0/16"`` (calico-node's
            ``CALICO_IPV4POOL_CIDR`` default). It must be strictly masked.
        block_size: IPPool ``blockSize``; default 26 (IPv4) / 122 (IPv6),
            allowed 20-32 / 116-128, and the pool must hold at least one block.
        strict_affinity: IPAMConfig ``strictAffinity``. When true a node never
            borrows from another node's block (Windows nodes require it).
            It can be changed later, as ``calicoctl ipam configure`` does.
        max_blocks_per_host: IPAMConfig ``maxBlocksPerHost``. Calico uses 20
            when it is unset (0); any other value requires ``strict_affinity``,
            as ``SetIPAMConfig`` insists.

    :meth:`allocate` is one CNI ADD asking for one address (``AutoAssign`` with
    ``Num4: 1``). Upstream a short result is not an error at this layer; the
    CNI plugin turns "Assigned 0 out of 1" into a failed ADD, which is the
    :class:`Exhausted` raised here.

    Differences from upstream, all documented where they matter: the block
    walk's random start (see the module docstring); a node fills its affine
    blocks in claim order (upstream: in datastore list order, which differs only
    when a node has two non-full blocks); :meth:`release` of an address nobody
    holds raises :class:`NotAllocated` (upstream reports it back and carries on).
    """

    def __init__(
        self,
        pool: object,
        block_size: int | None = None,
        strict_affinity: bool = False,
        max_blocks_per_host: int = DEFAULT_MAX_BLOCKS_PER_HOST,
    ):
        try:
            net = parse_network(pool, obj="BlockIPAM", field="pool")
        except InvalidValue as error:  # host bits set: re-raise with Calico's words; malformed: the loose parse raises
            loose = parse_network(pool, obj="BlockIPAM", field="pool", strict=False)
            raise InvalidValue(f"BlockIPAM {loose}", "pool", pool, error.expected, upstream=ERR_NOT_STRICTLY_MASKED) from None
        obj = f"BlockIPAM {net}"
        low, high = _BLOCK_SIZES[net.version]
        if block_size is None:
            block_size = DEFAULT_BLOCK_SIZE_IPV4 if net.version == 4 else DEFAULT_BLOCK_SIZE_IPV6
        elif isinstance(block_size, bool) or not isinstance(block_size, int) or not low <= block_size <= high:
            raise InvalidValue(obj, "block_size", block_size, f"must be between {low} and {high} for {family_name(net.version)}",
                               upstream=f"ipPool.blockSize must be greater than {low - 1} and less than or equal to {high}")
        if net.prefixlen > block_size:
            raise InvalidValue(obj, "pool", pool, f"must hold at least one /{block_size} block", upstream=ERR_POOL_TOO_SMALL)
        if isinstance(max_blocks_per_host, bool) or not isinstance(max_blocks_per_host, int) or max_blocks_per_host < 0:
            raise InvalidValue(obj, "max_blocks_per_host", max_blocks_per_host, "must be a whole number, 0 meaning the default 20")
        max_blocks_per_host = max_blocks_per_host or DEFAULT_MAX_BLOCKS_PER_HOST
        if max_blocks_per_host != DEFAULT_MAX_BLOCKS_PER_HOST and strict_affinity is not True:
            raise InvalidValue(obj, "max_blocks_per_host", max_blocks_per_host,
                               "may differ from the default 20 only with strict_affinity=True",
                               upstream=ERR_MAX_BLOCKS_NEEDS_STRICT)
        self._obj = obj
        self._pool = net
        self._block_size = block_size
        self._max_blocks = max_blocks_per_host
        self._strict = False
        self.strict_affinity = strict_affinity
        self._iface = IPv4Interface if net.version == 4 else IPv6Interface
        self._base = int(net.network_address)
        self._shift = net.max_prefixlen - block_size
        self._n_blocks = 1 << (block_size - net.prefixlen)
        self._blocks: dict[int, _Block] = {}
        self._affine: dict[str, list[int]] = {}  # node -> block indexes in claim order
        self._open: dict[str, list[tuple[int, int]]] = {}  # node -> heap of (seq, index), non-full first-claimed on top
        self._borrowed: dict[str, set[int]] = {}
        self._starts: dict[str, int] = {}
        self._seq = itertools.count()
        self._used = 0

    # -- configuration -----------------------------------------------------------------

    @property
    def pool(self) -> IPNetwork:
        """The IPPool CIDR."""
        return self._pool

    @property
    def block_size(self) -> int:
        """The prefix length of every block (IPPool ``blockSize``)."""
        return self._block_size

    @property
    def max_blocks_per_host(self) -> int:
        """How many blocks one node may claim (IPAMConfig ``maxBlocksPerHost``, 0 meaning 20)."""
        return self._max_blocks

    @property
    def strict_affinity(self) -> bool:
        """IPAMConfig ``strictAffinity``: true forbids borrowing from other nodes' blocks."""
        return self._strict

    @strict_affinity.setter
    def strict_affinity(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise InvalidValue(self._obj, "strict_affinity", value, "must be True or False")
        if not value and self._max_blocks != DEFAULT_MAX_BLOCKS_PER_HOST:
            raise InvalidValue(self._obj, "strict_affinity", value,
                               f"must stay True while max_blocks_per_host is {self._max_blocks}",
                               upstream=ERR_MAX_BLOCKS_NEEDS_STRICT)
        self._strict = value

    # -- state -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Addresses in the pool (all usable on Linux)."""
        return self._pool.num_addresses

    @property
    def used(self) -> int:
        """Addresses handed out."""
        return self._used

    @property
    def free(self) -> int:
        """Addresses not handed out, in claimed blocks or not."""
        return self.size - self._used

    def blocks(self, node: str) -> list[IPNetwork]:
        """The blocks affine to ``node``, in the order it claimed them (empty blocks included)."""
        return [self._block_network(index) for index in self._affine.get(node, ())]

    def affinity(self, block: object) -> str | None:
        """The node a block is affine to (upstream stores ``host:<node>``), or None if unclaimed."""
        net = parse_network(block, obj=self._obj, field="block")
        if net.version != self._pool.version or net.prefixlen != self._block_size or not net.subnet_of(self._pool):
            raise InvalidValue(self._obj, "block", block, f"must be one of the pool's /{self._block_size} blocks")
        found = self._blocks.get((int(net.network_address) - self._base) >> self._shift)
        return found.affinity if found else None

    def borrowed(self, node: str) -> list[IPAddress]:
        """Addresses ``node`` holds in blocks affine to other nodes; each needs its own /32 (/128) route."""
        return sorted(self._address(value) for value in self._borrowed.get(node, ()))

    # -- CNI ADD / DEL -----------------------------------------------------------------

    def allocate(self, node: str) -> IPv4Interface | IPv6Interface:
        """One address for a pod on ``node``, with the block's prefix length (``AutoAssign``).

        Order: the node's own blocks (first claimed first); else claim a new
        block, unless the node is at ``max_blocks_per_host``; else, without
        strict affinity, borrow from another node's block; else
        :class:`Exhausted`.
        """
        node = self._check_node(node)
        heap = self._open.get(node)
        while heap:
            seq, index = heap[0]
            block = self._blocks[index]
            if block.seq == seq and block.free:
                break
            heapq.heappop(heap)  # full, or reclaimed by another node since
        else:
            block = self._claim_or_borrow(node)
        return self._take(block, block.free.popleft(), node)

    def assign(self, ip: object, node: str) -> IPv4Interface | IPv6Interface:
        """Give ``node`` one chosen address (``AssignIP``; Calico's ``cni.projectcalico.org/ipAddrs``).

        If the address's block does not exist yet, ``node`` claims it (no block
        limit applies, as upstream). With strict affinity the block must be
        affine to ``node``.
        """
        node = self._check_node(node)
        address = parse_address(ip, obj=self._obj, field="ip")
        if address.version != self._pool.version or address not in self._pool:
            raise InvalidValue(self._obj, "ip", ip, f"must be inside the pool {self._pool}", upstream=ERR_NOT_IN_POOL)
        offset = int(address) - self._base
        index, ordinal = offset >> self._shift, offset & ((1 << self._shift) - 1)
        block = self._blocks.get(index)
        if block is None:
            block = self._claim(index, node)
        elif self._strict and block.affinity != node:
            raise InvalidValue(self._obj, "ip", ip, f"must be in a block affine to {node} (strict affinity)",
                               upstream=ERR_AFFINITY_MISMATCH)
        elif ordinal in block.holders:
            raise AlreadyExists(self._obj, "ip", ip, f"is already held by a pod on {block.holders[ordinal]}",
                                upstream=ERR_ALREADY_ASSIGNED)
        block.free.remove(ordinal)
        return self._take(block, ordinal, node)

    def release(self, ip: object) -> None:
        """Give an address back (``ReleaseIPs``): its ordinal goes to the back of its block's free list.

        The block stays affine to its node even when it becomes empty.
        """
        address = parse_address(ip, obj=self._obj, field="ip")
        offset = int(address) - self._base
        block = None
        if address.version == self._pool.version and 0 <= offset < self.size:
            block = self._blocks.get(offset >> self._shift)
        ordinal = offset & ((1 << self._shift) - 1)
        if block is None or ordinal not in block.holders:
            raise NotAllocated(self._obj, "ip", ip, "must be an address this pool has handed out")
        node = block.holders.pop(ordinal)
        if not block.free:
            heapq.heappush(self._open[block.affinity], (block.seq, block.index))
        block.free.append(ordinal)
        if node != block.affinity:
            self._borrowed[node].discard(int(address))
        self._used -= 1

    def __repr__(self) -> str:
        return (
            f"<BlockIPAM {self._pool} /{self._block_size} blocks: {len(self._blocks)} of {self._n_blocks} claimed, "
            f"{self._used} addresses used, strictAffinity={self._strict}>"
        )

    # -- internals ---------------------------------------------------------------------

    def _check_node(self, node: object) -> str:
        if not isinstance(node, str) or not node:
            raise InvalidValue(self._obj, "node", node, "must be a node name")
        return node

    def _address(self, value: int) -> IPAddress:
        return self._iface((value, self._pool.max_prefixlen)).ip

    def _block_network(self, index: int) -> IPNetwork:
        return type(self._pool)((self._base + (index << self._shift), self._block_size))

    def _start(self, node: str) -> int:
        """Where ``node``'s walk over the pool's blocks begins (``randomBlockGenerator``)."""
        start = self._starts.get(node)
        if start is None:
            start = self._starts[node] = rand_below(random.Random(fnv32(node)), self._n_blocks)
        return start

    def _claim_or_borrow(self, node: str) -> _Block:
        owned = len(self._affine.get(node, ()))
        if owned >= self._max_blocks:
            raise Exhausted(self._obj, "node", node,
                            f"must be able to claim a new block, but it holds {owned} full blocks "
                            f"and maxBlocksPerHost is {self._max_blocks}",
                            upstream=ERR_BLOCK_LIMIT)
        index = self._find_usable_block(node)
        if index is not None:
            return self._claim(index, node)
        family = family_name(self._pool.version)
        if self._strict:
            raise Exhausted(self._obj, "node", node, "must find an affine block with room or an unclaimed block",
                            upstream=f"failed to request {family} addresses: Assigned 0 out of 1 requested "
                                     f"{family} addresses; {ERR_STRICT_AFFINITY}")
        start, count = self._start(node), self._n_blocks
        for step in range(count):
            block = self._blocks[(start + step) % count]
            if block.free:
                return block
        raise Exhausted(self._obj, "node", node, "must find a free address somewhere in the pool",
                        upstream=f"failed to request {family} addresses: Assigned 0 out of 1 requested "
                                 f"{family} addresses; No IPs available in pools: [{self._pool}]")

    def _find_usable_block(self, node: str) -> int | None:
        """The block ``node`` should claim next (``findUsableBlock``), or None.

        The first block in the node's walk that nobody has created; failing
        that, the first empty block of another node, which is reclaimed. (The
        node's own blocks with room were already tried in :meth:`allocate`.)
        """
        start, count, blocks = self._start(node), self._n_blocks, self._blocks
        if len(blocks) < count:
            index = start
            while index in blocks:
                index = (index + 1) % count
            return index
        for step in range(count):
            index = (start + step) % count
            if not blocks[index].holders:
                return index
        return None

    def _claim(self, index: int, node: str) -> _Block:
        """Create block ``index`` with affinity to ``node``; an existing empty block is reclaimed first."""
        old = self._blocks.get(index)
        if old is not None:
            self._affine[old.affinity].remove(index)
        seq = next(self._seq)
        block = self._blocks[index] = _Block(index, node, seq, 1 << self._shift)
        self._affine.setdefault(node, []).append(index)
        heapq.heappush(self._open.setdefault(node, []), (seq, index))
        return block

    def _take(self, block: _Block, ordinal: int, node: str) -> IPv4Interface | IPv6Interface:
        block.holders[ordinal] = node
        value = self._base + (block.index << self._shift) + ordinal
        if block.affinity != node:
            self._borrowed.setdefault(node, set()).add(value)
        self._used += 1
        return self._iface((value, self._block_size))
