"""Checkers for chapter 02, "Overlays: every node is a VTEP".

Each checker rebuilds the chapter's cluster (the scenario
``scenarios/three-node-vxlan.yaml``, built here with the same names and
addresses so the checker does not depend on where the notebook runs) or the
cluster its exercise describes, and asks the overlay model and the packet
walk for the answer.

>>> c = three_node_cluster()
>>> str(c.host("node-1")) == str(__import__("kubenet_lab").Cluster.load("scenarios/three-node-vxlan.yaml").host("node-1"))
True
"""

from __future__ import annotations

import ipaddress

from ..cluster import Cluster
from . import passed, require

SCENARIO = "three-node-vxlan"
# The scenario's nodes and pods (scenarios/three-node-vxlan.yaml), in its order.
NODES = (("node-1", "192.168.0.11"), ("node-2", "192.168.0.12"), ("node-3", "192.168.0.13"))
PODS = (("web-1", "node-1", {"app": "web"}), ("client", "node-1", {}), ("web-2", "node-2", {"app": "web"}),
        ("db-1", "node-2", {"app": "db"}), ("web-3", "node-3", {"app": "web"}))


def three_node_cluster(cni: str = "flannel-vxlan", **options) -> Cluster:
    """The chapter's three-node cluster (flannel VXLAN unless ``cni`` says otherwise)."""
    ipam = "calico" if cni.startswith("calico") else "host-local"
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", node_subnet="192.168.0.0/24", cni=cni,
                ipam=ipam, name=SCENARIO, **options)
    for name, ip in NODES:
        c.add_node(name, ip=ip)
    for name, node, labels in PODS:
        c.add_pod(name, node=node, labels=labels)
    return c


def underlay_hop(trace):
    """The first hop that puts an encapsulated packet on the underlay."""
    return next(h for h in trace.wire_hops if h.state.outer is not None)


def _whole(answer: object) -> bool:
    return isinstance(answer, int) and not isinstance(answer, bool)


def _address(value: object):
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        return None


def racked_cluster(racks: int = 3, per_rack: int = 4) -> Cluster:
    """flannel VXLAN with DirectRouting, ``racks`` racks of ``per_rack`` nodes, a subnet per rack."""
    c = Cluster(cni="flannel-vxlan", same_subnet_direct=True, racks=[
        {"name": f"rack-{r}", "subnet": f"192.168.{r}.0/24", "tor": {"name": f"tor-{r}"},
         "nodes": [f"node-{(r - 1) * per_rack + i}" for i in range(1, per_rack + 1)]}
        for r in range(1, racks + 1)])
    for n in range(1, racks * per_rack + 1):
        c.add_node(f"node-{n}")
    return c


def check_fdb_entries(answer: object, *, nodes: int = 50) -> None:
    """02.1: how many FDB entries flanneld programs on each node of a ``nodes``-node flannel VXLAN cluster."""
    c = Cluster(cni="flannel-vxlan")
    for n in range(1, nodes + 1):
        c.add_node(f"node-{n}")
    counts = {len(c.host(n.name).fdb) for n in c.nodes}
    require("02.1", _whole(answer), f"Give a whole number, not {answer!r}.")
    require("02.1", answer != nodes,
            "A node needs no FDB entry for its own VTEP: packets to its own pods never enter flannel.1.")
    require("02.1", answer in counts and len(counts) == 1,
            "Count the entries of `bridge fdb show dev flannel.1` on one node: one per *remote* VTEP.")
    passed("02.1", "one FDB entry per remote VTEP")


def check_outer_destination(answer: object) -> None:
    """02.2: (outer destination IP, VNI, outer UDP destination port) of web-1 -> db-1 on the underlay."""
    c = three_node_cluster()
    outer = underlay_hop(c.trace("web-1", "db-1", proto="tcp", dport=5432)).state.outer
    require("02.2", isinstance(answer, (tuple, list)) and len(answer) == 3,
            f"Give a tuple of three: (outer destination IP, VNI, UDP destination port), not {answer!r}.")
    ip, vni, port = answer
    address = _address(ip)
    require("02.2", address is not None, f"The first item must be an IP address, not {ip!r}.")
    db = c.pod("db-1").ip
    require("02.2", address != db,
            f"{db} is the *inner* destination, the pod. The underlay routes on the address of a node.")
    vtep = next(r.via for r in c.host("node-1").routes if r.dst != "default" and db in r.dst)
    require("02.2", address != vtep,
            f"{vtep} is the route's next hop, node-2's flannel.1 address. Follow it: neighbour entry -> VTEP MAC "
            "-> FDB entry -> dst.")
    require("02.2", address == outer.dst, "Which node runs db-1? The FDB entry for its VTEP MAC names its address.")
    require("02.2", _whole(vni) and vni == outer.vni,
            "The VNI is a property of the flannel.1 device (`ip -d link show flannel.1`: id ...).")
    require("02.2", _whole(port), f"The UDP port must be a whole number, not {port!r}.")
    require("02.2", port == outer.dport or port != 4789,
            "4789 is IANA's VXLAN port, but flannel leaves the Linux kernel's default.")
    require("02.2", port == outer.dport,
            "The destination port is the flannel.1 device's `dstport` (`ip -d link show flannel.1`).")
    passed("02.2", "the underlay routes on the remote VTEP's address")


def check_ttls(answer: object) -> None:
    """02.3: (outer TTL, inner TTL) of web-1's ping to web-3 where it crosses the underlay."""
    c = three_node_cluster()
    state = underlay_hop(c.trace("web-1", "web-3")).state
    require("02.3", isinstance(answer, (tuple, list)) and len(answer) == 2 and all(_whole(a) for a in answer),
            f"Give a tuple of two whole numbers, (outer TTL, inner TTL), not {answer!r}.")
    outer_ttl, inner_ttl = answer
    require("02.3", inner_ttl != 64,
            "node-1 *routed* the pod's packet into flannel.1 (the walk's `forward` hop): routing decrements the TTL.")
    require("02.3", inner_ttl == state.inner.ttl, "Count the routers the inner packet has crossed so far.")
    require("02.3", outer_ttl == state.outer.ttl,
            "The outer IPv4 header is new: node-1's own stack writes it, with net.ipv4.ip_default_ttl.")
    passed("02.3", "two IP headers, two TTLs")


def check_direct_routing(answer: object, *, racks: int = 3, per_rack: int = 4) -> None:
    """02.4: FDB entries on node-1 with DirectRouting, ``racks`` racks of ``per_rack`` nodes."""
    c = racked_cluster(racks, per_rack)
    expected = len(c.host("node-1").fdb)
    require("02.4", _whole(answer), f"Give a whole number, not {answer!r}.")
    require("02.4", answer != racks * per_rack - 1,
            "With DirectRouting, remote nodes on node-1's own subnet get a plain route via eth0, no FDB entry.")
    require("02.4", answer == expected, "Only the nodes of the *other* racks sit behind a router: count those.")
    passed("02.4", "DirectRouting tunnels only across subnets")
