"""LoadBalancer VIPs announced over BGP (MetalLB's BGP mode) and walked from a client outside the cluster.

Expected values come from MetalLB and the kernel, not from the code under test:

* who announces: MetalLB ``speaker/bgp_controller.go`` ``ShouldAnnounce`` - "Cluster && any healthy
  endpoint exists" (every node), "Local && there's a ready local endpoint" (only those nodes);
  the routers "receive one /32 route for each service IP" (metallb.universe.tf, advanced BGP
  configuration). The nodes hosting
  ready endpoints are recomputed here from the pod list (node, labels, readiness).
* ECMP: Linux ``fib_select_multipath`` with ``fib_multipath_hash_policy`` 0 hashes the source and
  destination addresses only (Documentation/networking/ip-sysctl.rst, "0 - Layer 3"), and
  ``fib_rebalance`` gives next hop i of n the hashes up to DIV_ROUND_CLOSEST((i+1) << 31, n) - 1.
* kube-proxy: externalTrafficPolicy Local keeps the client's source address; Cluster masquerades
  traffic for external destinations to the node (kube-proxy.md, KUBE-EXT chains).

Layout (as in tests/test_bgp_fabric.py): node-1, node-2 in rack-1 (192.168.1.11/.12), node-3, node-4
in rack-2 (192.168.2.11/.12); web-a..web-c ready on node-1..node-3, web-d not ready on node-4.
"""

import bisect
from ipaddress import ip_address, ip_network

import pytest

from kubenet_lab import Cluster
from kubenet_lab.bgp.fabric import Fabric, load_balancer_announcements
from kubenet_lab.overlay.entries import Route, multipath_hash

RACKS = [
    {"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}, "nodes": []},
    {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}, "nodes": []},
]
# the last /31 of the fabric range 172.31.255.0/24 holds the client (.255) and the spine (.254)
CLIENT = ip_address("172.31.255.255")


