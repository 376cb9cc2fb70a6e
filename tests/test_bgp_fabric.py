"""The designs of chapter 03 built from a Cluster, and how they converge after events.

Expected values are derived by hand from RFC 4271/4456 and datapath.md §2
(session counts, AS_PATHs, next hops, message counts); the comments show the working.
"""

from ipaddress import ip_address, ip_network

import pytest

from kubenet_lab import Cluster
from kubenet_lab.bgp import ASPath, Step, decode
from kubenet_lab.bgp.fabric import Fabric
from kubenet_lab.errors import AlreadyExists, InvalidValue, NotFound

RACKS = [
    {"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1"}, "nodes": []},
    {"name": "rack-2", "subnet": "192.168.2.0/24", "tor": {"name": "tor-2"}, "nodes": []},
]
SVC = ip_network("10.96.0.10/32")


def flat(n, **kwargs):
    """n nodes on one segment: node-i at 192.168.0.(10+i) with podCIDR 10.244.(i-1).0/24."""
    c = Cluster(cni="calico-bgp", **kwargs)
    for i in range(1, n + 1):
        c.add_node(f"node-{i}")
    return c


def racked(**kwargs):
    """node-1, node-2 in rack-1 (192.168.1.11/.12), node-3, node-4 in rack-2 (192.168.2.11/.12)."""
    c = Cluster(cni="calico-bgp", racks=RACKS, **kwargs)
    for i in range(1, 5):
        c.add_node(f"node-{i}", rack="rack-1" if i <= 2 else "rack-2")
    return c


def pod_cidr(c, node):
    return c.node(node).pod_cidr


def test_cluster_layout_assumed_by_these_tests():
    c = racked()
    assert [(n.name, str(n.ip), str(n.pod_cidr)) for n in c.nodes] == [
        ("node-1", "192.168.1.11", "10.244.0.0/24"), ("node-2", "192.168.1.12", "10.244.1.0/24"),
        ("node-3", "192.168.2.11", "10.244.2.0/24"), ("node-4", "192.168.2.12", "10.244.3.0/24")]


# -- full mesh -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_full_mesh_sessions_routes_and_messages(n):
    c = flat(n)
    fabric = Fabric.from_cluster(c, "full-mesh")
    assert fabric.session_count == n * (n - 1) // 2          # datapath.md §2.7
    result = fabric.converge()
    # each node sends its one podCIDR to its n-1 peers, nobody re-advertises (RFC 4271 §9.2)
    assert (result.messages, result.steps) == (n * (n - 1), 1)
    for node in c.nodes:
        expected = sorted(f"{o.pod_cidr} via {o.ip} dev eth0 proto bird" for o in c.nodes if o is not node)
        assert sorted(fabric.routes(node.name)) == expected
        for other in c.nodes:
            if other is not node:
                decision = fabric.speaker(node.name).loc_rib[other.pod_cidr]
                assert decision.best.next_hop == other.ip and decision.step is Step.ONLY_PATH


def test_full_mesh_messages_are_real_updates():
    fabric = Fabric.from_cluster(flat(3), "full-mesh")
    result = fabric.converge()
    messages = result.message_list()
    assert [(m.step, m.sender, m.receiver) for m in messages] == [
        (1, "node-1", "node-2"), (1, "node-1", "node-3"), (1, "node-2", "node-1"), (1, "node-2", "node-3"),
        (1, "node-3", "node-1"), (1, "node-3", "node-2")]
    for m in messages:
        assert decode(m.update.encode()) == m.update
    assert str(messages[0]) == ("step 1: node-1 -> node-2: UPDATE 10.244.0.0/24 [ORIGIN IGP, AS_PATH (empty), "
                                "NEXT_HOP 192.168.0.11, LOCAL_PREF 100]")
    timeline = result.timeline("node-2")
    assert [e.step for e in timeline] == [0, 0, 1, 1]
    assert timeline[-1].what == "best 10.244.2.0/24 via 192.168.0.13 (only path)"


def test_full_mesh_session_down_loses_the_route_and_up_restores_it():
    c = flat(3)
    fabric = Fabric.from_cluster(c, "full-mesh")
    fabric.converge()
    down = fabric.session_down("node-1", "node-2")
    # nobody else re-advertises node-2's route to node-1: that is why the mesh must be full
    assert down.messages == 0
    assert "10.244.1.0/24" not in " ".join(fabric.routes("node-1"))
    up = fabric.session_up("node-1", "node-2")
    assert up.messages == 2                     # each side sends its one route
    assert "10.244.1.0/24 via 192.168.0.12 dev eth0 proto bird" in fabric.routes("node-1")


