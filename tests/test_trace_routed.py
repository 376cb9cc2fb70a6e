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
