"""The packet walk over a BGP-routed cluster: routes from the converged fabric, not from the podCIDRs.

Expected tables are worked out by hand from RFC 4271 for scenarios/two-rack-bgp.yaml (AS per rack:
nodes of rack-1 AS 64513, of rack-2 AS 64514, tor-1 65001, tor-2 65002, spine 65100; eBGP sets
NEXT_HOP to the sender's address on the link, §5.1.3) and written in iproute2's spelling (datapath.md
§1: Calico's BIRD labels its routes ``proto bird``; FRR ``proto bgp``). The blocks are the scenario's
input (Calico IPAM), read from ``cluster.blocks``.
"""

import itertools
from ipaddress import ip_address, ip_network

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import NotFound

SCENARIO = "scenarios/two-rack-bgp.yaml"
VIP = ip_network("192.168.100.1/32")   # the first address of 192.168.100.0/28 with avoidBuggyIPs (skips .0)


@pytest.fixture(scope="module")
def c():
    return Cluster.load(SCENARIO)


def block(c, node):
    (b,) = c.blocks(node)
    return b


def learnt(namespace):
    """The routes a BGP daemon installed (the blackhole Calico keeps per local block aside)."""
    return {str(r) for r in namespace.routes if r.proto in ("bird", "bgp") and r.type == "unicast"}


def test_tor_routes_are_what_bgp_gives_it(c):
    spine_side = "via 172.31.255.0 dev uplink proto bgp"       # tor-1's uplink is 172.31.255.0/31, spine .0
    expected = {f"{block(c, 'node-1')} via 192.168.1.11 dev rack proto bgp",
                f"{block(c, 'node-2')} via 192.168.1.12 dev rack proto bgp",
                f"{block(c, 'node-3')} {spine_side}", f"{block(c, 'node-4')} {spine_side}",
                f"192.168.2.0/24 {spine_side}",                    # tor-2 originates its rack subnet
                "192.168.100.1 via 192.168.1.11 dev rack proto bgp"}   # web is Local: web-1 is on node-1
    assert learnt(c.topology()["tor-1"]) == expected


def test_spine_has_the_vip_over_both_racks(c):
    spine = c.topology()["spine"]
    # web's endpoints: web-1 (node-1, rack-1) and web-2 (node-3, rack-2); the two paths have AS_PATHs
    # of equal length through different ToR ASes, ECMP with multipath-relax (RFC 7938 §6.3)
    assert ("192.168.100.1 proto bgp nexthop via 172.31.255.1 dev tor-1 weight 1 "
            "nexthop via 172.31.255.3 dev tor-2 weight 1") in learnt(spine)
    assert "172.31.255.254/31 dev external proto kernel scope link src 172.31.255.254" in map(str, spine.routes)


def test_nodes_install_what_bird_learnt(c):
    node_1 = c.topology()["node-1"]
    via_tor = "via 192.168.1.1 dev eth0 proto bird"
    # node-2's block comes back from tor-1 as AS_PATH [65001 64513]: node-1's own AS, dropped (§9.1.2);
    # tor-1's own rack subnet stays the connected route (BIRD's direct protocol beats BGP)
    assert learnt(node_1) == {f"{block(c, 'node-3')} {via_tor}", f"{block(c, 'node-4')} {via_tor}",
                              f"192.168.2.0/24 {via_tor}"}


def test_rack_mates_reach_each_other_through_their_tor(c):
    t = c.trace("client", "web-1", proto="tcp", dport=8080)     # client on node-2, web-1 on node-1
    assert t.outcome == "delivered"
    assert [h.namespace for h in t.wire_hops] == ["pod:default/client", "node-2", "tor-1", "node-1"]
    tor = next(h for h in t.hops if h.namespace == "tor-1" and h.action == "forward")
    assert tor.decided_by == f"{block(c, 'node-1')} via 192.168.1.11 dev rack proto bgp"
    assert tor.detail.endswith(f"BGP best path of tor-1 for {block(c, 'node-1')}: from node-1 (192.168.1.11), "
                               "NEXT_HOP 192.168.1.11, AS_PATH 64513, only path")


def test_every_pod_reaches_every_pod(c):
    for a, b in itertools.permutations([p.name for p in c.pods], 2):
        assert c.trace(a, b, proto="tcp", dport=8080).outcome == "delivered", (a, b)


def test_the_external_client_reaches_pods_and_nodes(c):
    assert c.trace("external", "api-1").outcome == "delivered"
    assert c.trace("external", "node-4").hops[-1].namespace == "node-4"
    back = c.trace("web-2", "external")
    assert back.outcome == "delivered" and back.hops[-1].namespace == "external"
    assert c.topology().external_address == ip_address("172.31.255.255")