def test_node_leave_and_join_follow_the_cluster():
    c = flat(4)
    fabric = Fabric.from_cluster(c, "full-mesh")
    fabric.converge()
    gone = pod_cidr(c, "node-3")
    c.remove_node("node-3")
    (leave,) = fabric.sync(c)
    assert leave.event == "node-3 leaves" and leave.messages == 0    # peers flush on session loss
    assert fabric.session_count == 3
    for name in ("node-1", "node-2", "node-4"):
        assert gone not in fabric.speaker(name).loc_rib
    c.add_node("node-5")
    (join,) = fabric.sync(c)
    # node-5 sends its route to 3 peers; each of the 3 sends its route to node-5
    assert join.messages == 6 and fabric.session_count == 6
    assert f"{pod_cidr(c, 'node-5')} via {c.node('node-5').ip} dev eth0 proto bird" in fabric.routes("node-1")


# -- route reflectors ------------------------------------------------------------------------

def test_route_reflector_sessions_and_message_count():
    c = flat(5)
    fabric = Fabric.from_cluster(c, "route-reflectors")   # default: node-1 and node-2 reflect
    assert fabric.session_count == 2 * 3 + 1             # r(n-r) + r(r-1)/2
    result = fabric.converge()
    # step 1: RR1, RR2 send their own route to 4 peers each (8); each client to both RRs (6) = 14
    # step 2: each RR reflects the other RR's route to 3 clients (3) and each client route to
    #         2 other clients + the other RR (3 x 3 = 9): 12 per RR = 24
    # then the RRs' copies of each other's reflections lose to the direct paths: nothing more
    assert (result.messages, result.steps) == (38, 2)
    for node in c.nodes:
        assert len(fabric.speaker(node.name).loc_rib) == 5


def test_two_reflectors_offer_the_same_path_lowest_peer_address_wins():
    c = flat(5)
    fabric = Fabric.from_cluster(c, "route-reflectors")
    fabric.converge()
    # node-5 hears node-3's route from both reflectors: same ORIGINATOR_ID (node-3), CLUSTER_LIST
    # of length 1 each (RFC 4456 §9) -> the lowest peer address decides (RFC 4271 §9.1.2.2 g)
    decision = fabric.speaker("node-5").loc_rib[pod_cidr(c, "node-3")]
    assert decision.step is Step.PEER_ADDRESS
    assert decision.best.peer_address == ip_address("192.168.0.11")
    assert decision.best.originator_id == ip_address("192.168.0.13")
    assert decision.best.cluster_list == (ip_address("192.168.0.11"),)
    assert decision.best.next_hop == ip_address("192.168.0.13")      # NEXT_HOP unchanged
    # node-2 (RR2) hears it from node-3 directly and reflected by RR1: the ORIGINATOR_ID of
    # the reflected copy equals the direct peer's router ID, so CLUSTER_LIST length decides
    decision = fabric.speaker("node-2").loc_rib[pod_cidr(c, "node-3")]
    assert decision.step is Step.CLUSTER_LIST_LENGTH
    assert decision.best.peer_address == ip_address("192.168.0.13") and decision.best.cluster_list == ()


def test_shared_cluster_id_drops_the_other_reflectors_copy():
    c = flat(4)
    fabric = Fabric.from_cluster(c, "route-reflectors", cluster_id="244.0.0.1")
    fabric.converge()
    rr2 = fabric.speaker("node-2")
    # RFC 4456 §8: RR2 ignores RR1's reflection, whose CLUSTER_LIST holds 244.0.0.1
    assert rr2.adj_rib_in("node-1").keys() == {pod_cidr(c, "node-1")}
    assert rr2.loc_rib[pod_cidr(c, "node-3")].step is Step.ONLY_PATH


