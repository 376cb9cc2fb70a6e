"""Checkers and helpers for chapter 06, "NodePort and LoadBalancer: a Service at the edge".

The chapter's cluster is ``scenarios/metallb-bgp.yaml``: chapter 03's two
racks (Calico in BGP mode, an AS per rack), ``web`` a LoadBalancer whose VIP
MetalLB's controller takes from the pool ``edge`` and whose /32 the nodes
announce to their ToRs, and ``api`` a plain NodePort. :func:`chapter_cluster`
loads it with the two things the chapter varies: web's
``externalTrafficPolicy`` and the nodes its pods run on.

Every expected answer is recomputed with the allocators, the packet walk or
the BGP fabric, never stored.

>>> c = chapter_cluster(policy="Local", web_nodes=("node-1", "node-2"))
>>> announcers(c), sorted(next_hops(c, "tor-1"))
(['node-1', 'node-2'], ['192.168.1.11', '192.168.1.12'])
>>> check_static_band(None)
Traceback (most recent call last):
...
AssertionError: 06.1: not yet. Give the band as a pair of port numbers (first, last), not None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..addresses import IPAddress
from ..bgp.fabric import announcing_nodes
from ..cluster import Cluster
from ..errors import InvalidValue
from ..ipam.nodeport import NodePortAllocator
from ..kernel.record import SCENARIOS
from ..overlay.entries import Route
from ..scenario import cluster_from_objects, read_objects
from ..tables import Table
from . import address_set, passed, require

__all__ = ["SCENARIO", "POLICIES", "CLIENTS", "chapter_cluster", "announcers", "next_hops", "health_checks",
           "ecmp_choices", "EdgeView", "edge_view", "draw_edge_view", "edge_explorer", "check_static_band",
           "check_nodeport_flow", "check_tor_next_hops", "check_rehashed"]

SCENARIO = "metallb-bgp.yaml"
POLICIES = ("Cluster", "Local")
#: A thousand clients on the Internet side, from the benchmarking range 198.18.0.0/15 (RFC 2544).
CLIENTS = tuple(ipaddress.ip_network("198.18.0.0/15")[i] for i in range(1, 1001))


def chapter_cluster(*, policy: str = "Cluster", web_nodes: Sequence[str] | None = None) -> Cluster:
    """``scenarios/metallb-bgp.yaml`` with web's ``externalTrafficPolicy`` set to ``policy`` and, if
    ``web_nodes`` is given, one web pod per entry (web-1 on the first node, ...) instead of the file's."""
    if policy not in POLICIES:
        raise InvalidValue("chapter_cluster", "policy", policy, f"must be one of {', '.join(POLICIES)}")
    objects = read_objects(SCENARIOS / SCENARIO)
    for obj in objects:
        if obj.get("kind") == "Service" and obj["metadata"]["name"] == "web":
            obj["spec"]["externalTrafficPolicy"] = policy
    if web_nodes is not None:
        template = next(o for o in objects if o.get("kind") == "Pod" and o["metadata"]["name"] == "web-1")
        objects = [o for o in objects if not (o.get("kind") == "Pod" and o["metadata"]["name"].startswith("web-"))]
        for i, node in enumerate(web_nodes, start=1):
            objects.append({**template, "metadata": {**template["metadata"], "name": f"web-{i}"},
                            "spec": {**template["spec"], "nodeName": node}})
    return cluster_from_objects(objects)


