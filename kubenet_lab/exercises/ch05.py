"""Checkers for chapter 05, "kube-proxy modes: iptables, IPVS, nftables".

Every expected answer is recomputed from kube-proxy's rules as this package
generates them in each mode, on the chapter's cluster (:func:`chapter_cluster`).

>>> check_vmap_key("10.96.0.10 . udp . 53")
PASS: 05.2 – the verdict-map key of a Service port
>>> check_vmap_key("10.96.0.10:53")
Traceback (most recent call last):
...
AssertionError: 05.2: not yet. ...
"""

from __future__ import annotations

import re

from ..cluster import Cluster
from ..kubeproxy import KubeProxy
from . import passed, require

__all__ = ["chapter_cluster", "check_ipvs_node_2", "check_vmap_key", "check_iptables_extra_rules",
           "SCALING_SERVICES"]

# Exercise 05.3's cluster size.
SCALING_SERVICES = 300


def chapter_cluster() -> Cluster:
    """The chapter's cluster: chapter 04's three flannel VXLAN nodes with web-1..3 and client, ``web``
    now a NodePort Service (80 → http/8080, nodePort 30080), ``db`` (5432) on node-2, and ``dns``
    at the conventional ``10.96.0.10`` with ports 53/UDP and 53/TCP, served by coredns-1 on node-3."""
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", node_subnet="192.168.0.0/24",
                cni="flannel-vxlan", name="kube-proxy-modes")
    for name, ip in (("node-1", "192.168.0.11"), ("node-2", "192.168.0.12"), ("node-3", "192.168.0.13")):
        c.add_node(name, ip=ip)
    pods = (("web-1", "node-1", {"app": "web"}, {"http": 8080}), ("client", "node-1", {}, None),
            ("web-2", "node-2", {"app": "web"}, {"http": 8080}), ("db-1", "node-2", {"app": "db"}, {"postgres": 5432}),
            ("web-3", "node-3", {"app": "web"}, {"http": 8080}), ("coredns-1", "node-3", {"app": "dns"}, {"dns": 53}))
    for name, node, labels, ports in pods:
        c.add_pod(name, node=node, labels=labels, ports=ports)
    c.add_service("web", selector={"app": "web"}, type="NodePort",
                  ports=[{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}])
    c.add_service("db", selector={"app": "db"}, ports=[{"name": "postgres", "port": 5432, "targetPort": "postgres"}])
    c.add_service("dns", selector={"app": "dns"}, cluster_ip="10.96.0.10",
                  ports=[{"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                         {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"}])
    return c


def check_ipvs_node_2(answer: object) -> None:
    """05.1: node-2's IPVS mode: how many virtual servers, how many addresses on kube-ipvs0."""
    rules = KubeProxy(chapter_cluster(), "node-2").ipvs_rules()
    expected = {"virtual servers": len(rules.virtual_servers), "kube-ipvs0 addresses": len(rules.bound_addresses)}
    require("05.1", isinstance(answer, dict) and set(answer) == set(expected),
            f"Give a dict with the keys {sorted(expected)}, not {answer!r}.")
    require("05.1", answer["kube-ipvs0 addresses"] == expected["kube-ipvs0 addresses"],
            "kube-ipvs0 holds each ClusterIP once, however many ports the Service has; the node's own "
            "addresses (where NodePorts listen) are already on its other interfaces.")
    require("05.1", answer["virtual servers"] == expected["virtual servers"],
            "One virtual server per ClusterIP, port and protocol (53/UDP and 53/TCP are two), plus one per "
            "local address of the node (eth0, cni0, flannel.1) for each NodePort.")
    passed("05.1", "node-2's virtual-server table")


def check_vmap_key(answer: object) -> None:
    """05.2: the key of dns's UDP port in the ``service-ips`` verdict map of node-1."""
    ruleset = KubeProxy(chapter_cluster(), "node-1").nft_ruleset()
    found = re.search(r"add element ip kube-proxy service-ips \{ (.+?) : goto service-[A-Z2-7]{8}-default/dns/udp/dns }",
                      ruleset)
    expected = found.group(1) if found else None
    require("05.2", isinstance(answer, str), f"Give the key as nft prints it, a string, not {answer!r}.")
    require("05.2", " . " in answer,
            "A verdict map's key is a concatenation: the fields are joined with ' . ' (space, dot, space).")
    require("05.2", answer == expected,
            "The key is destination address, then layer-4 protocol (lower case), then destination port: the "
            "rule reads 'ip daddr . meta l4proto . th dport vmap @service-ips'.")
    passed("05.2", "the verdict-map key of a Service port")


def check_iptables_extra_rules(answer: object) -> None:
    """05.3: with SCALING_SERVICES Services, how many more rules iptables mode evaluates than nftables mode."""
    from ..viz.services import rules_per_packet

    row = rules_per_packet((SCALING_SERVICES,))[0]
    require("05.3", isinstance(answer, int) and not isinstance(answer, bool),
            f"Give a whole number of rules, not {answer!r}.")
    require("05.3", answer == row.to_last_service - row.nftables,
            f"Walk both modes for {SCALING_SERVICES} Services (rules_per_packet) and subtract the nftables count "
            "from the iptables count for the first packet to the last Service.")
    passed("05.3", "what a verdict map saves per new connection")
