"""Checkers for chapter 07, "MTU and encapsulation overhead".

Each expected answer is recomputed from the datapath modes
(:mod:`kubenet_lab.overlay.modes`) or read off a packet walk on the
chapter's two-node cluster, never stored.

>>> check_ping_payload(None)
Traceback (most recent call last):
...
AssertionError: 07.3: not yet. Give a whole number of bytes, the value of ping's -s, not None.
"""

from __future__ import annotations

from ..cluster import Cluster
from ..datapath.packet import L4_HEADER
from ..overlay.modes import IP_HEADER, MODES
from . import passed, require

# The chapter's cluster: one pod on each of two nodes, so every packet crosses the underlay.
NODES = ("node-1", "node-2")
CLIENT, SERVER = "client", "server"


def two_node_cluster(cni: str = "flannel-vxlan", **settings) -> Cluster:
    """The chapter's cluster: ``client`` on node-1, ``server`` on node-2, with ``settings`` for Cluster()."""
    cluster = Cluster(cni=cni, ipam="calico" if cni.startswith("calico") else "host-local", **settings)
    for node, pod in zip(NODES, (CLIENT, SERVER)):
        cluster.add_node(node)
        cluster.add_pod(pod, node=node)
    return cluster


def _whole(answer: object) -> bool:
    return isinstance(answer, int) and not isinstance(answer, bool)


def check_ipip_jumbo(answer: object) -> None:
    """07.1: the pod MTU Calico gives pods with IP-in-IP on a 9000-byte (jumbo) IPv4 underlay."""
    underlay = 9000
    expected = two_node_cluster("calico-ipip", mtu=underlay).network.pod_mtu
    require("07.1", _whole(answer), f"Give the MTU as a whole number of bytes, not {answer!r}.")
    require("07.1", answer != underlay, "The tunnel's outer header still has to fit inside the underlay's 9000 bytes.")
    require("07.1", answer != underlay - MODES["calico-vxlan"].overhead(4),
            "That is VXLAN's budget. IP-in-IP adds no UDP, no VXLAN header and no inner Ethernet header.")
    require("07.1", answer == expected, "Subtract IP-in-IP's overhead (one outer IPv4 header) from the underlay MTU.")
    passed("07.1", "IP-in-IP on a jumbo underlay")


def check_vxlan_ipv6(answer: object) -> None:
    """07.2: the pod MTU with VXLAN over a 1500-byte IPv6 underlay (what flannel-v6.1 is clamped to)."""
    underlay = 1500
    mode = MODES["flannel-vxlan"]
    expected = mode.pod_mtu(underlay, 6)
    require("07.2", _whole(answer), f"Give the MTU as a whole number of bytes, not {answer!r}.")
    require("07.2", answer != mode.pod_mtu(underlay, 4),
            "That is the IPv4 underlay's answer. An IPv6 outer header is 40 bytes, not 20.")
    require("07.2", answer != underlay - IP_HEADER[6],
            "The outer IPv6 header is not all: UDP, the VXLAN header and the inner Ethernet header come too.")
    require("07.2", answer == expected, "Add up outer IPv6 + UDP + VXLAN + inner Ethernet, and subtract that from 1500.")
    passed("07.2", "VXLAN over an IPv6 underlay costs 70 bytes")


def check_ping_payload(answer: object) -> None:
    """07.3: the largest ``ping -M do -s N`` that crosses flannel VXLAN on a 1500-byte underlay."""
    cluster = two_node_cluster("flannel-vxlan", mtu=1500)
    headers = IP_HEADER[4] + L4_HEADER["icmp"]  # what ping adds to -s: an ICMP echo header and an IPv4 header
    expected = cluster.network.pod_mtu - headers
    require("07.3", _whole(answer) and answer > 0,
            f"Give a whole number of bytes, the value of ping's -s, not {answer!r}.")
    require("07.3", answer + headers != 1500,
            f"{answer} is the answer for a plain 1500-byte network. Inside the tunnel the pods have less than 1500.")
    if answer + headers <= 65535:
        walk = cluster.trace(CLIENT, SERVER, size=answer + headers)
        require("07.3", walk.outcome == "delivered",
                f"ping -s {answer} sends a {answer + headers}-byte IP packet, and the walk says: {walk.reason}. "
                "ping adds 8 bytes of ICMP header and 20 of IPv4 header to -s.")
    require("07.3", answer == expected,
            f"ping -s {answer} gets through, but a bigger one would too: fill the pod MTU exactly.")
    passed("07.3", "the largest ping that crosses the tunnel with DF set")


def underlay_fragment_lengths(**settings) -> list[int]:
    """IPv4 total lengths of the packets that carry a 1500-byte ping from client to server across the underlay."""
    from scapy.layers.inet import IP

    walk = two_node_cluster("flannel-vxlan", **settings).trace(CLIENT, SERVER, size=1500)
    hop = next(h for h in walk.wire_hops if h.namespace == NODES[0] and h.interface == "eth0")
    packets = hop.packet if isinstance(hop.packet, list) else [hop.packet]
    return [len(p[IP]) for p in packets]


def check_underlay_fragments(answer: object) -> None:
    """07.4: case (d), flannel.1 made without ``dev`` (MTU 1500) and pods at 1500: the sizes of the outer
    IP packets on the underlay when a pod sends a 1500-byte packet."""
    expected = underlay_fragment_lengths(mtu=1500, veth_mtu=1500, tunnel_mtu=1500)
    require("07.4", isinstance(answer, (list, tuple)) and all(_whole(n) for n in answer),
            f"Give a list of whole numbers, the IPv4 total length of each packet, first fragment first, not {answer!r}.")
    answer = list(answer)
    require("07.4", len(answer) == len(expected),
            f"The outer packet is 1550 bytes and the underlay's MTU 1500: into how many pieces does that go? "
            f"(You gave {len(answer)}.)")
    require("07.4", sum(answer) != sum(expected) - IP_HEADER[4] * (len(expected) - 1) or answer == expected,
            "Each fragment carries its own 20-byte IPv4 header: the pieces add up to more than 1550.")
    require("07.4", answer[0] == expected[0],
            "The first fragment fills the underlay MTU: its payload is (MTU - 20) rounded down to a multiple of 8.")
    require("07.4", answer == expected,
            "The last fragment carries what is left of the 1530 bytes after the outer IPv4 header, plus a header of its own.")
    passed("07.4", "a VXLAN device without dev: fragments on the underlay")
