"""Chapter 08's helpers and checkers: the expected values come from the scenario files' layout
(which pod runs where, which node is in which rack) and the rules of the real components
(Calico's CrossSubnet, MetalLB's announcement rule, kube-proxy's KUBE-EXT chains), not from the
code under test."""

import ipaddress
from math import comb

import pytest

from kubenet_lab.errors import InvalidValue
from kubenet_lab.exercises import ch08

# The chapter's scenarios: rack-1 holds node-1 (192.168.1.11) and node-2 (192.168.1.12); web-1 runs
# on node-1, web-2 on node-3, the ingress controller on node-1; the VIP is the pool 192.168.100.0/28's
# first address after .0 (avoidBuggyIPs); the external client sits behind the spine on the last /31
# of the fabric range 172.31.255.0/24 (overlay/topology.py).
RACK_1 = {"192.168.1.11", "192.168.1.12"}
VIP = ipaddress.ip_network("192.168.100.1/32")
CLIENT = "172.31.255.255"


def tor_1_next_hops(cluster):
    fabric = cluster.topology().fabric
    entry = next(e for e in fabric.fib("tor-1") if e.prefix == VIP)
    return {str(via) for via, _ in entry.nexthops}, fabric


def test_scenario_cluster_changes_only_what_it_is_told():
    assert ch08.scenario_cluster(ch08.CROSS_SUBNET).network.pod_mtu == 1450       # VXLAN: 1500 - 50
    assert ch08.scenario_cluster(ch08.CROSS_SUBNET, overlay={"vethMTU": 1500}).network.pod_mtu == 1500
    assert ch08.scenario_cluster(ch08.CROSS_SUBNET).network.same_subnet_direct
    assert not ch08.scenario_cluster(ch08.CROSS_SUBNET, overlay={"crossSubnet": False}).network.same_subnet_direct
    local = ch08.scenario_cluster(ch08.CILIUM, service_spec={"externalTrafficPolicy": "Local"})
    assert local.service("web").external_traffic_policy == "Local"
    assert ch08.scenario_cluster(ch08.CILIUM).service("web").external_traffic_policy == "Cluster"


def test_crosssubnet_encapsulates_only_between_racks():
    c = ch08.scenario_cluster(ch08.CROSS_SUBNET)
    assert not ch08.encapsulated(c.trace("client", "web-1"))   # node-2 -> node-1, one rack
    assert ch08.encapsulated(c.trace("client", "web-2"))       # node-2 -> node-3, across racks
    assert not ch08.encapsulated(c.trace("api-1", "web-2"))    # node-4 -> node-3, one rack


def test_cilium_fabric_announces_vips_and_no_pod_prefix():
    cluster = ch08.scenario_cluster(ch08.CILIUM)
    hops, fabric = tor_1_next_hops(cluster)
    pods = cluster.network.pod_cidrs[0]
    for router in ("tor-1", "tor-2", "spine"):
        assert not any(entry.prefix.subnet_of(pods) for entry in fabric.fib(router))
    # externalTrafficPolicy: Cluster: every node announces (MetalLB usage docs), so both of rack-1's.
    assert hops == RACK_1


def test_local_policy_announces_only_where_the_pods_are():
    hops, _ = tor_1_next_hops(ch08.scenario_cluster(ch08.CILIUM, service_spec={"externalTrafficPolicy": "Local"}))
    assert hops == {"192.168.1.11"}                             # web-1's node; node-2 has no web pod


