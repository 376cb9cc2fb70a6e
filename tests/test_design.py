"""The design review (kubenet_lab.design): hand-made designs with known faults, and one that passes.

Every expected number is worked out by hand in the comments, from the rule the real component
follows (cited), not read off the code under test.
"""

from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.cli import main as kubenet_lab
from kubenet_lab.design import CHECKS, Requirements, check_design, iptables_rules_per_packet, load
from kubenet_lab.errors import InvalidValue, ScenarioError
from kubenet_lab.exercises import ch09
from kubenet_lab.network import ClusterNetwork, Rack

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def rack_set(count=4, prefix=26, tor_asn=65010):
    """``count`` racks 10.20.<i>.0/<prefix>, ToR i with AS tor_asn + i."""
    return tuple(Rack.from_object({"name": f"rack-{i}", "subnet": f"10.20.{i}.0/{prefix}",
                                   "tor": {"name": f"tor-{i}", "asn": tor_asn + i}}) for i in range(1, count + 1))


def good_network(**changes):
    settings = dict(node_mask=24, cni="calico-bgp", racks=rack_set(), bgp_design="per-rack-ebgp",
                    kube_proxy_mode="nftables", mtu=1500)
    settings.update(changes)
    return ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/20", **settings)


SIXTEEN = Requirements(nodes=16, pods_per_node=110, services=2500, pod_mtu=1500, allocation="10.0.0.0/8",
                       reserved={"campus": "10.0.0.0/12"}, reserved_asns=(65000,), max_sessions_per_router=10)


# -- a good design --------------------------------------------------------------------------------


def test_a_good_design_passes_every_check_in_order():
    report = check_design(good_network(), SIXTEEN)
    assert report.passed, str(report)
    assert tuple(c.name for c in report.checks) == CHECKS
    assert all(line.startswith("PASS  ") for line in str(report).splitlines()[1:])


def test_the_good_design_counts_sessions_and_routes_by_hand():
    report = check_design(good_network(), SIXTEEN)
    # 16 nodes in 4 racks, AS per rack: 16 node-ToR sessions + 4 ToR-spine sessions = 20.
    # A ToR holds its 4 nodes + the spine = 5; the spine its 4 ToRs = 4. The most: 5, at a ToR.
    sessions = report.check("bgp-sessions")
    assert "20 sessions" in sessions.evidence and "the most on one router: 5 (tor-" in sessions.evidence
    # Routers: 16 nodes + 4 ToRs + spine = 21. Each node's one /24 must reach the 20 others: 16 × 20 = 320
    # pairs. A node drops its 3 rack-mates' prefixes (their AS_PATH holds its own AS, RFC 4271 §9.1.2)
    # and reaches them through its ToR: 16 × 3 = 48 pairs by the default route.
    assert report.check("bgp-routes").evidence.startswith("320 of 320 ")
    assert "48 through the default route to the ToR" in report.check("bgp-routes").evidence
    # 253 pod IPs in a /24: 256 less network, broadcast and the gateway .1 (CNI host-local: rangeStart
    # .1, rangeEnd .254, the gateway skipped). 2^(24-16) = 256 podCIDRs (kube-controller-manager cidrset).
    assert "256 podCIDRs for 16 nodes, 253 pod IPs each" in report.check("pod-capacity").evidence
    # A /20 has 4096 addresses; kube-apiserver hands out all but network and broadcast: 4094.
    assert "4094 ClusterIPs for 2500 Services" in report.check("service-capacity").evidence
    # A /26 has 64 addresses: 62 hosts, one is the ToR's .1, 61 left for nodes.
    assert "rack-1 10.20.1.0/26: 61 for 4" in report.check("rack-capacity").evidence


def test_a_built_cluster_is_reviewed_as_it_is():
    cluster = Cluster.load(SCENARIOS / "two-rack-bgp.yaml")
    report = check_design(cluster)
    # Its own 4 nodes and 2 Services, kubelet's default 110 pods; Calico blocks of /26 = 64 addresses,
    # so ⌈110/64⌉ = 2 blocks a node; a /16 pool holds 2^(26-16) = 1024 blocks.
    assert "1024 blocks for 4 nodes × 2" in report.check("pod-capacity").evidence
    assert report.check("reachability").passed
    assert report.check("bgp-sessions").passed


