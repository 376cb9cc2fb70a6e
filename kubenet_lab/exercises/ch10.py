"""Checkers for chapter 10, "The real kernel lab".

Each checker recomputes its answer from the lab's plan (:func:`kubenet_lab.kernel.plan.plan`, pure,
no root) or from the lab's own comparison of on-wire bytes, for the chapter's scenario
``scenarios/three-node-vxlan.yaml`` (rebuilt by :func:`chapter_cluster`, so the checkers do not
depend on where the notebook runs).

>>> from kubenet_lab import Cluster
>>> scenario = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> scenario.kube_proxy("node-1").iptables_restore() == chapter_cluster().kube_proxy("node-1").iptables_restore()
True
>>> len([c for c in lab_plan() if c.argv[:3] == ("ip", "netns", "add")])
9
"""

from __future__ import annotations

import re

from ..cluster import Cluster
from ..kernel.plan import plan
from . import passed, require
from .ch02 import NODES, PODS, SCENARIO

PREFIX = "knl000000"  # any lab prefix: the plan's shape does not depend on it


def chapter_cluster() -> Cluster:
    """The chapter's scenario: three nodes, five pods, Services web, web-nodeport (NodePort 30080) and db."""
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", node_subnet="192.168.0.0/24",
                cni="flannel-vxlan", name=SCENARIO)
    for name, ip in NODES:
        c.add_node(name, ip=ip)
    ports = {"web": {"http": 8080}, "db": {"postgres": 5432}}
    for name, node, labels in PODS:
        c.add_pod(name, node=node, labels=labels, ports=ports.get(labels.get("app"), {}))
    c.add_service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    c.add_service("web-nodeport", selector={"app": "web"}, type="NodePort",
                  ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}])
    c.add_service("db", selector={"app": "db"}, ports=[{"name": "postgres", "port": 5432, "targetPort": "postgres"}])
    return c


def lab_plan(cluster: Cluster | None = None):
    """The lab's commands for ``cluster`` (the chapter's by default), under a fixed prefix."""
    cluster = cluster or chapter_cluster()
    return plan(cluster.topology(), PREFIX)


def _whole(answer: object) -> bool:
    return isinstance(answer, int) and not isinstance(answer, bool)


def check_namespaces(answer: object) -> None:
    """10.1: how many network namespaces does the lab create for the chapter's scenario?"""
    commands = lab_plan()
    expected = sum(1 for c in commands if c.argv[:3] == ("ip", "netns", "add"))
    c = chapter_cluster()
    require("10.1", _whole(answer), f"Give a whole number, not {answer!r}.")
    require("10.1", answer != len(c.nodes) + len(c.pods),
            "Nodes and pods, yes; but what joins the three nodes' eth0? A switch is a namespace too.")
    require("10.1", answer == expected, "Count the plan's `ip netns add` commands: one per node, pod and switch.")
    passed("10.1", "a namespace per node, per pod and per switch")


def check_vxlan_command(answer: object) -> None:
    """10.2: the plan's command that creates node-1's VXLAN device, as a string."""
    node_1 = f"{PREFIX}-n-node-1"
    expected = next(c for c in lab_plan() if c.netns == node_1 and "vxlan" in c.argv and "add" in c.argv)
    require("10.2", isinstance(answer, str), f"Give the command as a string, e.g. str(command), not {answer!r}.")
    words = re.sub(r"\bknl[0-9a-f]{6}-", f"{PREFIX}-", answer).split()
    require("10.2", "vxlan" in words and "add" in words,
            "Look for the `ip -n <node-1's namespace> link add ... type vxlan ...` command.")
    require("10.2", words[:3] == list(expected.argv[:3]), "That is a VXLAN device, but not in node-1's namespace.")
    require("10.2", words == list(expected.argv),
            "Almost: copy the whole command, with its id, dstport, local address, dev and nolearning.")
    passed("10.2", "flannel.1 is an ordinary `ip link add ... type vxlan`")


def check_fdb_appends(answer: object, *, nodes: int = 4) -> None:
    """10.3: in a ``nodes``-node flannel VXLAN cluster, how many `bridge fdb append` commands does the plan hold?"""
    c = Cluster(cni="flannel-vxlan", name="fdb-count")
    for i in range(1, nodes + 1):
        c.add_node(f"node-{i}")
    expected = sum(1 for cmd in lab_plan(c) if cmd.argv[0] == "bridge" and "append" in cmd.argv)
    require("10.3", _whole(answer), f"Give a whole number, not {answer!r}.")
    require("10.3", answer != nodes - 1, "That is one node's FDB; the plan builds every node.")
    require("10.3", answer == expected, "Each node gets one FDB entry per other node (chapter 02): multiply.")
    passed("10.3", "one FDB entry per ordered pair of nodes")


def check_sport_range(answer: object) -> None:
    """10.4: the (lowest, highest) outer UDP source port the lab accepts from the kernel, found by
    asking the lab's own comparison (the kernel's ip_local_port_range default)."""
    from scapy.layers.inet import UDP

    from ..kernel.lab import _same_on_wire

    walk = chapter_cluster().trace("web-1", "web-3")
    hop = next(h for h in walk.wire_hops if h.state.outer is not None)

    def accepted(port: int) -> bool:
        packet = hop.packet.copy()
        packet[UDP].sport = port
        return _same_on_wire(hop.packet, [packet.__class__(bytes(packet))])[0]

    require("10.4", isinstance(answer, tuple) and len(answer) == 2 and all(_whole(a) for a in answer),
            f"Give a pair of whole numbers (lowest, highest), not {answer!r}.")
    low, high = answer
    require("10.4", low <= high, "Put the lowest port first.")
    require("10.4", accepted(low) and accepted(high), "The lab rejects a port in your range: it is too wide.")
    require("10.4", not accepted(low - 1) and not accepted(high + 1),
            "The lab accepts ports outside your range: it is too narrow (see KernelLab.verify's docstring).")
    passed("10.4", "the outer source port is random by design, within the local port range")