def test_external_connection_follows_kube_proxys_ext_chains():
    local = ch08.scenario_cluster(ch08.INGRESS_SCENARIO)
    ingress = local.service(ch08.INGRESS)
    pod_ip = str(local.pod("ingress-nginx-controller", "ingress-nginx").ip)
    # Local: KUBE-EXT jumps to KUBE-SVL without KUBE-MARK-MASQ; the source is kept.
    result, source = ch08.external_connection(local, "node-1", ingress, 443)
    assert (result.dnat, result.masquerade, str(source)) == (f"{pod_ip}:443", False, CLIENT)
    # Local, a node without an endpoint: KUBE-EXTERNAL-SERVICES "has no local endpoints" -j DROP.
    result, source = ch08.external_connection(local, "node-2", ingress, 443)
    assert (result.verdict, source) == ("DROP", None)
    assert "has no local endpoints" in result.verdict_rule.text
    # Cluster: KUBE-EXT marks external traffic for masquerade, even towards a local endpoint, and
    # MASQUERADE takes the address of the device the packet leaves by: eth0 on these routed nodes.
    as_cluster = ch08.scenario_cluster(ch08.INGRESS_SCENARIO, service=ingress.name,
                                       service_spec={"externalTrafficPolicy": "Cluster"})
    ingress = as_cluster.service(ch08.INGRESS)
    for node, address in (("node-1", "192.168.1.11"), ("node-2", "192.168.1.12"), ("node-3", "192.168.2.11")):
        result, source = ch08.external_connection(as_cluster, node, ingress, 443)
        assert (result.dnat, result.masquerade, str(source)) == (f"{pod_ip}:443", True, address)


def test_external_connection_needs_a_client_where_the_cluster_has_none():
    cluster = ch08.scenario_cluster(ch08.CROSS_SUBNET)   # no BGP design: no external client, no LoadBalancer
    with pytest.raises(InvalidValue, match="client"):
        ch08.external_connection(cluster, "node-1", cluster.service("web"), 80)


def test_checkers_accept_the_answers_reasoned_from_the_scenarios(capsys):
    ch08.check_crosssubnet_mtu({"web-1": True, "web-2": False, "api-1": False})   # eth0 1500, vxlan.calico 1450
    ch08.check_local_next_hops({"192.168.1.11"})
    ch08.check_encapsulated_pairs(comb(12, 2) - 3 * comb(4, 2))                    # pairs not inside one rack
    ingress_ip = str(ch08.scenario_cluster(ch08.INGRESS_SCENARIO).pod("ingress-nginx-controller", "ingress-nginx").ip)
    ch08.check_source_addresses({"ingress, Local, via node-1": CLIENT, "ingress, Cluster, via node-2": "192.168.1.12",
                                 "web-2, proxied by the ingress": ingress_ip})
    assert capsys.readouterr().out.count("PASS: 08.") == 4


@pytest.mark.parametrize("check, answer, hint", [
    (ch08.check_crosssubnet_mtu, {"web-1": True, "web-2": True, "api-1": True}, "vxlan.calico"),
    (ch08.check_crosssubnet_mtu, {"web-1": False, "web-2": False, "api-1": False}, "natively"),
    (ch08.check_crosssubnet_mtu, ["web-1"], "True/False"),
    (ch08.check_local_next_hops, RACK_1, "has no local endpoints"),
    (ch08.check_local_next_hops, {"192.168.1.11", "172.31.255.0"}, "lists every path"),
    (ch08.check_local_next_hops, "192.168.1.11", "set of addresses"),
    (ch08.check_encapsulated_pairs, comb(12, 2), "every pair"),
    (ch08.check_encapsulated_pairs, 2 * 48, "once"),
    (ch08.check_source_addresses, {"ingress, Local, via node-1": CLIENT, "ingress, Cluster, via node-2": CLIENT,
                                   "web-2, proxied by the ingress": "10.244.189.129"}, "masquerade"),
    (ch08.check_source_addresses, {"ingress, Local, via node-1": CLIENT, "ingress, Cluster, via node-2": "192.168.1.12",
                                   "web-2, proxied by the ingress": CLIENT}, "X-Forwarded-For"),
])
def test_checkers_reject_wrong_answers_with_their_hint(check, answer, hint):
    with pytest.raises(AssertionError, match=hint):
        check(answer)
