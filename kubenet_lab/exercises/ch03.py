"""Checkers for chapter 03, "Routed pod networks: every node a router".

Each checker rebuilds the chapter's clusters and converges their BGP fabric
(:class:`~kubenet_lab.bgp.fabric.Fabric`) to find the expected answer.

>>> check_full_mesh_sessions(190)
PASS: 03.1 – a full mesh of n nodes has n(n−1)/2 sessions
>>> check_full_mesh_sessions(380)
Traceback (most recent call last):
...
AssertionError: 03.1: not yet. Each session joins two nodes: counting n − 1 peers for each of n nodes counts
every session twice.
"""

from __future__ import annotations

from ..bgp.decision import Step
from ..bgp.fabric import Fabric
from ..cluster import Cluster
from . import passed, require

__all__ = ["four_node_cluster", "two_rack_cluster", "check_full_mesh_sessions", "check_reflected_step",
           "check_as_path", "check_withdrawal_updates"]

TWO_RACKS = (
    {"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1", "asn": 65001},
     "nodes": ["node-1", "node-2"]},
    {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2", "asn": 65002},
     "nodes": ["node-3", "node-4"]},
)


def four_node_cluster(design: str = "full-mesh") -> Cluster:
    """The chapter's first cluster: four Calico nodes on one segment, one pod each (so one /26 block each)."""
    cluster = Cluster(cni="calico-bgp", ipam="calico", bgp_design=design, name="four-nodes")
    for i in range(1, 5):
        cluster.add_node(f"node-{i}")
        cluster.add_pod(f"web-{i}", node=f"node-{i}")
    return cluster


def two_rack_cluster() -> Cluster:
    """``scenarios/two-rack-bgp.yaml``'s nodes and pods: two racks, AS per rack, eBGP to the ToRs."""
    cluster = Cluster(cni="calico-bgp", ipam="calico", racks=TWO_RACKS, bgp_design="per-rack-ebgp",
                      name="two-rack-bgp")
    for node in ("node-1", "node-2", "node-3", "node-4"):
        cluster.add_node(node)
    for pod, node in (("web-1", "node-1"), ("client", "node-2"), ("web-2", "node-3"), ("api-1", "node-4")):
        cluster.add_pod(pod, node=node)
    return cluster


def _whole(exercise: str, answer: object) -> None:
    require(exercise, isinstance(answer, int) and not isinstance(answer, bool), f"Give a whole number, not {answer!r}.")


def check_full_mesh_sessions(answer: object, *, nodes: int = 20) -> None:
    """03.1: how many BGP sessions does Calico's node-to-node mesh of ``nodes`` nodes hold?"""
    cluster = Cluster(cni="calico-bgp", bgp_design="full-mesh")
    for i in range(1, nodes + 1):
        cluster.add_node(f"node-{i}")
    expected = Fabric.from_cluster(cluster).session_count
    _whole("03.1", answer)
    require("03.1", answer != nodes * (nodes - 1),
            "Each session joins two nodes: counting n − 1 peers for each of n nodes counts every session twice.")
    require("03.1", answer != nodes - 1, "That is the number of sessions one node holds; count the whole cluster.")
    require("03.1", answer == expected, "Every pair of nodes holds one iBGP session: how many pairs of 20 are there?")
    passed("03.1", "a full mesh of n nodes has n(n−1)/2 sessions")


def _step(answer: object) -> Step | None:
    if isinstance(answer, Step):
        return answer
    if isinstance(answer, str):
        text = answer.strip().lower().replace("step.", "")
        for step in Step:
            if text in (step.name.lower(), step.value.lower()):
                return step
    return None


def check_reflected_step(answer: object) -> None:
    """03.2: node-4 hears node-3's block from both route reflectors; which decision step chose?"""
    cluster = four_node_cluster("route-reflectors")
    fabric = Fabric.from_cluster(cluster)
    fabric.converge()
    expected = fabric.speaker("node-4").loc_rib[cluster.blocks("node-3")[0]].step
    got = _step(answer)
    require("03.2", got is not None,
            f"Give a decision step, e.g. Step.LOCAL_PREF or 'highest LOCAL_PREF', not {answer!r}.")
    require("03.2", got is not Step.ROUTER_ID,
            "Both copies carry the same ORIGINATOR_ID (node-3's), and RFC 4456 §9 compares that instead of the "
            "reflectors' router IDs: a tie.")
    require("03.2", got is not Step.CLUSTER_LIST_LENGTH,
            "Each reflector prepended its own CLUSTER_ID once: both CLUSTER_LISTs are one long.")
    require("03.2", got == expected,
            "Compare the two paths' attributes step by step (decision_table or fabric.speaker('node-4').loc_rib): "
            "which is the first step where they differ?")
    passed("03.2", "two reflections of one route tie until the last step")


def _as_path(answer: object) -> tuple[int, ...] | None:
    try:
        if isinstance(answer, str):
            return tuple(int(a) for a in answer.split())
        return tuple(int(a) for a in answer)
    except (TypeError, ValueError):
        return None


def check_as_path(answer: object) -> None:
    """03.3: in the per-rack design, which AS_PATH does node-3 see for node-1's block?"""
    cluster = two_rack_cluster()
    fabric = Fabric.from_cluster(cluster)
    fabric.converge()
    best = fabric.speaker("node-3").loc_rib[cluster.blocks("node-1")[0]].best
    expected = best.as_path.asns
    got = _as_path(answer)
    require("03.3", got is not None, f"Give the AS numbers, e.g. '65001 65100' or (65001, 65100), not {answer!r}.")
    require("03.3", got != tuple(reversed(expected)),
            "An AS_PATH lists the nearest AS first and the origin AS last: each router prepends its own AS "
            "as it sends.")
    require("03.3", fabric.speaker("node-3").asn not in got,
            "node-3 does not prepend its own AS to what it receives; only a sender prepends (and node-3 would reject "
            "a path that held its AS).")
    require("03.3", got == expected,
            "Follow the route from node-1 (AS 64513) through tor-1, the spine and tor-2: who prepends which AS?")
    passed("03.3", "AS_PATH across the fabric, one AS per eBGP hop")


def check_withdrawal_updates(answer: object) -> None:
    """03.4: per-rack design; node-4 stops announcing its block. How many UPDATEs cross sessions?"""
    cluster = two_rack_cluster()
    fabric = Fabric.from_cluster(cluster)
    fabric.converge()
    result = fabric.withdraw("node-4", cluster.blocks("node-4")[0])
    _whole("03.4", answer)
    require("03.4", answer != 5,
            "Count tor-2's withdrawal to node-3 too: tor-2 advertised node-4's block to node-3 (which dropped it, its "
            "own AS being in the AS_PATH), so it must withdraw it there as well.")
    require("03.4", answer == result.messages,
            "Follow the withdrawal hop by hop: which peers had each router advertised node-4's block to? "
            "fabric.withdraw(...) returns the record, with .messages and .message_list().")
    passed("03.4", "a withdrawal travels the same sessions the announcement did")
