"""Checkers for chapter 08, "Hybrid designs: an overlay inside, BGP at the edge".

The chapter's clusters are three scenario files, loaded here with the one or
two fields an exercise changes:

* ``scenarios/calico-crosssubnet.yaml``: Calico VXLAN with ``vxlanMode:
  CrossSubnet`` in two racks;
* ``scenarios/cilium-vxlan-bgp-services.yaml``: Cilium in tunnel mode whose
  nodes announce LoadBalancer VIPs, and nothing else, to their ToRs;
* ``scenarios/calico-bgp-ingress.yaml``: chapter 03's routed racks with an
  ingress-nginx controller behind a LoadBalancer VIP.

Every expected answer is recomputed with the packet walk, kube-proxy's rules
or the BGP fabric, never stored.

>>> check_local_next_hops(None)
Traceback (most recent call last):
...
AssertionError: 08.2: not yet. Give the next hops as a set of addresses, e.g. {'192.168.1.11'}, not None.
"""

from __future__ import annotations

import ipaddress

from ..addresses import IPAddress
from ..cluster import Cluster
from ..datapath.trace import Trace, kube_proxy_rules
from ..errors import InvalidValue
from ..kernel.record import SCENARIOS
from ..kubeproxy.netfilter import Flow, NetfilterResult
from ..objects import Service
from ..scenario import cluster_from_objects, read_objects
from . import address_set, passed, require
from .ch06 import next_hops

__all__ = ["CROSS_SUBNET", "CILIUM", "INGRESS_SCENARIO", "INGRESS", "scenario_cluster",
           "encapsulated", "external_connection", "check_crosssubnet_mtu", "check_local_next_hops",
           "check_encapsulated_pairs", "check_source_addresses"]

CROSS_SUBNET = "calico-crosssubnet.yaml"
CILIUM = "cilium-vxlan-bgp-services.yaml"
INGRESS_SCENARIO = "calico-bgp-ingress.yaml"
INGRESS = "ingress-nginx/ingress-nginx-controller"


def scenario_cluster(name: str, *, overlay: dict | None = None, service_spec: dict | None = None,
                     service: str = "web") -> Cluster:
    """Load ``scenarios/<name>`` with ClusterNetwork ``spec.overlay`` fields and one Service's ``spec``
    fields changed (``overlay={"vethMTU": 1500}``, ``service_spec={"externalTrafficPolicy": "Local"}``)."""
    objects = read_objects(SCENARIOS / name)
    for obj in objects:
        if obj.get("kind") == "ClusterNetwork" and overlay:
            obj["spec"]["overlay"] = {**(obj["spec"].get("overlay") or {}), **overlay}
        if obj.get("kind") == "Service" and obj["metadata"]["name"] == service and service_spec:
            obj["spec"].update(service_spec)
    return cluster_from_objects(objects)


def encapsulated(trace: Trace) -> bool:
    """Whether the walk put an encapsulated packet (outer headers) on any link."""
    return any(hop.state.outer is not None for hop in trace.wire_hops)


def external_connection(cluster: Cluster, node: str, service: Service, port: int,
                        client: IPAddress | None = None) -> tuple[NetfilterResult, IPAddress | None]:
    """A client outside the cluster (by default the topology's ``external`` client) opens a TCP
    connection to ``service``'s LoadBalancer IP, and the fabric delivers the SYN to ``node``'s
    ``eth0``, as the ToR's ECMP route would for some flow.

    Returns kube-proxy's walk of that SYN on ``node`` (DNAT, masquerade, or DROP) and the source
    address the chosen endpoint then sees: the client's own, or, when KUBE-POSTROUTING masquerades,
    the address of the device the packet leaves ``node`` by (what MASQUERADE writes); None if dropped.
    """
    topology = cluster.topology()
    client = topology.external_address if client is None else ipaddress.ip_address(client)
    if client is None:
        raise InvalidValue("external_connection", "client", None,
                           "must be given: this cluster has no external client (it names no BGP design)")
    rules = kube_proxy_rules(cluster, topology, node)
    host = cluster.host(node)
    result = rules.walk(Flow(client, service.load_balancer_ips[0], "tcp", port, in_interface="eth0"),
                        local=host.local_addresses())
    if result.dnat is None:
        return result, None
    if not result.masquerade:
        return result, client
    endpoint = ipaddress.ip_address(result.dnat.rpartition(":")[0].strip("[]"))
    route = max((r for r in host.routes if r.matches(endpoint)), key=lambda r: r.prefixlen)
    device = host.interfaces[route.dev]
    return result, device.addresses[0].ip if device.addresses else cluster.node(node).ip


def check_crosssubnet_mtu(answer: object) -> None:
    """08.1: pods set to MTU 1500 by hand on the CrossSubnet cluster; which 1500-byte packets from
    ``client`` (DF set) reach web-1 (same rack), web-2 and api-1 (the other rack)?"""
    cluster = scenario_cluster(CROSS_SUBNET, overlay={"vethMTU": 1500})
    expected = {pod: cluster.trace("client", pod, size=1500).outcome == "delivered"
                for pod in ("web-1", "web-2", "api-1")}
    require("08.1", isinstance(answer, dict) and set(answer) == set(expected)
            and all(isinstance(v, bool) for v in answer.values()),
            f"Give a dict with the keys {sorted(expected)} and True/False values, not {answer!r}.")
    for pod in expected:
        same_rack = cluster.node(cluster.pod(pod).node).rack == cluster.node(cluster.pod("client").node).rack
        if same_rack:
            require("08.1", answer[pod] == expected[pod],
                    f"{pod} is in client's rack: CrossSubnet routes that packet natively out of eth0, whose MTU "
                    "is the underlay's.")
        else:
            require("08.1", answer[pod] == expected[pod],
                    f"{pod} is in the other rack: the packet goes through vxlan.calico, whose MTU Calico still "
                    "computes as the underlay's less 50. Walk it: cluster.trace('client', ..., size=1500).")
    passed("08.1", "CrossSubnet: one pod MTU for two kinds of path")