def test_the_fabric_is_built_once_per_cluster_state():
    c = Cluster.load(SCENARIO)
    fabric = c.topology().fabric
    assert c.topology().fabric is fabric and fabric.speaker("spine").loc_rib
    c.add_pod("web-3", node="node-2", labels={"app": "web"})
    assert c.topology().fabric is not fabric
    tor_1 = {str(r) for r in c.topology()["tor-1"].routes if r.dst == VIP}
    assert tor_1 == {"192.168.100.1 proto bgp nexthop via 192.168.1.11 dev rack weight 1 "
                     "nexthop via 192.168.1.12 dev rack weight 1"}


def test_flat_full_mesh_routes_each_block_to_its_node():
    c = Cluster(cni="calico-bgp", ipam="calico", bgp_design="full-mesh")
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
        c.add_pod(f"p-{i}", node=f"node-{i}")
    t = c.topology()
    for node in c.nodes:
        expected = {f"{block(c, o.name)} via {o.ip} dev eth0 proto bird" for o in c.nodes if o is not node}
        assert learnt(t[node.name]) == expected
    # the segment's router peers with every node (eBGP from AS 65000) and holds the highest free address
    assert t.external_address == ip_address("192.168.0.254")
    assert learnt(t["external"]) == {f"{block(c, n.name)} via {n.ip} dev eth0 proto bgp" for n in c.nodes}
    assert all(c.trace(a.name, b.name).outcome == "delivered" for a, b in itertools.permutations(c.pods, 2))


def test_designs_without_tor_speakers_keep_the_derived_fabric_routes():
    racks = [{"name": f"rack-{r}", "subnet": f"192.168.{r}.0/24", "tor": {"name": f"tor-{r}"}} for r in (1, 2)]
    c = Cluster(cni="calico-bgp", ipam="calico", racks=racks, bgp_design="full-mesh")
    for i in range(1, 5):
        c.add_node(f"node-{i}", rack="rack-1" if i <= 2 else "rack-2")
        c.add_pod(f"p-{i}", node=f"node-{i}")
    tor_1 = c.topology()["tor-1"]
    assert tor_1.bgp_speaker is None
    assert f"{block(c, 'node-1')} via 192.168.1.11 dev rack proto bgp" in map(str, tor_1.routes)
    assert c.trace("p-1", "p-4").outcome == "delivered"


def test_no_bgp_design_no_external_client():
    c = Cluster.load("scenarios/three-node-vxlan.yaml")
    assert "external" not in c.topology() and c.topology().fabric is None
    with pytest.raises(NotFound, match="external"):
        c.trace("external", "web-1")


# -- overlays with a BGP design: MetalLB (or Cilium's BGP control plane) announces the VIPs alone ---------

