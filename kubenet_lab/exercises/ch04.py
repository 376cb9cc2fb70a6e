"""Checkers for chapter 04, "Services: a ClusterIP is a VIP".

Every expected answer is recomputed from kube-proxy's rules as this package
generates them, on the chapter's cluster (:func:`chapter_cluster`).

>>> check_second_probability("0.3333333333")
PASS: 04.1 – the second coin toss of a 4-endpoint pool
>>> check_second_probability(0.25)
Traceback (most recent call last):
...
AssertionError: 04.1: not yet. ...
"""

from __future__ import annotations

from ..cluster import Cluster
from ..kubeproxy.chains import service_chain
from ..kubeproxy.netfilter import Ruleset
from . import passed, require

__all__ = ["chapter_cluster", "check_second_probability", "check_chain_name", "check_rules_evaluated",
           "check_masquerade"]


def chapter_cluster() -> Cluster:
    """The chapter's cluster: three flannel VXLAN nodes, web-1..3 behind Service ``web`` (80 → http/8080),
    client on node-1, db-1 behind ``db``, and ``ghost``, a Service whose selector matches no pod."""
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", node_subnet="192.168.0.0/24",
                cni="flannel-vxlan", name="three-node-vxlan")
    for name, ip in (("node-1", "192.168.0.11"), ("node-2", "192.168.0.12"), ("node-3", "192.168.0.13")):
        c.add_node(name, ip=ip)
    for name, node, labels in (("web-1", "node-1", {"app": "web"}), ("client", "node-1", {}),
                               ("web-2", "node-2", {"app": "web"}), ("db-1", "node-2", {"app": "db"}),
                               ("web-3", "node-3", {"app": "web"})):
        ports = {"http": 8080} if labels.get("app") == "web" else {"postgres": 5432} if labels else None
        c.add_pod(name, node=node, labels=labels, ports=ports)
    c.add_service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    c.add_service("db", selector={"app": "db"}, ports=[{"name": "postgres", "port": 5432, "targetPort": "postgres"}])
    c.add_service("ghost", selector={"app": "ghost"}, port=80)
    return c


def _probabilities(endpoints: int) -> list[str]:
    c = Cluster()
    c.add_node("node-1", ip="192.168.0.11")
    for i in range(endpoints):
        c.add_pod(f"web-{i}", node="node-1", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80)
    rules = Ruleset.parse(c.kube_proxy("node-1").iptables_restore())
    pool = next(chain for name, chain in rules["nat"].items() if name.startswith("KUBE-SVC-"))
    return [r.text.split("--probability ", 1)[1].split()[0] for r in pool.rules if "--probability" in r.text]


def check_second_probability(answer: object) -> None:
    """04.1: the ``--probability`` on the second KUBE-SEP rule of a Service with 4 endpoints."""
    expected = _probabilities(4)[1]
    require("04.1", isinstance(answer, str), f"Give the value as kube-proxy prints it, a string such as "
            f"'0.1234567890', not {answer!r}.")
    require("04.1", answer != "0.2500000000" and answer != "0.25",
            "The second rule only sees the connections the first one let through: what share of those must it take?")
    require("04.1", answer == expected, "1/(n-i) for the i-th rule (from 0), printed with ten decimals (Go's %0.10f).")
    passed("04.1", "the second coin toss of a 4-endpoint pool")


def check_chain_name(answer: object) -> None:
    """04.2: the KUBE-SVC chain of port ``https`` (TCP) of Service ``shop/cart``."""
    expected = service_chain("shop/cart:https", "tcp")
    require("04.2", isinstance(answer, str) and answer.startswith("KUBE-SVC-"),
            f"Give the whole chain name, 'KUBE-SVC-' and 16 characters, not {answer!r}.")
    require("04.2", answer == expected,
            "Hash 'namespace/name:portname' followed by the lower-case protocol, with no separator: SHA-256, "
            "then base32, first 16 characters.")
    passed("04.2", "kube-proxy's chain name for a Service port")


def check_rules_evaluated(answer: object) -> None:
    """04.3: rules node-1's kernel evaluates for client's first packet to web's ClusterIP, DNATed to web-3."""
    c = chapter_cluster()
    t = c.trace("client", "web", proto="tcp", dport=80, endpoint="web-3")
    expected = next(result.evaluated for node, result in t.netfilter if node == "node-1")
    require("04.3", isinstance(answer, int) and not isinstance(answer, bool), f"Give a whole number, not {answer!r}.")
    require("04.3", answer == expected,
            "Count every rule tried, matched or not: nat PREROUTING, KUBE-SERVICES up to the Service's rule, the "
            "KUBE-SVC rules up to the one that jumps, the KUBE-SEP rules, then filter FORWARD and nat POSTROUTING "
            "(the walk's .evaluated).")
    passed("04.3", "rules evaluated for one packet to a ClusterIP")


FLOWS = {
    "client -> web, endpoint web-2": ("client", "web-2"),
    "web-2 -> web, endpoint web-2": ("web-2", "web-2"),
    "web-2 -> web, endpoint web-3": ("web-2", "web-3"),
    "node-1 -> web, endpoint web-2": ("node-1", "web-2"),
}


def check_masquerade(answer: object) -> None:
    """04.4: for each flow of :data:`FLOWS`, is the packet masqueraded (SNAT) on its way?"""
    c = chapter_cluster()
    expected = {name: any(h.action == "masquerade" for h in c.trace(src, "web", proto="tcp", dport=80,
                                                                      endpoint=ep).hops)
                for name, (src, ep) in FLOWS.items()}
    require("04.4", isinstance(answer, dict) and set(answer) == set(FLOWS),
            f"Give a dict with exactly the keys {sorted(FLOWS)} and True/False values.")
    wrong = [name for name in FLOWS if bool(answer[name]) != expected[name]]
    require("04.4", not wrong,
            f"Look again at {wrong[0] if wrong else ''}: KUBE-MARK-MASQ is jumped to from KUBE-SVC when the source "
            "is outside --cluster-cidr, and from KUBE-SEP when the source is the endpoint itself (hairpin).")
    passed("04.4", "which Service traffic kube-proxy masquerades")
