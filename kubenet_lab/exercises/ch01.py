"""Checkers for chapter 01, "A flat pod network: every pod gets an IP"."""

from __future__ import annotations

import ipaddress

from ..errors import Exhausted
from ..ipam import BlockIPAM, HostLocal, NodeCIDRAllocator
from . import passed, require

CLUSTER_CIDR = "10.244.0.0/16"


def _as_network(value: object):
    try:
        return ipaddress.ip_network(str(value))
    except ValueError:
        return None


def _capacity(allocator, take) -> int:
    count = 0
    while True:
        try:
            take(allocator, count)
        except Exhausted:
            return count
        count += 1


def host_local_capacity(subnet: str) -> int:
    """How many pod IPs host-local hands out from one node podCIDR, counted by exhausting it."""
    return _capacity(HostLocal(subnet), lambda a, n: a.allocate(f"pod-{n}"))


def check_next_fit(answer: object) -> None:
    """01.1: node-1..3 join, node-2 leaves, node-4 joins: which podCIDR does node-4 get?"""
    allocator = NodeCIDRAllocator(CLUSTER_CIDR)
    cidrs = [allocator.allocate() for _ in range(3)]
    allocator.release(cidrs[1])
    expected = allocator.allocate()
    got = _as_network(answer)
    require("01.1", got is not None, f"Give a CIDR such as ipaddress.ip_network('10.244.9.0/24'), not {answer!r}.")
    require("01.1", got != cidrs[1],
            "kube-controller-manager does not reuse the freed slot at once: its search goes on after the last allocation.")
    require("01.1", got == expected, "Count the /24 slots of the cluster CIDR: which one comes after the last one handed out?")
    passed("01.1", "kube-controller-manager allocates node podCIDRs next-fit")


def check_pods_per_node(answer: object) -> None:
    """01.2: how many pods can host-local address on a node whose podCIDR is a /24?"""
    expected = host_local_capacity("10.244.1.0/24")
    require("01.2", isinstance(answer, int) and not isinstance(answer, bool), f"Give a whole number, not {answer!r}.")
    require("01.2", answer != 256 and answer != 254,
            "host-local never hands out the network address, the gateway (.1, the cni0 bridge) or the IPv4 broadcast.")
    require("01.2", answer == expected, "Count the addresses between rangeStart and rangeEnd, minus the gateway.")
    passed("01.2", "host-local capacity of a /24 podCIDR")


def check_node_mask(answer: object, *, nodes: int = 500, max_pods: int = 110) -> None:
    """01.3: a node mask for a /16 cluster CIDR holding ``nodes`` nodes of ``max_pods`` pods each."""
    require("01.3", isinstance(answer, int) and not isinstance(answer, bool) and 16 <= answer <= 30,
            f"Give a prefix length between 16 and 30, not {answer!r}.")
    node_slots = NodeCIDRAllocator(CLUSTER_CIDR, answer).size
    require("01.3", node_slots >= nodes,
            f"A /{answer} node mask leaves only {node_slots} podCIDRs in {CLUSTER_CIDR}: too few for {nodes} nodes.")
    pods = host_local_capacity(f"10.244.0.0/{answer}")
    require("01.3", pods >= max_pods,
            f"A /{answer} podCIDR holds only {pods} pods under host-local: fewer than the kubelet's maxPods of {max_pods}.")
    passed("01.3", "a node mask that fits both the nodes and their pods")


def check_calico_blocks(answer: object, *, pods: int = 100) -> None:
    """01.4: with Calico's default /26 blocks, how many blocks does a node running ``pods`` pods hold?"""
    ipam = BlockIPAM(CLUSTER_CIDR)
    for _ in range(pods):
        ipam.allocate("node-1")
    expected = len(ipam.blocks("node-1"))
    require("01.4", isinstance(answer, int) and not isinstance(answer, bool), f"Give a whole number, not {answer!r}.")
    require("01.4", answer == expected,
            "A /26 block holds 64 addresses, and Calico uses every one of them, .0 and the last included.")
    passed("01.4", "Calico claims /26 blocks as a node's pods grow")