def test_tors_as_route_reflectors():
    c = racked()
    fabric = Fabric.from_cluster(c, "route-reflectors", route_reflectors="tors")
    # 4 node-ToR, 2 ToR-spine, 1 ToR-ToR
    assert fabric.session_count == 7
    fabric.converge()
    # the spine (a client of both ToRs) hears node-1's route from tor-1 (CLUSTER_LIST [tor-1])
    # and from tor-2 (CLUSTER_LIST [tor-2, tor-1]): same ORIGINATOR_ID, shorter list wins
    decision = fabric.speaker("spine").loc_rib[pod_cidr(c, "node-1")]
    assert decision.step is Step.CLUSTER_LIST_LENGTH
    assert decision.best.cluster_list == (ip_address("192.168.1.1"),)
    # its NEXT_HOP (node-1) resolves recursively through tor-1's rack route
    assert "10.244.0.0/24 via 172.31.255.1 dev tor-1 proto bgp" in fabric.routes("spine")
    assert "10.244.0.0/24 via 172.31.255.2 dev uplink proto bgp" in fabric.routes("tor-2")   # the spine
    assert "10.244.2.0/24 via 192.168.1.1 dev eth0 proto bird" in fabric.routes("node-1")


# -- AS per rack -----------------------------------------------------------------------------

def test_per_rack_ebgp_as_paths_and_next_hops():
    c = racked()
    fabric = Fabric.from_cluster(c, "per-rack-ebgp")
    assert fabric.session_count == 4 + 2
    fabric.converge()
    # node-3 (AS 64514) -> tor-2 (65002) -> spine (65100) -> tor-1 (65001) -> node-1 (64513):
    # each eBGP hop prepends the sender's AS and sets NEXT_HOP to itself (RFC 4271 §5.1.2-3)
    path = fabric.speaker("node-1").loc_rib[pod_cidr(c, "node-3")].best
    assert path.as_path == ASPath([65001, 65100, 65002, 64514])
    assert path.next_hop == ip_address("192.168.1.1")
    spine = fabric.speaker("spine").loc_rib[pod_cidr(c, "node-3")].best
    assert (spine.as_path, spine.next_hop) == (ASPath([65002, 64514]), ip_address("172.31.255.3"))
    assert fabric.routes("tor-1") == [
        "10.244.0.0/24 via 192.168.1.11 dev rack proto bgp", "10.244.1.0/24 via 192.168.1.12 dev rack proto bgp",
        "10.244.2.0/24 via 172.31.255.0 dev uplink proto bgp", "10.244.3.0/24 via 172.31.255.0 dev uplink proto bgp",
        "192.168.2.0/24 via 172.31.255.0 dev uplink proto bgp"]
    # node-1 and node-2 share AS 64513: node-2's route comes back as [65001 64513] and is
    # dropped (own AS in AS_PATH); the rack is reached through the default route instead
    assert pod_cidr(c, "node-2") not in fabric.speaker("node-1").loc_rib


def test_per_rack_ebgp_allowas_in_with_one_cluster_as():
    c = racked()
    with pytest.raises(InvalidValue, match="allowas_in"):
        Fabric.from_cluster(c, "per-rack-ebgp", node_asn="cluster")
    fabric = Fabric.from_cluster(c, "per-rack-ebgp", node_asn="cluster", allowas_in=1)
    fabric.converge()
    path = fabric.speaker("node-1").loc_rib[pod_cidr(c, "node-3")].best
    assert path.as_path == ASPath([65001, 65100, 65002, 64512])
    assert "10.244.1.0/24 via 192.168.1.1 dev eth0 proto bird" in fabric.routes("node-1")


def test_ecmp_at_the_spine_for_an_anycast_service():
    c = racked()
    fabric = Fabric.from_cluster(c, "per-rack-ebgp", services={"node-1": [SVC], "node-3": [SVC]})
    fabric.converge()
    assert ("10.96.0.10 proto bgp nexthop via 172.31.255.1 dev tor-1 weight 1 "
            "nexthop via 172.31.255.3 dev tor-2 weight 1") in fabric.routes("spine")
    # without multipath-relax the two paths (via AS 65001 and AS 65002) are not ECMP; both
    # have AS_PATH length 2, so the lower router ID (tor-1, 192.168.1.1) wins
    strict = Fabric.from_cluster(c, "per-rack-ebgp", services={"node-1": [SVC], "node-3": [SVC]},
                                 multipath_relax=False)
    strict.converge()
    decision = strict.speaker("spine").loc_rib[SVC]
    assert decision.step is Step.ROUTER_ID and len(decision.multipath) == 1
    assert "10.96.0.10 via 172.31.255.1 dev tor-1 proto bgp" in strict.routes("spine")


