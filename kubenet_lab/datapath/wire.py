"""scapy packets from the walk's header values: the bytes Linux would put on the wire.

Imported only when bytes are wanted, so ``import kubenet_lab`` never loads scapy.
"""

from __future__ import annotations

import zlib

from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from .packet import Frame, Packet

__all__ = ["build", "frame_ip", "bind_layers"]

_GENEVE = None


def _geneve():
    global _GENEVE
    if _GENEVE is None:
        from scapy.contrib.geneve import GENEVE

        _GENEVE = GENEVE
    return _GENEVE


def bind_layers() -> None:
    """Make scapy dissect everything the walk builds: VXLAN on Linux's port 8472 is bound by
    scapy's own VXLAN layer, Geneve by its contrib layer, loaded here."""
    _geneve()


def _ip_id(*parts: object) -> int:
    # Linux numbers non-DF packets from a per-destination counter; any stable value serves here.
    return zlib.crc32("/".join(map(str, parts)).encode()) & 0xFFFF


def frame_ip(frame: Frame):
    """The IP packet of a frame (no Ethernet header)."""
    ip = IP(src=str(frame.src), dst=str(frame.dst), ttl=frame.ttl, flags="DF" if frame.df else 0,
            id=0 if frame.df else _ip_id(frame.src, frame.dst, frame.sport, frame.dport))
    if frame.quoted is not None:
        original = bytes(frame_ip(frame.quoted))[: frame.length - 28]
        return ip / ICMP(type=frame.icmp_type, code=frame.icmp_code, nexthopmtu=frame.next_hop_mtu) / Raw(original)
    payload = Raw(b"\x00" * frame.payload) if frame.payload else None
    if frame.proto == "tcp":
        l4 = TCP(sport=frame.sport, dport=frame.dport, flags="S" if not frame.payload else "PA", seq=1, window=64240)
    elif frame.proto == "udp":
        l4 = UDP(sport=frame.sport, dport=frame.dport)
    else:
        l4 = ICMP(type=frame.icmp_type, code=frame.icmp_code, id=frame.sport, seq=1)
    return ip / l4 / payload if payload is not None else ip / l4


def _fragments(ip, payload: int) -> list:
    return fragment(ip, fragsize=payload) if payload and len(ip) - 20 > payload else [ip]


def _with_eth(pieces: list, eth) -> list:
    return [eth.copy() / p if eth is not None else p for p in pieces]


def _outer(packet: Packet, inner_ip):
    """Wrap one inner IP packet (a whole packet or one fragment) in the tunnel's headers."""
    inner, outer = packet.inner, packet.outer
    flags = "DF" if outer.df else 0
    ident = 0 if outer.df else _ip_id(outer.src, outer.dst, inner.src, inner.dst, inner.sport)
    ip = IP(src=str(outer.src), dst=str(outer.dst), ttl=outer.ttl, flags=flags, id=ident)
    if outer.encapsulation == "ipip":
        return ip / inner_ip
    l2 = Ether(src=inner.eth_src, dst=inner.eth_dst) / inner_ip
    if outer.encapsulation == "vxlan":
        return ip / UDP(sport=outer.sport, dport=outer.dport) / VXLAN(flags=0x08, vni=outer.vni) / l2
    return ip / UDP(sport=outer.sport, dport=outer.dport) / _geneve()(vni=outer.vni, proto=0x6558) / l2


def build(packet: Packet):
    """The scapy packet for one hop of the walk; a list of packets when it travels in fragments."""
    inner, outer = packet.inner, packet.outer
    pieces = _fragments(frame_ip(inner), inner.fragment_payload)
    if outer is None:
        eth = Ether(src=inner.eth_src, dst=inner.eth_dst) if inner.eth_src else None
        built = _with_eth(pieces, eth)
    else:
        eth = Ether(src=outer.eth_src, dst=outer.eth_dst) if outer.eth_src else None
        built = _with_eth([f for p in pieces for f in _fragments(_outer(packet, p), outer.fragment_payload)], eth)
    return built[0] if len(built) == 1 else built