# -- known faults -----------------------------------------------------------------------------------


def test_overlapping_ranges_are_all_listed():
    # build() would refuse this (it stops at the first overlap); the dataclass holds it as a draft.
    draft = ClusterNetwork(pod_cidrs=(ip_network("10.4.0.0/16"),), service_cidrs=(ip_network("10.4.128.0/20"),),
                           racks=rack_set(count=2, prefix=24))
    evidence = check_design(draft, SIXTEEN).check("address-plan").evidence
    # 10.4.128.0/20 lies inside 10.4.0.0/16; both lie inside the campus's 10.0.0.0/12 (10.0-10.15).
    assert "podCIDRs 10.4.0.0/16 overlaps serviceCIDRs 10.4.128.0/20" in evidence
    assert "podCIDRs 10.4.0.0/16 overlaps campus 10.0.0.0/12 (in use)" in evidence
    assert "serviceCIDRs 10.4.128.0/20 overlaps campus 10.0.0.0/12 (in use)" in evidence


def test_a_range_outside_the_allocation_and_a_pool_over_a_rack_fail():
    pools = ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/20",
                                 load_balancer_pools=[{"name": "edge", "addresses": ["10.20.1.240/28"]}])
    draft = replace(pools, pod_cidrs=(ip_network("172.16.0.0/16"),), racks=rack_set(count=1, prefix=24))
    evidence = check_design(draft, SIXTEEN).check("address-plan").evidence
    assert "podCIDRs 172.16.0.0/16 is outside the allocation 10.0.0.0/8" in evidence
    # 10.20.1.240/28 is the top 16 addresses of rack-1's 10.20.1.0/24.
    assert "rack rack-1 10.20.1.0/24 overlaps pool edge 10.20.1.240/28" in evidence


@pytest.mark.parametrize("pod_cidr, mask, fits", [
    ("10.64.0.0/16", 25, True),    # a /25: 128 − network − broadcast − gateway = 125 ≥ 110
    ("10.64.0.0/16", 26, False),   # a /26: 64 − 3 = 61 < 110
    ("10.64.0.0/21", 24, False),   # 2^(24−21) = 8 podCIDRs < 16 nodes
    ("10.64.0.0/20", 24, True),    # 2^(24−20) = 16 podCIDRs, one per node exactly
])
def test_pod_capacity_from_the_node_mask(pod_cidr, mask, fits):
    network = ClusterNetwork.build(pod_cidr, "10.65.0.0/20", node_mask=mask, racks=rack_set())
    assert check_design(network, SIXTEEN).check("pod-capacity").passed is fits


def test_a_service_cidr_too_small_fails():
    # A /21 holds 2048 − 2 = 2046 ClusterIPs, fewer than 2500.
    network = ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/21", node_mask=24, racks=rack_set())
    check = check_design(network, SIXTEEN).check("service-capacity")
    assert not check.passed and "2046 ClusterIPs for 2500 Services" in check.evidence


def test_a_rack_subnet_too_small_fails():
    # 16 nodes over 4 racks: 4 a rack. A /29 has 8 addresses: 6 hosts, less the ToR's .1: 5 ≥ 4 passes;
    # with 32 nodes (8 a rack) it fails.
    network = ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/20", node_mask=24, racks=rack_set(prefix=29))
    assert check_design(network, SIXTEEN).check("rack-capacity").passed
    bigger = Requirements(nodes=32, services=10)
    assert not check_design(network, bigger).check("rack-capacity").passed


def test_an_mtu_violation_is_caught_by_arithmetic_and_by_the_walk():
    # Calico VXLAN with the pods pinned at 1500 (veth_mtu) on a 1500-byte underlay: 1500 + 50 = 1550 > 1500
    # (VXLAN: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50, RFC 7348 §5).
    network = ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/20", node_mask=24, cni="calico-vxlan",
                                   racks=rack_set(), veth_mtu=1500)
    check = check_design(network, SIXTEEN).check("mtu")
    assert not check.passed
    assert "pod MTU 1500 + VXLAN overhead 50 = 1550 > underlay 1500" in check.evidence
    # The node drops the 1500-byte packet at its 1450-byte tunnel device and answers ICMP frag needed.
    assert "a 1500-byte packet" in check.evidence and "dropped" in check.evidence


