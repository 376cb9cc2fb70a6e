"""Packets of the walk: light header values, turned into real bytes with scapy on demand.

The walk rewrites headers hop by hop (TTL, MACs, an outer header added or
removed), so it works on small frozen values; :meth:`Packet.to_scapy` builds
the scapy packet, byte-accurate to what Linux sends, only when someone looks
(``hop.packet``, ``trace.to_pcap``). scapy is imported there and nowhere else.

What Linux puts in the outer headers (datapath.md §1.6, tested on a 6.x kernel):

* VXLAN header flags exactly ``0x08`` (only the I bit, RFC 7348 §5): the kernel
  drops frames with any other flag bit, and scapy's ``VXLAN()/Ether()``
  default would set ``0x0c``;
* outer UDP source port from a hash of the inner flow, scaled into the local
  port range 32768-60999 (``udp_flow_src_port``), destination port the
  device's (8472 unless told 4789);
* outer IPv4 TTL 64 and DF clear for VXLAN/Geneve (device defaults ``ttl
  auto``, ``df unset``); for IP-in-IP, TTL and DF copied from the inner header;
* outer UDP checksum computed: current kernels enable it by default
  (``udpcsum``), contrary to RFC 7348's "SHOULD be zero".

The kernel's flow hash is seeded at random at boot, so its source port is not
predictable; ours uses CRC-32 of the inner 5-tuple with the kernel's scaling,
so it is stable and inside the same range.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from ..addresses import IPAddress

__all__ = ["Frame", "Outer", "Packet", "flow_source_port", "LOCAL_PORT_RANGE"]

# net.ipv4.ip_local_port_range default (include/net/ip.h: 32768 60999).
LOCAL_PORT_RANGE = (32768, 60999)
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}
L4_HEADER = {"icmp": 8, "tcp": 20, "udp": 8}
DEFAULT_TTL = 64  # net.ipv4.ip_default_ttl
# Linux quotes as much of the offending packet as fits in a 576-byte ICMP error (net/ipv4/icmp.c).
ICMP_QUOTE_LIMIT = 576 - 20 - 8


def flow_source_port(src: IPAddress, dst: IPAddress, proto: str, sport: int, dport: int,
                     low: int = LOCAL_PORT_RANGE[0], high: int = LOCAL_PORT_RANGE[1]) -> int:
    """An outer UDP source port for an inner flow, scaled as Linux's ``udp_flow_src_port`` scales it.

    >>> import ipaddress
    >>> a, b = ipaddress.ip_address("10.244.0.2"), ipaddress.ip_address("10.244.1.2")
    >>> port = flow_source_port(a, b, "tcp", 40000, 8080)
    >>> 32768 <= port <= 60999, port == flow_source_port(a, b, "tcp", 40000, 8080)
    (True, True)
    """
    key = src.packed + dst.packed + struct.pack("!BHH", PROTOCOL_NUMBERS[proto], sport, dport)
    flow_hash = zlib.crc32(key)
    flow_hash ^= (flow_hash << 16) & 0xFFFFFFFF
    return ((flow_hash * (high + 1 - low)) >> 32) + low


@dataclass(frozen=True)
class Frame:
    """An IP packet, with its Ethernet header when it has one (IP-in-IP's inner packet has none).

    ``payload`` is the number of bytes after the L4 header. ICMP errors carry
    the packet they answer in ``quoted`` (RFC 792 asks for its IP header and first 8 bytes; Linux
    quotes as much as fits in 576 bytes, RFC 1812 §4.3.2.3).
    """

    src: IPAddress
    dst: IPAddress
    proto: str
    sport: int = 0
    dport: int = 0
    ttl: int = DEFAULT_TTL
    df: bool = True
    payload: int = 0
    eth_src: str | None = None
    eth_dst: str | None = None
    icmp_type: int = 8
    icmp_code: int = 0
    next_hop_mtu: int = 0
    quoted: Frame | None = None
    fragment_payload: int = 0

    @property
    def largest(self) -> int:
        """Length of the largest piece on the wire: the whole packet, or its first fragment."""
        return min(self.length, 20 + self.fragment_payload) if self.fragment_payload else self.length

    @property
    def length(self) -> int:
        """IPv4 total length: header, L4 header and payload (before any fragmentation)."""
        inner = self.quoted.length if self.quoted is not None else 0
        return 20 + L4_HEADER[self.proto] + (min(inner, ICMP_QUOTE_LIMIT) if self.quoted is not None else self.payload)


@dataclass(frozen=True)
class Outer:
    """The outer headers a tunnel adds: Ethernet, IPv4, and UDP + VXLAN/Geneve (none for IP-in-IP)."""

    encapsulation: str
    src: IPAddress
    dst: IPAddress
    ttl: int
    df: bool
    sport: int = 0
    dport: int = 0
    vni: int = 0
    eth_src: str | None = None
    eth_dst: str | None = None
    fragment_payload: int = 0

    @property
    def overhead(self) -> int:
        """Bytes added inside the underlay IP MTU (the inner Ethernet header counted for VXLAN/Geneve)."""
        return 20 if self.encapsulation == "ipip" else 20 + 8 + 8 + 14


@dataclass(frozen=True)
class Packet:
    """What is on the wire at one hop: the inner frame, maybe inside a tunnel, maybe in fragments."""

    inner: Frame
    outer: Outer | None = None

    @property
    def length(self) -> int:
        """Length of the largest IP packet on the wire (the first fragment when fragmented)."""
        if self.outer is None:
            return self.inner.largest
        total = self.inner.largest + self.outer.overhead
        return min(total, 20 + self.outer.fragment_payload) if self.outer.fragment_payload else total

    @property
    def fragments(self) -> int:
        """How many IP packets this is on the wire."""
        inner = self.inner
        count = -(-(inner.length - 20) // inner.fragment_payload) if inner.fragment_payload else 1
        if self.outer is not None and self.outer.fragment_payload:
            count *= -(-(inner.largest + self.outer.overhead - 20) // self.outer.fragment_payload)
        return count

    def fragmented(self, mtu: int) -> Packet:
        """Split the outermost packet as Linux's ip_fragment does: every fragment but the last
        carries ``mtu - 20`` bytes of payload rounded down to a multiple of 8 (RFC 791 offsets)."""
        per = (mtu - 20) // 8 * 8
        if self.outer is not None:
            return replace(self, outer=replace(self.outer, fragment_payload=per))
        return replace(self, inner=replace(self.inner, fragment_payload=per))

    @property
    def df(self) -> bool:
        return self.outer.df if self.outer else self.inner.df

    def with_ttl(self, ttl: int) -> Packet:
        if self.outer is not None:
            return replace(self, outer=replace(self.outer, ttl=ttl))
        return replace(self, inner=replace(self.inner, ttl=ttl))

    @property
    def ttl(self) -> int:
        return self.outer.ttl if self.outer else self.inner.ttl

    @property
    def dst(self) -> IPAddress:
        return self.outer.dst if self.outer else self.inner.dst

    @property
    def src(self) -> IPAddress:
        return self.outer.src if self.outer else self.inner.src

    def with_macs(self, src: str | None, dst: str | None) -> Packet:
        if self.outer is not None:
            return replace(self, outer=replace(self.outer, eth_src=src, eth_dst=dst))
        return replace(self, inner=replace(self.inner, eth_src=src, eth_dst=dst))

    def to_scapy(self):
        """The packet as scapy builds it (a list of packets when fragmented)."""
        from . import wire

        return wire.build(self)