def flannel_two_racks(policy):
    """flannel VXLAN, two racks, MetalLB per-rack eBGP; web-1 on node-1 is the only endpoint."""
    racks = [{"name": f"rack-{r}", "subnet": f"192.168.{r}.0/24", "tor": {"name": f"tor-{r}"}} for r in (1, 2)]
    c = Cluster(cni="flannel-vxlan", racks=racks, bgp_design="per-rack-ebgp",
                load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    for i in range(1, 5):
        c.add_node(f"node-{i}", rack="rack-1" if i <= 2 else "rack-2")
    c.add_pod("web-1", node="node-1", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, target_port=8080, type="LoadBalancer",
                  external_traffic_policy=policy)
    return c


def test_an_overlay_with_a_bgp_design_has_a_fabric_of_vips_only():
    c = flannel_two_racks("Local")
    t = c.topology()
    assert t.fabric is not None and t["tor-1"].bgp_speaker == "tor-1"
    # flanneld speaks no BGP and MetalLB announces Services only: tor-1 learns tor-2's rack subnet and
    # the VIP from node-1, the one node with a ready endpoint (Local), and no podCIDR
    assert learnt(t["tor-1"]) == {"192.168.2.0/24 via 172.31.255.0 dev uplink proto bgp",
                                  "192.168.100.1 via 192.168.1.11 dev rack proto bgp"}
    # the nodes keep flannel's routes: the remote podCIDRs through flannel.1, nothing from BGP
    assert not learnt(t["node-3"])
    assert "10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink" in map(str, t["node-3"].routes)


def test_the_external_client_reaches_a_vip_through_an_overlay_node():
    c = flannel_two_racks("Cluster")
    t = c.topology()
    # Cluster policy: all four nodes announce (MetalLB ShouldAnnounce), so each ToR has an ECMP route
    # over its two nodes and the spine one over both ToRs (equal AS_PATH lengths, multipath-relax)
    assert ("192.168.100.1 proto bgp nexthop via 192.168.2.11 dev rack weight 1 "
            "nexthop via 192.168.2.12 dev rack weight 1") in learnt(t["tor-2"])
    walk = c.trace("external", "192.168.100.1", proto="tcp", dport=80)
    assert walk.outcome == "delivered" and walk.hops[-1].namespace == "pod:default/web-1"
    (dnat,) = [h for h in walk.hops if h.action == "dnat"]
    # the ECMP hashes chose a node; when it is not node-1, kube-proxy's DNAT sends the packet to web-1
    # over flannel's VXLAN (an outer header on the wire), else straight to the local bridge
    assert dnat.namespace in {"node-1", "node-2", "node-3", "node-4"}
    tunnelled = any(h.state.outer is not None for h in walk.wire_hops)
    assert tunnelled is (dnat.namespace != "node-1")


@pytest.mark.parametrize("node", ["node-2", "node-3", "node-4"])
def test_every_ingress_node_reaches_the_pod_over_the_overlay(node):
    """From whichever node the ToR picks: the VIP's DNAT then VXLAN to node-1 (flannel.1, UDP 8472)."""
    c = flannel_two_racks("Cluster")
    walk = c.trace(node, "192.168.100.1", proto="tcp", dport=80)
    assert walk.outcome == "delivered" and walk.hops[-1].namespace == "pod:default/web-1"
    assert any(h.state.outer is not None for h in walk.wire_hops)


def test_the_scenario_with_flannel_reaches_its_vip_from_outside():
    """two-rack-bgp.yaml with ``cni: flannel-vxlan, ipam: host-local`` (the spine had no route to the VIP)."""
    from kubenet_lab.scenario import read_objects

    objects = read_objects(SCENARIO)
    network = next(o for o in objects if o["kind"] == "ClusterNetwork")
    network["spec"].update(cni="flannel-vxlan", ipam="host-local")
    c = Cluster.from_objects(objects)
    spine = c.topology()["spine"]
    # web is Local with endpoints on node-1 (rack-1) and node-3 (rack-2): one path through each ToR
    assert learnt(spine) == {"192.168.1.0/24 via 172.31.255.1 dev tor-1 proto bgp",
                             "192.168.2.0/24 via 172.31.255.3 dev tor-2 proto bgp",
                             "192.168.100.1 proto bgp nexthop via 172.31.255.1 dev tor-1 weight 1 "
                             "nexthop via 172.31.255.3 dev tor-2 weight 1"}
    walk = c.trace("external", str(VIP.network_address), proto="tcp", dport=80)
    assert walk.outcome == "delivered" and walk.hops[-1].namespace in ("pod:default/web-1", "pod:default/web-2")


def test_a_single_segment_router_learns_the_vip_from_every_node():
    """Calico VXLAN (Felix, no BIRD) with MetalLB peering every node with the segment's router."""
    c = Cluster(cni="calico-vxlan", ipam="calico", bgp_design="full-mesh",
                load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
    c.add_pod("web-1", node="node-3", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, target_port=8080, type="LoadBalancer")
    t = c.topology()
    # the segment's router peers eBGP with every node; each announces the /32 (Cluster policy): ECMP
    assert learnt(t["external"]) == {"192.168.100.1 proto bgp nexthop via 192.168.0.11 dev eth0 weight 1 "
                                     "nexthop via 192.168.0.12 dev eth0 weight 1 "
                                     "nexthop via 192.168.0.13 dev eth0 weight 1"}
    walk = c.trace("external", "192.168.100.1", proto="tcp", dport=80)
    assert walk.outcome == "delivered" and walk.hops[-1].namespace == "pod:default/web-1"


# -- CrossSubnet without a BGP design: the underlay knows the node subnets only -----------------------------

def test_crosssubnet_tors_know_no_pod_prefix():
    c = Cluster.load("scenarios/calico-crosssubnet.yaml")
    t = c.topology()
    assert t.fabric is None
    # Calico VXLAN runs no BIRD: nothing tells the ToRs or the spine about blocks; same-subnet packets go
    # node to node on the rack segment and cross-subnet ones are VXLAN between node addresses
    assert [str(r) for r in t["tor-1"].routes] == ["default via 172.31.255.0 dev uplink",
                                                   "192.168.1.0/24 dev rack proto kernel scope link src 192.168.1.1",
                                                   "172.31.255.0/31 dev uplink proto kernel scope link src 172.31.255.1"]
    assert learnt(t["spine"]) == {"192.168.1.0/24 via 172.31.255.1 dev tor-1 proto bgp",
                                  "192.168.2.0/24 via 172.31.255.3 dev tor-2 proto bgp"}
    same_rack = c.trace("client", "web-1", proto="tcp", dport=8080)       # node-2 -> node-1
    assert same_rack.outcome == "delivered"
    assert all(h.state.outer is None for h in same_rack.wire_hops)
    assert [h.namespace for h in same_rack.wire_hops] == ["pod:default/client", "node-2", "node-1"]
    across = c.trace("client", "web-2", proto="tcp", dport=8080)          # node-2 -> node-3
    assert across.outcome == "delivered"
    assert any(h.state.outer is not None for h in across.wire_hops)