def test_pods_smaller_than_the_workloads_need_fail():
    # Right-sized VXLAN: pods get 1500 − 50 = 1450, but the brief asks for 1500.
    network = ClusterNetwork.build("10.64.0.0/16", "10.65.0.0/20", node_mask=24, cni="calico-vxlan",
                                   racks=rack_set())
    check = check_design(network, SIXTEEN).check("mtu")
    assert not check.passed and "pods get 1450, the workloads need 1500" in check.evidence
    # On a 9000-byte underlay the same design passes: 8950 ≥ 1500.
    assert check_design(good_network(cni="calico-vxlan", bgp_design="none", mtu=9000), SIXTEEN).check("mtu").passed


def test_a_full_mesh_over_the_bound_fails():
    # 16 nodes fully meshed: 16 × 15 / 2 = 120 sessions, 15 on every node, over the bound of 10.
    report = check_design(good_network(bgp_design="full-mesh"), SIXTEEN)
    sessions = report.check("bgp-sessions")
    assert not sessions.passed
    assert "full-mesh: 120 sessions; the most on one router: 15" in sessions.evidence
    assert report.check("bgp-routes").passed   # it converges; it just costs too much


def test_route_reflectors_load_the_reflectors():
    # Two reflectors: r(n − r) + r(r − 1)/2 = 2 × 14 + 1 = 29 sessions; a reflector peers with the
    # other 15 nodes (RFC 4456 §4: every client and the other reflector).
    sessions = check_design(good_network(bgp_design="route-reflectors"), SIXTEEN).check("bgp-sessions")
    assert not sessions.passed and "route-reflectors: 29 sessions; the most on one router: 15" in sessions.evidence


def test_a_reserved_asn_fails_and_a_clash_with_the_nodes_fails():
    # ToR AS 65000 + i: tor-0 does not exist; make rack-1's ToR take the WAN's 65000.
    racks = (Rack.from_object({"name": "rack-1", "subnet": "10.20.1.0/26", "tor": {"name": "tor-1", "asn": 65000}}),
             *rack_set()[1:])
    plan = check_design(good_network(racks=racks), SIXTEEN).check("asn-plan")
    assert not plan.passed and "AS 65000 (tor-1) is reserved" in plan.evidence
    # Nodes of rack-1 take AS 64512 + 1 = 64513 (spec.bgp.asn + rack number); a ToR with the same AS
    # could not peer with them over eBGP.
    clash = (Rack.from_object({"name": "rack-1", "subnet": "10.20.1.0/26", "tor": {"name": "tor-1", "asn": 64513}}),
             *rack_set()[1:])
    report = check_design(good_network(racks=clash), SIXTEEN)
    assert not report.check("asn-plan").passed and "64513" in report.check("asn-plan").evidence
    assert not report.check("bgp-sessions").passed
    # AS 3356 is a public AS (outside 64512-65534 and 4200000000-4294967294, RFC 6996): someone else's.
    public = (Rack.from_object({"name": "rack-1", "subnet": "10.20.1.0/26", "tor": {"name": "tor-1", "asn": 3356}}),
              *rack_set()[1:])
    plan = check_design(good_network(racks=public), SIXTEEN).check("asn-plan")
    assert not plan.passed and "must be a private AS" in plan.evidence and "3356" in plan.evidence


def test_iptables_costs_one_rule_per_service():
    # KUBE-SERVICES holds one rule per Service port, searched in order (chapter 04 §10): a first packet
    # to the last Service is compared with 1000 more rules at 2000 Services than at 1000.
    network = good_network(kube_proxy_mode="iptables")
    assert iptables_rules_per_packet(network, 2000)[1] - iptables_rules_per_packet(network, 1000)[1] == 1000
    check = check_design(network, SIXTEEN).check("kube-proxy")
    assert not check.passed and "iptables, 2500 Services" in check.evidence
    small = Requirements(nodes=16, services=500)
    assert check_design(network, small).check("kube-proxy").passed
    assert check_design(good_network(kube_proxy_mode="ipvs"), SIXTEEN).check("kube-proxy").passed