def _vip(cluster: Cluster, service: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(f"{cluster.service(service).load_balancer_ips[0]}/32")


def announcers(cluster: Cluster, service: str = "web") -> list[str]:
    """The nodes whose speaker announces ``service``'s VIP /32, as MetalLB's ``ShouldAnnounce`` decides."""
    return announcing_nodes(cluster, _vip(cluster, service))


def next_hops(cluster: Cluster, router: str, service: str = "web") -> set[str]:
    """The next hops ``router`` installs for ``service``'s VIP (its ECMP set), from the cluster's fabric."""
    vip = _vip(cluster, service)
    entry = next((e for e in cluster.topology().fabric.fib(router) if e.prefix == vip), None)
    return set() if entry is None else {str(via) for via, _ in entry.nexthops}


def health_checks(cluster: Cluster, service: str = "web") -> Table:
    """What each node's kube-proxy answers on ``service``'s ``healthCheckNodePort``.

    kube-proxy serves ``GET /`` on that port (``pkg/proxy/healthcheck/service_health.go``):
    a JSON body with ``localEndpoints``, the node's ready endpoints of the Service,
    and status 200 when there is at least one, 503 Service Unavailable when there is none.
    A cloud load balancer probes it to pick the nodes it sends traffic to.
    """
    svc = cluster.service(service)
    if svc.health_check_node_port is None:
        raise InvalidValue(f"Service {svc.key}", "spec.healthCheckNodePort", None,
                           "is only set for a LoadBalancer with externalTrafficPolicy Local")
    rows = []
    for node in cluster.nodes:
        local = sum(e.ready and e.node_name == node.name for s in cluster.endpoint_slices(svc) for e in s.endpoints)
        rows.append((node.name, f"{node.ip}:{svc.health_check_node_port}", str(local),
                     "200 OK" if local else "503 Service Unavailable"))
    return Table(f"GET http://<node>:{svc.health_check_node_port}/ (healthCheckNodePort of {svc.key})",
                 ("NODE", "PROBED", "localEndpoints", "ANSWER"), tuple(rows))


def ecmp_choices(nexthops: Iterable[object], vip: object, clients: Iterable[IPAddress] = CLIENTS) -> dict:
    """Client address -> the next hop a Linux router's ECMP route to ``vip`` over ``nexthops`` picks for it.

    The router's own choice (:meth:`Route.select`): an L3 hash of source and destination
    (``fib_multipath_hash_policy`` 0) against equal slices of the hash space, one per next
    hop in the route's order (hash-threshold, RFC 2992). The devices do not matter here.
    """
    vip = ipaddress.ip_address(str(vip))
    hops = [ipaddress.ip_address(str(h)) for h in nexthops]
    if not hops:
        raise InvalidValue("ecmp_choices", "nexthops", hops, "must name at least one next hop")
    route = Route.multipath(ipaddress.ip_network(f"{vip}/32"), [(h, "rack") for h in sorted(hops)])
    return {client: str(route.select(client, vip)[1].via) for client in clients}


# -- the explorer: policy and pod placement -> who announces, and each router's ECMP set ---------


@dataclass(frozen=True)
class EdgeView:
    """One placement of web's pods under one policy: the cluster, its converged fabric and a table
    of who announces the VIP and which next hops each router installs for it."""

    policy: str
    cluster: Cluster
    table: Table


def edge_view(policy: str = "Cluster", web_nodes: Sequence[str] = ("node-1", "node-3")) -> EdgeView:
    """Build the chapter's cluster with ``policy`` and web pods on ``web_nodes``; tabulate the VIP's routes."""
    cluster = chapter_cluster(policy=policy, web_nodes=tuple(web_nodes))
    speaking = set(announcers(cluster))
    rows = [(node.name, "web pod" if any(p.node == node.name for p in cluster.pods if p.name.startswith("web-"))
             else "-", "announces /32" if node.name in speaking else "-") for node in cluster.nodes]
    rows += [(router, "router", ", ".join(sorted(next_hops(cluster, router))) or "no route")
             for router in ("tor-1", "tor-2", "spine")]
    vip = cluster.service("web").load_balancer_ips[0]
    return EdgeView(policy, cluster, Table(f"web's VIP {vip}/32, externalTrafficPolicy {policy}",
                                           ("NAME", "ROLE", "ANNOUNCES / NEXT HOPS"), tuple(rows)))


def draw_edge_view(view: EdgeView, ax=None):
    """Chapter 03's session drawing for the view's fabric, each router labelled with its path to the VIP."""
    from ..viz.bgp import draw_sessions

    vip = _vip(view.cluster, "web")
    nodes = ", ".join(announcers(view.cluster)) or "nobody"
    return draw_sessions(view.cluster.topology().fabric, view.cluster, ax, prefix=vip,
                         title=f"{view.policy}: {vip} announced by {nodes}")


def edge_explorer(policy: str = "Local", web_nodes: Sequence[str] = ("node-1", "node-3")):
    """Dropdowns for the policy and for the node of each of three web pods (or none); each change
    redraws :func:`edge_view`'s table and :func:`draw_edge_view`. Needs a live kernel."""
    import ipywidgets as widgets

    from ..viz.explorers import _wire

    nodes = [n.name for n in chapter_cluster().nodes]
    choices = list(web_nodes) + ["none"] * (3 - len(web_nodes))
    controls = {"policy": widgets.Dropdown(options=POLICIES, value=policy, description="policy")}
    controls.update({f"web_{i}": widgets.Dropdown(options=nodes + ["none"], value=choice, description=f"web-{i}")
                     for i, choice in enumerate(choices, start=1)})

    def render(policy, **web):
        view = edge_view(policy, [node for node in web.values() if node != "none"])
        return view.table.html(), draw_edge_view(view).figure

    return _wire(render, controls, [["policy", "web_1"], ["web_2", "web_3"]], text=True)


# -- checkers ---------------------------------------------------------------------------------


def check_static_band(answer: object, *, first: int = 30000, last: int = 30999) -> None:
    """06.1: the static band of ``--service-node-port-range=30000-30999``, as (first, last)."""
    expected = NodePortAllocator(first, last).static_band
    require("06.1", isinstance(answer, (tuple, list)) and len(answer) == 2
            and all(isinstance(p, int) and not isinstance(p, bool) for p in answer),
            f"Give the band as a pair of port numbers (first, last), not {answer!r}.")
    size = last - first + 1
    require("06.1", answer[0] == first,
            "The static band is the lower end of the range, where people pick ports by hand.")
    require("06.1", answer[1] != first + 86 - 1,
            "86 ports is the band of the default range (2768 ports); this range is smaller.")
    require("06.1", tuple(answer) == expected,
            f"The range has {size} ports; the band is min(max(16, {size} // 32), 128) ports long, from {first}.")
    passed("06.1", "KEP-3668's static NodePort band")


def check_nodeport_flow(answer: object) -> None:
    """06.2: the external client to node-4's address on web's nodePort (policy Cluster), DNATed to
    web-1: the destination node-4 writes, and the source address web-1 sees."""
    cluster = chapter_cluster()
    node_port = cluster.service("web").ports[0].node_port
    walk = cluster.trace("external", str(cluster.node("node-4").ip), proto="tcp", dport=node_port, endpoint="web-1")
    expected = {"dnat": dict(walk.netfilter)["node-4"].dnat, "source seen by web-1": str(walk.hops[-1].state.inner.src)}
    require("06.2", isinstance(answer, dict) and set(answer) == set(expected),
            f"Give a dict with the keys {sorted(expected)}, not {answer!r}.")
    require("06.2", str(answer["dnat"]) == expected["dnat"],
            "KUBE-SEP-… writes the pod's address and its targetPort (the container port named http), not the "
            "Service port or the nodePort.")
    client = str(cluster.topology().external_address)
    require("06.2", str(answer["source seen by web-1"]) != client,
            "Under Cluster, KUBE-EXT-… marks every external packet for masquerade: web-1 never sees the client.")
    require("06.2", str(answer["source seen by web-1"]) == expected["source seen by web-1"],
            "MASQUERADE writes the address of the interface the packet leaves node-4 by.")
    passed("06.2", "a NodePort flow: DNAT to the pod, SNAT to the node")


def check_tor_next_hops(answer: object) -> None:
    """06.3: web under Local, web-2 moved from node-3 to node-4: the next hops tor-1 and tor-2
    install for the VIP."""
    cluster = chapter_cluster(policy="Local", web_nodes=("node-1", "node-4"))
    expected = {router: next_hops(cluster, router) for router in ("tor-1", "tor-2")}
    require("06.3", isinstance(answer, dict) and set(answer) == set(expected),
            f"Give a dict with the keys {sorted(expected)}, each a set of addresses, not {answer!r}.")
    got = {router: address_set(value) for router, value in answer.items()}
    require("06.3", all(v is not None for v in got.values()),
            f"Each value must be a set of IP addresses, e.g. {{'192.168.1.11'}}: {answer!r}.")
    require("06.3", "192.168.2.11" not in got["tor-2"],
            "node-3 has no web pod any more: under Local its speaker withdraws the /32.")
    require("06.3", not any(h.startswith("172.31.") for v in got.values() for h in v),
            "A ToR's path through the spine is longer (three ASes) than its own node's (one): it is not an ECMP "
            "path.")
    require("06.3", got == expected, "Which nodes of each rack hold a ready web pod now? Only they announce.")
    passed("06.3", "Local: the ToR's next hops follow the pods")


def check_rehashed(answer: object) -> None:
    """06.4: web under Local with pods on node-1 and node-3; web-3 starts on node-2. Of the
    :data:`CLIENTS`' flows through tor-1, how many move to another node?"""
    before = chapter_cluster(policy="Local", web_nodes=("node-1", "node-3"))
    after = chapter_cluster(policy="Local", web_nodes=("node-1", "node-3", "node-2"))
    vip = before.service("web").load_balancer_ips[0]
    old = ecmp_choices(next_hops(before, "tor-1"), vip)
    new = ecmp_choices(next_hops(after, "tor-1"), vip)
    expected = sum(old[c] != new[c] for c in CLIENTS)
    require("06.4", isinstance(answer, int) and not isinstance(answer, bool),
            f"Give a whole number of clients, not {answer!r}.")
    require("06.4", answer != 0,
            "node-1 keeps its route, yet the hash space is cut again into two slices instead of one.")
    require("06.4", answer == expected,
            "Compare ch06.ecmp_choices over tor-1's next hops before and after, client by client.")
    passed("06.4", "a new announcer rehashes existing flows")