def check_local_next_hops(answer: object) -> None:
    """08.2: the Cilium cluster's ``web`` switched to ``externalTrafficPolicy: Local``; which next hops
    does tor-1 install for web's VIP?"""
    cluster = scenario_cluster(CILIUM, service_spec={"externalTrafficPolicy": "Local"})
    expected = next_hops(cluster, "tor-1")  # from the converged fabric, as the packet walk uses it
    got = address_set(answer)
    require("08.2", got is not None,
            f"Give the next hops as a set of addresses, e.g. {{'192.168.1.11'}}, not {answer!r}.")
    web_nodes = {cluster.pod(p.name).node for p in cluster.pods if p.labels.get("app") == "web"}
    idle = {str(n.ip) for n in cluster.nodes if n.name not in web_nodes}
    require("08.2", not got & idle,
            "A node without a web pod does not announce the VIP under Local: it would drop the traffic "
            "(kube-proxy's 'has no local endpoints' rule), so MetalLB and Cilium withdraw the /32 there.")
    require("08.2", got == expected,
            "Which nodes of rack-1 announce the /32 now? The copy the spine holds from rack-2 never comes back to "
            "tor-1 (its own AS would be in the AS_PATH). fabric.show_ip_bgp('tor-1') lists every path tor-1 holds.")
    passed("08.2", "externalTrafficPolicy: Local announces the VIP only where its pods are")


def check_source_addresses(answer: object) -> None:
    """08.4: which source address does each pod see, for the external client reaching the ingress
    controller's VIP (Local; and Cluster, arriving on node-2), and for the proxied request to web-2?"""
    local = scenario_cluster(INGRESS_SCENARIO)
    ingress = local.service(INGRESS)
    port = ingress.ports[0].port
    _, via_node_1 = external_connection(local, "node-1", ingress, port)
    cluster_policy = scenario_cluster(INGRESS_SCENARIO, service=ingress.name,
                                      service_spec={"externalTrafficPolicy": "Cluster"})
    _, via_node_2 = external_connection(cluster_policy, "node-2", cluster_policy.service(INGRESS), port)
    proxied = local.trace(INGRESS, "web-2", proto="tcp", dport=8080)
    client = str(local.topology().external_address)
    expected = {"ingress, Local, via node-1": str(via_node_1), "ingress, Cluster, via node-2": str(via_node_2),
                "web-2, proxied by the ingress": str(proxied.hops[-1].state.inner.src)}
    require("08.4", isinstance(answer, dict) and set(answer) == set(expected),
            f"Give a dict with the keys {sorted(expected)}, each an IP address, not {answer!r}.")
    got = {key: address_set([value]) for key, value in answer.items()}
    require("08.4", all(v is not None for v in got.values()), f"Each value must be an IP address: {answer!r}.")
    got = {key: value.pop() for key, value in got.items()}
    require("08.4", got["ingress, Local, via node-1"] == expected["ingress, Local, via node-1"],
            "With externalTrafficPolicy: Local, kube-proxy DNATs to the local endpoint and does not masquerade.")
    require("08.4", got["ingress, Cluster, via node-2"] != client,
            "node-2 has no ingress pod: under Cluster it forwards the connection to node-1, and KUBE-EXT marks it "
            "for masquerade so the reply comes back through node-2.")
    require("08.4", got["ingress, Cluster, via node-2"] == expected["ingress, Cluster, via node-2"],
            "MASQUERADE writes the address of the device the packet leaves node-2 by, towards the ingress pod.")
    require("08.4", got["web-2, proxied by the ingress"] != client,
            "The proxy terminates the client's TCP connection and opens its own to web-2: the client's address "
            "travels only in the X-Forwarded-For header.")
    require("08.4", got == expected,
            "Walk the proxy's connection, c.trace('ingress-nginx/ingress-nginx-controller', 'web-2', proto='tcp', "
            "dport=8080), and read the source of the packet that reaches web-2.")
    passed("08.4", "who sees which source address, L4 and L7")


def check_encapsulated_pairs(answer: object, *, racks: int = 3, per_rack: int = 4) -> None:
    """08.3: CrossSubnet on ``racks`` racks of ``per_rack`` nodes; how many node pairs tunnel?"""
    from ..viz.walk import tunnels

    cluster = Cluster(cni="calico-vxlan", ipam="calico", same_subnet_direct=True, racks=[
        {"name": f"rack-{r}", "subnet": f"192.168.{r}.0/24", "tor": {"name": f"tor-{r}"},
         "nodes": [f"node-{per_rack * (r - 1) + i}" for i in range(1, per_rack + 1)]}
        for r in range(1, racks + 1)])
    for n in range(1, racks * per_rack + 1):
        cluster.add_node(f"node-{n}")
    expected = sum(t.kind == "tunnel" for t in tunnels(cluster))
    nodes = racks * per_rack
    require("08.3", isinstance(answer, int) and not isinstance(answer, bool),
            f"Give a whole number of node pairs, not {answer!r}.")
    require("08.3", answer != nodes * (nodes - 1) // 2,
            "That is every pair of nodes, as VXLAN in Always mode tunnels; CrossSubnet routes pairs of one rack "
            "natively.")
    require("08.3", answer != 2 * expected, "Count each pair of nodes once, not once from each end.")
    require("08.3", answer == expected,
            "Count the pairs whose two nodes sit in different racks: all pairs less the pairs inside each rack.")
    passed("08.3", "CrossSubnet tunnels only between racks")