def test_a_design_that_cannot_be_built_fails_the_cluster_checks():
    # A /24 pod CIDR at /24 node masks: one podCIDR, and the second node finds none.
    network = ClusterNetwork.build("10.64.0.0/24", "10.65.0.0/20", node_mask=24, cni="calico-bgp",
                                   racks=rack_set(), bgp_design="per-rack-ebgp")
    report = check_design(network, SIXTEEN)
    assert not report.check("reachability").passed
    assert report.check("reachability").evidence.startswith("the design cannot be built:")
    assert not report.check("pod-capacity").passed


# -- inputs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("nodes", 0), ("pods_per_node", "110"), ("services", -1),
                                          ("max_sessions_per_router", True), ("pod_mtu", 40)])
def test_bad_requirements_name_the_field(field, value):
    with pytest.raises(InvalidValue, match=f"'{field}'"):
        Requirements(**{"nodes": 4, field: value})


def test_bad_ranges_and_designs_are_refused():
    with pytest.raises(InvalidValue, match="'reserved.campus'"):
        Requirements(nodes=4, reserved={"campus": "10.0.0.0/33"})
    with pytest.raises(InvalidValue, match="'design'"):
        check_design("10.0.0.0/8", SIXTEEN)
    with pytest.raises(InvalidValue, match="'requirements'"):
        check_design(good_network())
    with pytest.raises(InvalidValue, match="'check'"):
        check_design(good_network(), SIXTEEN).check("bgp")
    with pytest.raises(ScenarioError, match="'spec.nodes'"):
        Requirements.from_object({"kind": "DesignRequirements", "spec": {}})


def test_the_capstone_scenario_is_the_chapters_brief_and_its_draft_fails():
    draft, requirements = load(SCENARIOS / "capstone-datacentre.yaml")
    assert requirements == ch09.REQUIREMENTS
    assert draft == ch09.design_network(ch09.DRAFT, name="capstone-draft")
    report = check_design(draft, requirements)
    # kubeadm's 10.96.0.0/12 inside the VPN pools' 10.96.0.0/11; flannel's 10.244.0.0/16 inside the
    # branches' 10.240.0.0/12 (10.240-10.255); a /26 per node holds 61 pods; a 64-node mesh puts
    # 63 sessions on a node; 2500 Services in iptables mode.
    assert report.failed == ("address-plan", "pod-capacity", "bgp-sessions", "kube-proxy")


def test_cli_design_check_exits_1_on_a_fail_and_0_on_a_pass(capsys, tmp_path):
    assert kubenet_lab(["design-check", str(SCENARIOS / "capstone-datacentre.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL  bgp-sessions" in out and "PASS  mtu" in out
    assert kubenet_lab(["design-check", str(SCENARIOS / "two-rack-bgp.yaml")]) == 0


def test_a_service_datapath_the_walk_does_not_model_is_noted_not_failed():
    # Cilium balances Services in eBPF, which the packet walk does not model: the review judges the
    # pod-to-pod walks and says why no ClusterIP was walked.
    network = good_network(cni="cilium-vxlan", bgp_design="none", mtu=9000)
    check = check_design(network, SIXTEEN).check("reachability")
    assert check.passed and "0 pod → ClusterIP); pod → ClusterIP not walked:" in check.evidence


def test_node_mask_table_by_hand():
    from kubenet_lab.design import node_mask_table

    table = node_mask_table("10.64.0.0/20", Requirements(nodes=8, pods_per_node=500), range(22, 25))
    # /20 at /22: 2^2 = 4 podCIDRs of 1024 − 3 = 1021 pods; at /23: 8 of 509; at /24: 16 of 253.
    assert table.rows == (("/22", "4", "1,021", "no"), ("/23", "8", "509", "yes"), ("/24", "16", "253", "no"))