def test_link_failure_reroutes_and_withdraws_then_recovers():
    c = racked()
    fabric = Fabric.from_cluster(c, "per-rack-ebgp", services={"node-1": [SVC], "node-3": [SVC]})
    fabric.converge()
    before = fabric.routes("node-1")
    down = fabric.link_down("tor-2")
    assert down.event == "link tor-2 - spine down"
    spine = fabric.routes("spine")
    assert "10.96.0.10 via 172.31.255.1 dev tor-1 proto bgp" in spine           # rerouted
    assert not any(r.startswith(("10.244.2.", "10.244.3.", "192.168.2.")) for r in spine)
    for node in ("node-1", "node-2"):
        assert not any(r.startswith(("10.244.2.", "10.244.3.")) for r in fabric.routes(node))
    assert fabric.routes("tor-2") == ["10.96.0.10 via 192.168.2.11 dev rack proto bgp",
                                      "10.244.2.0/24 via 192.168.2.11 dev rack proto bgp",
                                      "10.244.3.0/24 via 192.168.2.12 dev rack proto bgp"]
    fabric.link_up("tor-2")
    assert fabric.routes("node-1") == before


def test_withdrawal_after_node_leave_reaches_every_router():
    c = racked()
    fabric = Fabric.from_cluster(c, "per-rack-ebgp")
    fabric.converge()
    gone = pod_cidr(c, "node-3")
    c.remove_node("node-3")
    (leave,) = fabric.sync(c)
    # tor-2 withdraws to node-4 and the spine (2), the spine to tor-1 (1), tor-1 to its nodes (2)
    assert leave.messages == 5 and leave.steps == 3
    assert all(m.update.withdrawn == (gone,) for m in leave.message_list())
    assert [str(e) for e in leave.timeline("spine")] == [
        "  1  spine        10.244.2.0/24 unreachable",
        "  1  spine        sends UPDATE withdraw 10.244.2.0/24 to tor-1"]
    for name, speaker in fabric.speakers.items():
        assert gone not in speaker.loc_rib, name


def test_announce_and_withdraw_events():
    c = flat(3)
    fabric = Fabric.from_cluster(c, "full-mesh")
    fabric.converge()
    fabric.announce("node-2", SVC)
    assert "10.96.0.10 via 192.168.0.12 dev eth0 proto bird" in fabric.routes("node-3")
    result = fabric.withdraw("node-2", SVC)
    assert result.messages == 2 and SVC not in fabric.speaker("node-3").loc_rib
    assert len(fabric.history) == 3 and fabric.history[0].rib("node-3") != fabric.history[1].rib("node-3")


def test_external_data_centre_routers():
    c = flat(2)
    fabric = Fabric.from_cluster(c, "full-mesh", external_peers=[("192.168.0.1", 65000)])
    assert fabric.session_count == 1 + 2
    fabric.converge()
    # eBGP from AS 64512: AS_PATH [64512]; node-2 also passes on node-1's route, but with
    # node-1 as "third party" NEXT_HOP on the shared subnet (RFC 4271 §5.1.3 (2))
    assert fabric.routes("external-1") == ["10.244.0.0/24 via 192.168.0.11 dev eth0 proto bgp",
                                           "10.244.1.0/24 via 192.168.0.12 dev eth0 proto bgp"]
    path = fabric.speaker("external-1").loc_rib[pod_cidr(c, "node-1")].best
    assert path.as_path == ASPath([64512])
    # what the router sends back, AS_PATH [65000 64512], holds the nodes' own AS: dropped on receipt
    assert fabric.speaker("node-1").adj_rib_in("external-1") == {}


def test_sessions_view():
    fabric = Fabric.from_cluster(flat(3), "route-reflectors", route_reflectors=["node-1"])
    fabric.converge()
    sessions = fabric.sessions()
    assert [(s.a, s.b, s.kind, s.reflector, s.established) for s in sessions] == [
        ("node-1", "node-2", "iBGP", "node-1", True), ("node-1", "node-3", "iBGP", "node-1", True)]


# -- bad input ---------------------------------------------------------------------------------