def build() -> Cluster:
    c = Cluster(cni="calico-bgp", ipam="calico", racks=RACKS, bgp_design="per-rack-ebgp",
                load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    for i in range(1, 5):
        c.add_node(f"node-{i}", rack="rack-1" if i <= 2 else "rack-2")
    for pod, node, ready in (("web-a", "node-1", True), ("web-b", "node-2", True), ("web-c", "node-3", True),
                             ("web-d", "node-4", False)):
        c.add_pod(pod, node=node, labels={"app": "web"}, ready=ready)
    c.add_service("web-local", selector={"app": "web"}, port=80, target_port=8080, type="LoadBalancer",
                  external_traffic_policy="Local")
    c.add_service("web-cluster", selector={"app": "web"}, port=80, target_port=8080, type="LoadBalancer")
    c.add_service("idle", selector={"app": "nothing"}, port=80, type="LoadBalancer")
    return c


@pytest.fixture()
def c():
    return build()


def vip(c, service):
    (address,) = c.service(service).load_balancer_ips
    return ip_network(f"{address}/32")


def ready_endpoint_nodes(c, app="web"):
    """Independently of EndpointSlices: the nodes running a ready pod the selector matches."""
    return {p.node for p in c.pods if p.labels.get("app") == app and p.ready}


def announcers(c, prefix):
    return {node for node, prefixes in load_balancer_announcements(c).items() if prefix in prefixes}


def node_ip(c, name):
    return c.node(name).ip


def test_who_announces_follows_metallb(c):
    assert ready_endpoint_nodes(c) == {"node-1", "node-2", "node-3"}
    assert announcers(c, vip(c, "web-local")) == ready_endpoint_nodes(c)          # Local: ready local endpoint
    assert announcers(c, vip(c, "web-cluster")) == {n.name for n in c.nodes}      # Cluster: every node
    assert announcers(c, vip(c, "idle")) == set()                                  # "noEndpoints"
    assert all(p.prefixlen == 32 for ps in load_balancer_announcements(c).values() for p in ps)


def test_the_tor_gets_an_ecmp_route_to_the_announcing_nodes(c):
    fabric = Fabric.from_cluster(c)           # announcements by default: the cluster has LoadBalancers
    fabric.converge()
    local = vip(c, "web-local")
    for tor, rack_nodes in (("tor-1", ("node-1", "node-2")), ("tor-2", ("node-3", "node-4"))):
        (entry,) = [e for e in fabric.fib(tor) if e.prefix == local]
        expected = {(node_ip(c, n), "rack") for n in rack_nodes if n in ready_endpoint_nodes(c)}
        assert set(entry.nexthops) == expected
    # the same routes in the namespaces the walk uses, printed as `ip route` prints multipath
    route = next(r for r in c.topology()["tor-1"].routes if r.dst == local)
    assert str(route) == (f"{local.network_address} proto bgp nexthop via 192.168.1.11 dev rack weight 1 "
                          "nexthop via 192.168.1.12 dev rack weight 1")
    silent = Fabric.from_cluster(c, services={})   # an explicit services= replaces the default
    silent.converge()
    assert [e.prefix for e in silent.fib("tor-1") if e.prefix.prefixlen == 32] == []


def test_every_ecmp_choice_is_an_announcer_and_stable_per_flow(c):
    local = vip(c, "web-local")
    route = next(r for r in c.topology()["tor-1"].routes if r.dst == local)
    allowed = {node_ip(c, "node-1"), node_ip(c, "node-2")}
    chosen = []
    for i in range(256):
        src = ip_address(f"198.51.100.{i}")
        index, single = route.select(src, local.network_address)
        assert single.via in allowed and single.nexthops == () and route.nexthops[index][0] == single.via
        assert route.select(src, local.network_address) == (index, single)
        chosen.append(single.via)
    assert set(chosen) == allowed             # 256 flows over two paths: both used


def test_next_hop_bounds_are_the_kernels():
    # fib_rebalance, three next hops of weight 1: DIV_ROUND_CLOSEST(w << 31, 3) - 1 for w = 1, 2, 3
    bounds = [715827882, 1431655764, 2147483647]
    three = Route.multipath(ip_network("10.0.0.0/24"), [(ip_address(f"192.0.2.{i}"), "eth0") for i in (1, 2, 3)])
    dst = ip_address("10.0.0.1")
    for i in range(200):
        src = ip_address(f"203.0.113.{i}")
        index, _ = three.select(src, dst)
        assert index == bisect.bisect_left(bounds, multipath_hash(src, dst))


def test_local_policy_walk_keeps_the_client_address(c):
    local = vip(c, "web-local")
    t = c.trace("external", str(local.network_address), proto="tcp", dport=80)
    assert t.outcome == "delivered"
    assert t.hops[0].namespace == "external" and t.hops[0].state.inner.src == CLIENT
    ecmp = [h for h in t.hops if "ECMP" in h.detail]
    assert ecmp and ecmp[0].namespace == "spine"             # tor-1 or tor-2, by the flow's hash
    (dnat,) = [h for h in t.hops if h.action == "dnat"]
    assert dnat.namespace in ready_endpoint_nodes(c)
    pod = c.pod(t.hops[-1].namespace.removeprefix("pod:"))
    assert pod.node == dnat.namespace                          # Local: an endpoint on the node it reached
    assert not [h for h in t.hops if h.action == "masquerade"] and t.hops[-1].state.inner.src == CLIENT
    assert any("un-DNAT" in note for note in t.notes)
    # policy 0 hashes layer 3 only: another source port, the same path
    other = c.trace("external", str(local.network_address), proto="tcp", dport=80, sport=40000)
    assert [h.namespace for h in other.hops] == [h.namespace for h in t.hops]


def test_the_tors_choice_is_the_node_that_translates(c):
    local = vip(c, "web-local")
    t = c.trace("external", str(local.network_address), proto="tcp", dport=80)
    tor_hop = next(h for h in t.hops if h.namespace.startswith("tor-") and h.action == "forward")
    sent = next(h for h in t.hops[tor_hop.index:] if h.action == "transmit")
    (dnat,) = [h for h in t.hops if h.action == "dnat"]
    assert sent.detail.startswith(f"on the wire to {dnat.namespace} eth0")
    assert "BGP best path of tor-" in tor_hop.detail and f"{local}" in tor_hop.detail


def test_cluster_policy_masquerades_to_the_ingress_node(c):
    cluster_vip = vip(c, "web-cluster")
    first = c.trace("external", str(cluster_vip.network_address), proto="tcp", dport=80)
    (dnat,) = [h for h in first.hops if h.action == "dnat"]
    ingress = dnat.namespace
    remote = next(p for p in c.pods if p.labels.get("app") == "web" and p.ready and p.node != ingress)
    t = c.trace("external", str(cluster_vip.network_address), proto="tcp", dport=80, endpoint=remote.name)
    assert t.outcome == "delivered" and t.hops[-1].namespace == f"pod:default/{remote.name}"
    (masq,) = [h for h in t.hops if h.action == "masquerade"]
    assert masq.namespace == ingress and masq.detail.startswith(f"source {CLIENT} -> {node_ip(c, ingress)}")
    assert t.hops[-1].state.inner.src == node_ip(c, ingress)
    assert any("un-SNAT" in n for n in t.notes) and any("un-DNAT" in n for n in t.notes)


def test_nodeport_from_outside(c):
    service = c.service("web-local")
    node_port = service.ports[0].node_port
    t = c.trace("external", "node-3", proto="tcp", dport=node_port)
    assert t.outcome == "delivered" and t.hops[-1].namespace == "pod:default/web-c"
    assert t.hops[-1].state.inner.src == CLIENT
    # node-4's only pod is not ready: kube-proxy drops external traffic for a Local service there
    dropped = c.trace("external", "node-4", proto="tcp", dport=node_port)
    assert dropped.outcome == "dropped" and "has no local endpoints" in dropped.reason


def test_removing_the_last_endpoint_on_a_node_withdraws_its_route(c):
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    local, cluster_vip = vip(c, "web-local"), vip(c, "web-cluster")
    c.remove_pod("web-a")                                      # node-1's only endpoint
    assert announcers(c, local) == ready_endpoint_nodes(c) == {"node-2", "node-3"}
    results = fabric.sync(c)
    assert [r.event for r in results] == [f"node-1 withdraws {local}"]
    (withdrawal,) = [m for m in results[0].message_list() if m.sender == "node-1"]
    assert (withdrawal.receiver, withdrawal.update.withdrawn) == ("tor-1", (local,))
    (entry,) = [e for e in fabric.fib("tor-1") if e.prefix == local]
    assert entry.nexthops == ((node_ip(c, "node-2"), "rack"),)
    assert cluster_vip in fabric.speaker("node-1").originated   # Cluster policy: node-1 still announces
    # the walk's own fabric follows the cluster too: tor-1 now has one next hop
    route = next(r for r in c.topology()["tor-1"].routes if r.dst == local)
    assert str(route) == f"{local.network_address} via 192.168.1.12 dev rack proto bgp"
    c.add_pod("web-e", node="node-1", labels={"app": "web"})
    assert [r.event for r in fabric.sync(c)] == [f"node-1 announces {local}"]