def test_bad_designs_and_numbers():
    with pytest.raises(InvalidValue, match="must be one of"):
        Fabric.from_cluster(flat(2))                         # bgp.design defaults to "none"
    with pytest.raises(InvalidValue, match="racks"):
        Fabric.from_cluster(flat(2), "per-rack-ebgp")
    with pytest.raises(InvalidValue, match="private AS"):
        Fabric.from_cluster(flat(2, bgp_asn=3356), "full-mesh")
    Fabric.from_cluster(flat(2, bgp_asn=3356), "full-mesh", allow_public_asn=True)
    with pytest.raises(InvalidValue, match="AS_TRANS"):
        Fabric.from_cluster(flat(2, bgp_asn=23456), "full-mesh")
    same = [dict(r, tor={"name": r["tor"]["name"], "asn": 65001}) for r in RACKS]
    c = Cluster(cni="calico-bgp", racks=same)
    with pytest.raises(InvalidValue, match="drop the other's routes"):
        Fabric.from_cluster(c, "per-rack-ebgp")
    with pytest.raises(InvalidValue, match="spine"):
        Fabric.from_cluster(racked(), "per-rack-ebgp", spine_asn=65001)
    with pytest.raises(InvalidValue, match="host bits|CIDR"):
        Fabric.from_cluster(flat(2), "full-mesh", services={"node-1": ["10.96.0.10/24"]})
    with pytest.raises(InvalidValue, match="IPv4"):
        Fabric.from_cluster(flat(2), "full-mesh", services={"node-1": ["fd00::1/128"]})
    with pytest.raises(NotFound):
        Fabric.from_cluster(flat(2), "route-reflectors", route_reflectors=["node-9"])
    with pytest.raises(InvalidValue, match="directly connected"):
        Fabric.from_cluster(flat(2), "full-mesh", external_peers=[("10.1.1.1", 65000)])


def test_duplicate_router_ids_and_unknown_routers():
    fabric = Fabric()
    fabric.add_speaker("a", "192.168.0.1", 64512)
    with pytest.raises(AlreadyExists, match="BGP Identifier of a"):
        fabric.add_speaker("b", "192.168.0.1", 64512)
    with pytest.raises(AlreadyExists):
        fabric.add_speaker("a", "192.168.0.2", 64512)
    fabric.add_speaker("b", "192.168.0.2", 65001)
    fabric.connect("a", "b")
    with pytest.raises(AlreadyExists, match="already configured"):
        fabric.connect("b", "a")
    assert fabric.session_count == 1
    fabric.add_speaker("c", "192.168.0.3", 65002)
    with pytest.raises(InvalidValue, match="eBGP"):
        fabric.connect("a", "c", reflector="a")
    with pytest.raises(NotFound):
        fabric.routes("d")
    with pytest.raises(NotFound):
        fabric.session_down("a", "c")
    with pytest.raises(NotFound):
        fabric.link_down("a")


# -- what the packet walk asks of a fabric ----------------------------------------------------

def test_explain_names_the_best_path_and_its_ecmp_siblings():
    c = racked()
    fabric = Fabric.from_cluster(c, "per-rack-ebgp", services={"node-1": [SVC], "node-3": [SVC]})
    fabric.converge()
    # spine: the /32 via tor-1 [65001 64513] and via tor-2 [65002 64514]: equal length, the lower
    # BGP Identifier (tor-1, 192.168.1.1) is best (RFC 4271 §9.1.2.2 f), both installed (multipath-relax)
    assert fabric.explain("spine", SVC) == (
        "BGP best path of spine for 10.96.0.10/32: from tor-1 (172.31.255.1), NEXT_HOP 172.31.255.1, "
        "AS_PATH 65001 64513, lowest BGP Identifier; multipath with tor-2 (2 ECMP paths)")
    with pytest.raises(NotFound):
        fabric.explain("node-2", "10.99.0.0/16")


def test_external_peers_may_be_named():
    fabric = Fabric.from_cluster(flat(2), "full-mesh", external_peers=[("192.168.0.254", 65000, "edge")])
    fabric.converge()
    assert fabric.routes("edge") == ["10.244.0.0/24 via 192.168.0.11 dev eth0 proto bgp",
                                     "10.244.1.0/24 via 192.168.0.12 dev eth0 proto bgp"]
    with pytest.raises(InvalidValue, match="name"):
        Fabric.from_cluster(flat(2), "full-mesh", external_peers=[("192.168.0.254",)])


def test_load_balancer_vips_are_announced_by_default():
    c = flat(3, load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    c.add_pod("web-1", node="node-2", labels={"app": "web"})
    c.add_pod("web-2", node="node-3", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, type="LoadBalancer")   # externalTrafficPolicy Cluster
    c.add_service("web-local", selector={"app": "web"}, port=80, type="LoadBalancer",
                  external_traffic_policy="Local")
    fabric = Fabric.from_cluster(c, "full-mesh")
    # avoidBuggyIPs skips 192.168.100.0: web gets .1, web-local .2; Cluster: every node announces .1
    assert {str(p) for p in fabric.speaker("node-1").originated} == {str(pod_cidr(c, "node-1")), "192.168.100.1/32"}
    fabric.converge()
    # node-1 hosts no web pod: it learns .2 from node-2 and node-3 over iBGP, equal AS_PATHs (empty): ECMP
    assert ("192.168.100.2 proto bird nexthop via 192.168.0.12 dev eth0 weight 1 "
            "nexthop via 192.168.0.13 dev eth0 weight 1") in fabric.routes("node-1")
    assert not any(r.startswith("192.168.100.1 ") for r in fabric.routes("node-1"))   # its own route wins


@pytest.mark.parametrize("cni, announced", [
    # Calico's BIRD exports every route inside an IPPool (confd bird_ipam.cfg, calico_export_to_bgp_peers)
    ("calico-bgp", True), ("calico-ipip", True),
    # no BGP daemon of the CNI: Calico VXLAN runs with calico_backend: vxlan (no BIRD), flanneld speaks
    # no BGP; the sessions are MetalLB's, which advertises Services only; Cilium's BGP control plane
    # advertises a PodCIDR only when a CiliumBGPAdvertisement asks (exportPodCIDR defaults to false)
    ("calico-vxlan", False), ("flannel-vxlan", False), ("cilium-vxlan", False), ("cilium-geneve", False),
])
def test_nodes_announce_pod_prefixes_only_where_the_cni_routes_them_over_bgp(cni, announced):
    ipam = "calico" if cni.startswith("calico") else "host-local"
    c = Cluster(cni=cni, ipam=ipam, bgp_design="full-mesh")
    for i in (1, 2):
        c.add_node(f"node-{i}")
        c.add_pod(f"p-{i}", node=f"node-{i}")          # a pod, so Calico IPAM gives the node a block
    pods = set(c.node("node-1").pod_cidrs) or set(c.blocks("node-1"))
    assert pods
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    assert (set(fabric.speaker("node-1").originated) == pods) is announced
    assert (pods <= set(fabric.speaker("node-2").loc_rib)) is announced
    # the option overrides the CNI's default either way
    forced = Fabric.from_cluster(c, announce_pods=not announced)
    assert (set(forced.speaker("node-1").originated) == pods) is (not announced)


def test_an_overlay_fabric_carries_the_vips_alone():
    c = Cluster(cni="flannel-vxlan", racks=RACKS, bgp_design="per-rack-ebgp",
                load_balancer_pools=[{"name": "edge", "addresses": ["192.168.100.0/28"], "avoidBuggyIPs": True}])
    for i in range(1, 5):
        c.add_node(f"node-{i}", rack="rack-1" if i <= 2 else "rack-2")
    c.add_pod("web-1", node="node-2", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, type="LoadBalancer")
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    # externalTrafficPolicy Cluster: every node announces 192.168.100.1/32 (MetalLB ShouldAnnounce), so
    # tor-1 has it over node-1 and node-2 (equal AS_PATH length 1, different router IDs: ECMP)
    vip = ip_network("192.168.100.1/32")
    assert [str(e) for e in fabric.fib("tor-1")] == [
        "192.168.2.0/24 via 172.31.255.0 dev uplink proto bgp",
        "192.168.100.1 proto bgp nexthop via 192.168.1.11 dev rack weight 1 nexthop via 192.168.1.12 dev rack weight 1"]
    assert {e.prefix for e in fabric.fib("spine")} == {ip_network("192.168.1.0/24"), ip_network("192.168.2.0/24"), vip}


def test_announce_pods_must_be_a_bool():
    with pytest.raises(InvalidValue, match="announce_pods"):
        Fabric.from_cluster(flat(2, bgp_design="full-mesh"), announce_pods="yes")


def test_table_version_counts_best_path_changes_not_rows():
    """FRR/Cisco ``BGP table version``: +1 per Loc-RIB change, so a flap shows in it, not in the row count."""
    fabric = Fabric.from_cluster(flat(3, bgp_design="full-mesh"))
    fabric.converge()
    # node-1: its own podCIDR, then node-2's and node-3's: three changes, three rows
    assert fabric.speaker("node-1").table_version == 3
    fabric.session_down("node-1", "node-2")          # node-2's podCIDR leaves node-1's Loc-RIB: 4
    fabric.session_up("node-1", "node-2")            # and comes back: 5
    table = fabric.show_ip_bgp("node-1")
    assert table.header.startswith("BGP table version is 5, local router ID is 192.168.0.11")
    assert len(table.table.rows) == 3
    assert fabric.speaker("node-3").table_version == 3     # node-3 saw nothing change
