"""kube-proxy's IPVS mode against kube-proxy's own IPVS tests (pkg/proxy/ipvs/proxier_test.go).

Expected virtual servers, real servers, ipset entries and iptables jumps come
from the named upstream test functions. Their harness (``NewFakeProxier``):
node ``test-node``, no local-traffic detector (so ClusterIP masquerading uses
the ``src,dst`` form), ``nodePortAddresses`` unset (every node address), node
addresses only where a test adds them, and ``checkIptables`` asks for each
chain whether it holds a rule with that jump and that match set (in both
tables). Where upstream states no text (the ``ipvsadm -Ln`` listing), the
layout is ipvsadm's printf formats, reasoned out in each test.

Kernel checks (root, ``ipset`` and ``iptables-restore``): the ipset text is
loaded with ``ipset restore`` and the glue with ``iptables-restore --test`` in
a network namespace created for the test. ``ipvsadm`` itself needs the ip_vs
module, absent here (``/proc/net/ip_vs``), so that check skips with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.cli import main
from kubenet_lab.errors import InvalidValue
from kubenet_lab.kubeproxy import KubeProxy, ProxierSettings, ProxyState
from kubenet_lab.kubeproxy.ipvs import graceful_termination, ipset_restore, ipvsadm_list, set_name, sync_ipvs_rules
from kubeproxy_upstream import endpoint, endpoint_port, make_endpoint_slice, make_service, port

ROOT = Path(__file__).resolve().parent.parent
TEST_NODE = "test-node"


def settings(interface_addresses=(), nodeport_addresses=(), **extra) -> ProxierSettings:
    """``NewFakeProxier``: no local detector, the given addresses on the node's interfaces, mark 0x4000."""
    return ProxierSettings(TEST_NODE, interface_addresses=tuple(interface_addresses),
                           nodeport_addresses=tuple(nodeport_addresses), masquerade_mark="0x4000",
                           random_fully=False, **extra)


def sync(services, slices=(), family=4, hc=None, **kw):
    s = settings(**kw)
    return sync_ipvs_rules(ProxyState.build(services, slices, s, family, hc), s)


def servers(rules) -> dict:
    """{(proto, vip, port): {(rs ip, rs port, weight)}}, the shape of upstream's FakeIPVS."""
    return {vs.key: {(str(r.address), r.port, r.weight) for r in vs.real_servers} for vs in rules.virtual_servers}


def entries(rules, name: str) -> set[str]:
    return set(rules.ipset(name).entries)


def jumps(rules, chain: str) -> list[tuple[str, str]]:
    """(jump target, match set) of every rule of ``chain`` in both tables, as checkIptables reads them."""
    found = []
    for line in rules.iptables_restore.splitlines():
        words = line.split()
        if words[:2] == ["-A", chain]:
            match_set = words[words.index("--match-set") + 1] if "--match-set" in words else ""
            found.append((words[words.index("-j") + 1], match_set))
    return found


def svc1_nodeport(protocol="TCP", **kw):
    return make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, protocol, node_port=3001)], type="NodePort", **kw)


def svc1_slice(protocol="TCP", eps=(("10.180.0.1", None),)):
    return make_endpoint_slice("ns1", "svc1", 1, [endpoint(ip, node) for ip, node in eps],
                               [endpoint_port("p80", 80, protocol)])


# -- TestNodePortIPv4 --------------------------------------------------------------------------


def test_node_port_ipv4_one_service_two_endpoint_families():
    """TestNodePortIPv4 "1 service with node port, has 2 endpoints": the IPv6 endpoint is not the
    IPv4 proxier's; NodePort on the node's IPv4 address only."""
    slices = [svc1_slice(), make_endpoint_slice("ns1", "svc1", 2, [endpoint("1002:ab8::2:10")],
                                                [endpoint_port("p80", 80)], address_type="IPv6")]
    rules = sync([svc1_nodeport()], slices, interface_addresses=("100.101.102.103", "2001:db8::1:1"))
    assert servers(rules) == {
        ("TCP", "10.20.30.41", 80): {("10.180.0.1", 80, 1)},
        ("TCP", "100.101.102.103", 3001): {("10.180.0.1", 80, 1)},
    }


def test_node_port_ipv4_udp_service():
    """TestNodePortIPv4 "1 UDP service with node port, has endpoints" (nodePortAddresses 0.0.0.0/0)."""
    rules = sync([svc1_nodeport("UDP")], [svc1_slice("UDP")], interface_addresses=("100.101.102.103",),
                 nodeport_addresses=("0.0.0.0/0",))
    assert servers(rules) == {
        ("UDP", "10.20.30.41", 80): {("10.180.0.1", 80, 1)},
        ("UDP", "100.101.102.103", 3001): {("10.180.0.1", 80, 1)},
    }
    assert entries(rules, "KUBE-NODE-PORT-UDP") == {"3001"}
    node_port = jumps(rules, "KUBE-NODE-PORT")
    assert ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-UDP") in node_port
    assert ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT") in node_port
    services = jumps(rules, "KUBE-SERVICES")
    for expected in [("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-NODE-PORT", ""), ("ACCEPT", "KUBE-CLUSTER-IP")]:
        assert expected in services


def test_node_port_ipv4_no_endpoints():
    """TestNodePortIPv4 "service has node port but no endpoints": the virtual servers exist, empty."""
    rules = sync([svc1_nodeport()], [], interface_addresses=("100.101.102.103",))
    assert servers(rules) == {("TCP", "10.20.30.41", 80): set(), ("TCP", "100.101.102.103", 3001): set()}


def test_node_port_ipv4_sctp_on_several_node_ips():
    """TestNodePortIPv4 "node port service with protocol sctp on a node with multiple nodeIPs":
    SCTP NodePorts go in a hash:ip,port set, one entry per node address."""
    node_ips = ("100.101.102.103", "100.101.102.104", "100.101.102.105", "2001:db8::1:1", "2001:db8::1:2",
                "2001:db8::1:3")
    rules = sync([svc1_nodeport("SCTP")], [svc1_slice("SCTP")], interface_addresses=node_ips)
    expected_vips = {("SCTP", "10.20.30.41", 80)} | {("SCTP", ip, 3001) for ip in node_ips[:3]}
    assert servers(rules) == {vip: {("10.180.0.1", 80, 1)} for vip in expected_vips}
    assert entries(rules, "KUBE-NODE-PORT-SCTP-HASH") == {f"{ip},sctp:3001" for ip in node_ips[:3]}


def test_node_port_ipv4_sctp_external_traffic_policy_local():
    """TestNodePortIPv4 "node port service with protocol sctp and externalTrafficPolicy local":
    the ClusterIP keeps both endpoints, the NodePort only the local one."""
    rules = sync([svc1_nodeport("SCTP", external_traffic_policy="Local")],
                 [svc1_slice("SCTP", (("10.180.0.1", TEST_NODE), ("10.180.1.1", "otherHost")))],
                 interface_addresses=("100.101.102.103",))
    assert servers(rules) == {
        ("SCTP", "10.20.30.41", 80): {("10.180.0.1", 80, 1), ("10.180.1.1", 80, 1)},
        ("SCTP", "100.101.102.103", 3001): {("10.180.0.1", 80, 1)},
    }
    assert entries(rules, "KUBE-NODE-PORT-SCTP-HASH") == {"100.101.102.103,sctp:3001"}
    assert entries(rules, "KUBE-NODE-PORT-LOCAL-SCTP-HASH") == {"100.101.102.103,sctp:3001"}
    assert jumps(rules, "KUBE-NODE-PORT") == [("RETURN", "KUBE-NODE-PORT-LOCAL-SCTP-HASH"),
                                              ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-SCTP-HASH"),
                                              ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT")]


# -- IPv6, external IPs, load balancers, health checks -------------------------------------------


def test_ipv6_cluster_ip_without_endpoints():
    """TestIPv6Proxier "cluster IP service with no endpoints": one empty virtual
    server; the sets of an IPv6 proxier are named KUBE-6-... (ipset.go NewIPSet)."""
    rules = sync([make_service("ns1", "svc1", "2001::1", [port("p80", 80)])], [], family=6)
    assert servers(rules) == {("TCP", "2001::1", 80): set()}
    assert rules.ipset("KUBE-CLUSTER-IP").name == "KUBE-6-CLUSTER-IP"
    assert entries(rules, "KUBE-CLUSTER-IP") == {"2001::1,tcp:80"}


def test_external_ips_without_endpoints():
    """TestExternalIPsNoEndpoint: two virtual servers, the externalIP one without real servers."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)], external_ips=["50.60.70.81"])
    rules = sync([svc])
    assert servers(rules) == {("TCP", "10.20.30.41", 80): set(), ("TCP", "50.60.70.81", 80): set()}


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
def test_external_ips_filter_by_family(policy):
    """TestExternalIPs / TestOnlyLocalExternalIPs: externalIPs 50.60.70.81, 2012::51 and 127.0.0.1 give
    3 IPv4 virtual servers; with Local policy the externalIP ones hold only the local endpoint."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)], type="NodePort" if policy == "Local" else "ClusterIP",
                       external_ips=["50.60.70.81", "2012::51", "127.0.0.1"], external_traffic_policy=policy)
    rules = sync([svc], [svc1_slice(eps=(("10.180.0.1", TEST_NODE), ("10.180.1.1", "other-node")))])
    assert len(rules.virtual_servers) == 3
    external = servers(rules)[("TCP", "50.60.70.81", 80)]
    if policy == "Local":
        assert external == {("10.180.0.1", 80, 1)}
        assert entries(rules, "KUBE-EXTERNAL-IP-LOCAL") == {"50.60.70.81,tcp:80", "127.0.0.1,tcp:80"}
    else:
        assert external == {("10.180.0.1", 80, 1), ("10.180.1.1", 80, 1)}
        assert entries(rules, "KUBE-EXTERNAL-IP") == {"50.60.70.81,tcp:80", "127.0.0.1,tcp:80"}


def test_load_balancer():
    """TestLoadBalancer: no node addresses, so 2 virtual servers (ClusterIP, LB ingress); the LB set
    and the KUBE-SERVICES jumps. (Upstream's slice says UDP for a TCP port, so no real servers.)"""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"])
    rules = sync([svc], [svc1_slice("UDP")])
    assert set(servers(rules)) == {("TCP", "10.20.30.41", 80), ("TCP", "1.2.3.4", 80)}
    assert entries(rules, "KUBE-LOAD-BALANCER") == {"1.2.3.4,tcp:80"}
    services = jumps(rules, "KUBE-SERVICES")
    for expected in [("RETURN", ""), ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
                     ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"), ("KUBE-NODE-PORT", ""),
                     ("ACCEPT", "KUBE-CLUSTER-IP"), ("ACCEPT", "KUBE-LOAD-BALANCER")]:
        assert expected in services
    assert "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN" in rules.iptables_restore
    assert jumps(rules, "KUBE-LOAD-BALANCER") == [("KUBE-MARK-MASQ", "")]


def test_only_local_node_ports():
    """TestOnlyLocalNodePorts: nodePortAddresses 100.101.102.0/24; the NodePort holds the local endpoint;
    both NodePort sets hold 3001; KUBE-NODE-PORT returns Local ports before masquerading the rest."""
    svc = svc1_nodeport(external_traffic_policy="Local")
    rules = sync([svc], [svc1_slice(eps=(("10.180.0.1", TEST_NODE), ("10.180.1.1", "other-node")))],
                 interface_addresses=("100.101.102.103", "2001:db8::"), nodeport_addresses=("100.101.102.0/24",))
    assert len(rules.virtual_servers) == 2
    assert servers(rules)[("TCP", "100.101.102.103", 3001)] == {("10.180.0.1", 80, 1)}
    assert entries(rules, "KUBE-NODE-PORT-TCP") == entries(rules, "KUBE-NODE-PORT-LOCAL-TCP") == {"3001"}
    assert jumps(rules, "KUBE-NODE-PORT") == [("RETURN", "KUBE-NODE-PORT-LOCAL-TCP"),
                                              ("KUBE-MARK-MASQ", "KUBE-NODE-PORT-TCP"),
                                              ("ACCEPT", "KUBE-HEALTH-CHECK-NODE-PORT")]


def test_health_check_node_port():
    """TestHealthCheckNodePort: only eTP=Local LoadBalancers' health-check ports enter the set."""
    def lb(name, policy):
        return make_service("ns1", name, "10.20.30.41", [port("p80", 80, node_port=3000)], type="LoadBalancer",
                            external_traffic_policy=policy)
    services = [lb("valid-svc1", "Local"), lb("valid-svc2", "Local"), lb("invalid-svc3", "Cluster")]
    hc = {"ns1/valid-svc1": 30000, "ns1/valid-svc2": 30001, "ns1/invalid-svc3": 30002}
    rules = sync(services, [], hc=hc, interface_addresses=("100.101.102.103", "2001:db8::"),
                 nodeport_addresses=("100.101.102.0/24",))
    assert entries(rules, "KUBE-HEALTH-CHECK-NODE-PORT") == {"30000", "30001"}


def test_load_balancer_source_ranges():
    """TestLoadBalancerSourceRanges: the FW and SOURCE-CIDR sets and the firewall chains; the node's
    own IP is outside 10.0.0.0/8, so the node may not reach the VIP either (KUBE-IPVS-OUT-FILTER)."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"], load_balancer_source_ranges=["10.0.0.0/8"])
    rules = sync([svc], [svc1_slice()])
    assert servers(rules)[("TCP", "1.2.3.4", 80)] == {("10.180.0.1", 80, 1)}
    assert len(rules.virtual_servers) == 2
    assert entries(rules, "KUBE-LOAD-BALANCER") == entries(rules, "KUBE-LOAD-BALANCER-FW") == {"1.2.3.4,tcp:80"}
    assert entries(rules, "KUBE-LOAD-BALANCER-SOURCE-CIDR") == {"1.2.3.4,tcp:80,10.0.0.0/8"}
    assert jumps(rules, "KUBE-PROXY-FIREWALL") == [("KUBE-SOURCE-RANGES-FIREWALL", "KUBE-LOAD-BALANCER-FW")]
    assert jumps(rules, "KUBE-SOURCE-RANGES-FIREWALL") == [("RETURN", "KUBE-LOAD-BALANCER-SOURCE-CIDR"), ("DROP", "")]
    # proxier.go: lbNoNodeAccessIPPortProtocolEntries, "for IPVS src and dst both would be lbIP"
    assert "-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP" in \
        rules.iptables_restore


def test_load_balancer_source_range_holding_the_node_ip_lets_the_node_in():
    """proxier.go: when a source range holds the node IP, the VIP itself enters SOURCE-IP (src = LB IP)."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"], load_balancer_source_ranges=["192.168.0.0/16"])
    rules = sync([svc], [svc1_slice()], node_ips=("192.168.0.2",))
    assert entries(rules, "KUBE-LOAD-BALANCER-SOURCE-IP") == {"1.2.3.4,tcp:80,1.2.3.4"}
    assert "KUBE-IPVS-OUT-FILTER -s" not in rules.iptables_restore


def test_accept_ipvs_traffic_order():
    """TestAcceptIPVSTraffic: the KUBE-SERVICES rules, here in the order writeIptablesRules emits them."""
    ingress = make_service("ns1", "svc2", "10.20.30.41", [port("p80", 80, node_port=80)], type="LoadBalancer",
                           load_balancer_ips=["1.2.3.4"])
    services = [make_service("ns1", "svc1", "10.20.30.40", [port("p80", 80, node_port=80)],
                             external_ips=["5.6.7.8"]),
                ingress,
                make_service("ns1", "svc3", "10.20.30.42", [port("p80", 80, node_port=80)], type="NodePort")]
    rules = sync(services)
    assert jumps(rules, "KUBE-SERVICES") == [
        ("RETURN", ""),
        ("KUBE-LOAD-BALANCER", "KUBE-LOAD-BALANCER"),
        ("KUBE-MARK-MASQ", "KUBE-CLUSTER-IP"),
        ("KUBE-MARK-MASQ", "KUBE-EXTERNAL-IP"),
        ("ACCEPT", "KUBE-EXTERNAL-IP"),  # with externalTrafficOnlyArgs
        ("ACCEPT", "KUBE-EXTERNAL-IP"),  # with dstLocalOnlyArgs
        ("KUBE-NODE-PORT", ""),
        ("ACCEPT", "KUBE-CLUSTER-IP"),
        ("ACCEPT", "KUBE-LOAD-BALANCER"),
    ]


def test_only_local_load_balancing():
    """TestOnlyLocalLoadBalancing: the LB VIP holds the local endpoint only; LB and LB-LOCAL sets;
    KUBE-LOAD-BALANCER returns Local VIPs before masquerading the rest."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"], external_traffic_policy="Local")
    rules = sync([svc], [svc1_slice(eps=(("10.180.0.1", TEST_NODE), ("10.180.1.1", "other-node")))])
    assert len(rules.virtual_servers) == 2
    assert servers(rules)[("TCP", "1.2.3.4", 80)] == {("10.180.0.1", 80, 1)}
    assert entries(rules, "KUBE-LOAD-BALANCER") == entries(rules, "KUBE-LOAD-BALANCER-LOCAL") == {"1.2.3.4,tcp:80"}
    assert jumps(rules, "KUBE-LOAD-BALANCER") == [("RETURN", "KUBE-LOAD-BALANCER-LOCAL"), ("KUBE-MARK-MASQ", "")]


def test_session_affinity_makes_every_virtual_server_persistent():
    """TestSessionAffinity: ClusterIP, externalIP and NodePort virtual servers all get timeout 10800."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, node_port=3001)], type="NodePort",
                       external_ips=["50.60.70.81"], session_affinity_timeout=10800)
    rules = sync([svc], interface_addresses=("100.101.102.103",))
    assert len(rules.virtual_servers) == 3
    assert {vs.persistent for vs in rules.virtual_servers} == {10800}


@pytest.mark.parametrize("random_fully", [False, True])
def test_masquerade_rule(random_fully):
    """TestMasqueradeRule: KUBE-POSTROUTING masquerades, with --random-fully iff iptables has it."""
    s = ProxierSettings(TEST_NODE, random_fully=random_fully)
    glue = sync_ipvs_rules(ProxyState.build([], [], s, 4), s).iptables_restore
    masquerade = [line for line in glue.splitlines() if line.startswith("-A KUBE-POSTROUTING") and "MASQUERADE" in line]
    assert len(masquerade) == 1 and masquerade[0].endswith("--random-fully") == random_fully


# -- behaviour read from proxier.go ------------------------------------------------------------


def test_local_policy_without_local_endpoints_falls_back_to_the_cluster_pool():
    """syncEndpoint (kubernetes PR 97081): eTP=Local and no endpoint on this node -> every endpoint;
    iTP=Local ClusterIP with none local -> no real server (the Cluster pool is not used then)."""
    ext = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, node_port=3001)], type="NodePort",
                       external_traffic_policy="Local")
    remote = svc1_slice(eps=(("10.180.1.1", "other-node"),))
    rules = sync([ext], [remote], interface_addresses=("100.101.102.103",))
    assert servers(rules)[("TCP", "100.101.102.103", 3001)] == {("10.180.1.1", 80, 1)}
    internal = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)], internal_traffic_policy="Local")
    assert servers(sync([internal], [remote])) == {("TCP", "10.20.30.41", 80): set()}


def test_terminating_endpoints_only_when_none_is_ready():
    """CategorizeEndpoints via syncEndpoint: serving+terminating endpoints are a fallback pool."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)])
    mixed = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1"),
                                                   endpoint("10.180.0.2", ready=False, terminating=True)],
                                [endpoint_port("p80", 80)])
    draining = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.2", ready=False, terminating=True),
                                                      endpoint("10.180.0.3", ready=False, serving=False,
                                                               terminating=True)],
                                   [endpoint_port("p80", 80)])
    assert servers(sync([svc], [mixed])) == {("TCP", "10.20.30.41", 80): {("10.180.0.1", 80, 1)}}
    assert servers(sync([svc], [draining])) == {("TCP", "10.20.30.41", 80): {("10.180.0.2", 80, 1)}}


def test_graceful_termination_keeps_departed_tcp_real_servers_at_weight_zero():
    """graceful_termination.go: a removed TCP real server stays with weight 0; UDP ones go at once."""
    services = [make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)]),
                make_service("ns1", "dns", "10.20.30.10", [port("dns", 53, "UDP")])]
    two = [svc1_slice(eps=(("10.180.0.1", None), ("10.180.0.2", None))),
           make_endpoint_slice("ns1", "dns", 1, [endpoint("10.180.0.8"), endpoint("10.180.0.9")],
                               [endpoint_port("dns", 53, "UDP")])]
    one = [svc1_slice(), make_endpoint_slice("ns1", "dns", 1, [endpoint("10.180.0.8")],
                                             [endpoint_port("dns", 53, "UDP")])]
    after = graceful_termination(sync(services, two), sync(services, one))
    assert servers(after) == {("TCP", "10.20.30.41", 80): {("10.180.0.1", 80, 1), ("10.180.0.2", 80, 0)},
                              ("UDP", "10.20.30.10", 53): {("10.180.0.8", 53, 1)}}


def test_kube_ipvs0_binds_cluster_ips_and_foreign_external_ips_only():
    """syncService(bindAddr): ClusterIPs always; externalIPs/LB IPs unless already a node address;
    node addresses for NodePorts never. KUBE-IPVS-IPS holds exactly the bound addresses."""
    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80, node_port=3001)], type="NodePort",
                       external_ips=["50.60.70.81", "100.101.102.103"])
    rules = sync([svc], interface_addresses=("127.0.0.1", "100.101.102.103"))
    assert [str(ip) for ip in rules.bound_addresses] == ["10.20.30.41", "50.60.70.81"]
    assert entries(rules, "KUBE-IPVS-IPS") == {"10.20.30.41", "50.60.70.81"}
    # the NodePort listens on the node address, never on loopback (GetAllLocalAddressesExcept drops it)
    assert ("TCP", "127.0.0.1", 3001) not in servers(rules)


def test_hairpin_set_holds_local_endpoints_only():
    """KUBE-LOOP-BACK: ip,proto:port,ip of every endpoint on this node (masqueraded when a pod
    reaches itself through its own Service)."""
    rules = sync([svc1_nodeport()], [svc1_slice(eps=(("10.180.0.1", TEST_NODE), ("10.180.1.1", "x")))])
    assert entries(rules, "KUBE-LOOP-BACK") == {"10.180.0.1,tcp:80,10.180.0.1"}


def test_ipvsadm_listing_layout():
    """ipvsadm.c print_service_entry: "%s  %s" protocol and VIP, " %s" scheduler, " persistent %u";
    real servers "  -> %-28s %-7s %-6d %-10u %-10u"; services sorted by family, protocol, address, port."""
    web = make_service("ns1", "web", "10.20.30.41", [port("http", 80)], session_affinity_timeout=10800)
    dns = make_service("ns1", "dns", "10.20.30.10", [port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP")])
    slices = [make_endpoint_slice("ns1", "web", 1, [endpoint("10.180.0.12"), endpoint("10.180.0.2")],
                                  [endpoint_port("http", 8080)]),
              make_endpoint_slice("ns1", "dns", 1, [endpoint("10.180.0.5")],
                                  [endpoint_port("dns", 53, "UDP"), endpoint_port("dns-tcp", 53, "TCP")])]
    listing = ipvsadm_list(sync([web, dns], slices).virtual_servers)
    assert listing.splitlines() == [
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "TCP  10.20.30.10:53 rr",
        "  -> 10.180.0.5:53                Masq    1      0          0         ",
        "TCP  10.20.30.41:80 rr persistent 10800",
        "  -> 10.180.0.2:8080              Masq    1      0          0         ",
        "  -> 10.180.0.12:8080             Masq    1      0          0         ",
        "UDP  10.20.30.10:53 rr",
        "  -> 10.180.0.5:53                Masq    1      0          0         ",
    ]


def test_ipv6_listing_brackets_addresses():
    """ipvsadm prints IPv6 addresses as [addr]:port and lists IPv4 services first (AF_INET < AF_INET6)."""
    c = Cluster.load(ROOT / "scenarios/dual-stack.yaml")
    lines = KubeProxy(c, "node-1").ipvsadm_ln().splitlines()
    services = [line for line in lines[3:] if not line.startswith("  ->")]
    first_v6 = next(i for i, line in enumerate(services) if "[" in line)
    assert all("[" not in line for line in services[:first_v6]) and all("[" in line for line in services[first_v6:])
    assert any(line.startswith("  -> [fd00:") for line in lines)


def test_set_names_for_ipv6_are_prefixed_and_cut_at_31_characters():
    assert set_name("KUBE-CLUSTER-IP", 6) == "KUBE-6-CLUSTER-IP"
    assert set_name("KUBE-NODE-PORT-LOCAL-SCTP-HASH", 6) == "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
    assert set_name("KUBE-CLUSTER-IP", 4) == "KUBE-CLUSTER-IP"


def test_unknown_scheduler_is_rejected():
    with pytest.raises(InvalidValue, match="scheduler"):
        sync_ipvs_rules(ProxyState.build([], [], settings(), 4), settings(), scheduler="banana")


def test_cli_prints_the_four_sections(capsys):
    assert main(["proxy-rules", str(ROOT / "scenarios/three-node-vxlan.yaml"), "--node", "node-1",
                 "--proxy-mode", "ipvs"]) == 0
    out = capsys.readouterr().out
    for heading in ("# ipvsadm -Ln", "# addresses on kube-ipvs0 (IPv4)", "# ipset restore input (IPv4)",
                    "# iptables-restore input (IPv4)"):
        assert heading + "\n" in out
    assert "TCP  192.168.0.11:30080 rr" in out  # the scenario's NodePort on node-1's address


# -- the kernel --------------------------------------------------------------------------------


def _kernel_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    absent = [t for t in ("ip", "ipset", "iptables-restore") if shutil.which(t) is None]
    return f"needs {', '.join(absent)} (apt packages iproute2, ipset, iptables)" if absent else None


def _run(args: list[str], text: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(args, input=text, capture_output=True, text=True, timeout=60)


@pytest.fixture
def netns():
    name = f"knl-ipvs-{os.getpid()}-{secrets.token_hex(3)}"
    created = _run(["ip", "netns", "add", name])
    assert created.returncode == 0, created.stderr
    try:
        yield name
    finally:
        _run(["ip", "netns", "delete", name])


@pytest.mark.skipif(_kernel_missing() is not None, reason=_kernel_missing() or "")
@pytest.mark.parametrize("scenario", ["three-node-vxlan.yaml", "dual-stack.yaml"])
def test_kernel_loads_the_ipsets_and_accepts_the_glue(netns, scenario):
    """ipset restore takes every set; ipset save lists the same entries; iptables-restore loads the
    glue with kube-proxy's flags once the sets exist (-m set needs them), and iptables-save lists
    every rule back."""
    proxy = KubeProxy(Cluster.load(ROOT / "scenarios" / scenario), "node-1")
    for family in proxy.cluster.network.families:
        rules = proxy.ipvs_rules(family)
        loaded = _run(["ip", "netns", "exec", netns, "ipset", "restore"], ipset_restore(rules.ipsets))
        assert loaded.returncode == 0, loaded.stderr
        saved = _run(["ip", "netns", "exec", netns, "ipset", "save"]).stdout
        for s in rules.ipsets:
            assert {f"add {s.name} {e}" for e in s.entries} <= set(saved.splitlines())
        tool = "iptables" if family == 4 else "ip6tables"
        loaded = _run(["ip", "netns", "exec", netns, f"{tool}-restore", "--noflush", "--counters"], rules.iptables_restore)
        assert loaded.returncode == 0, loaded.stderr
        saved_rules = _run(["ip", "netns", "exec", netns, f"{tool}-save"]).stdout
        written = [line for line in rules.iptables_restore.splitlines() if line.startswith("-A ")]
        assert len([line for line in saved_rules.splitlines() if line.startswith("-A KUBE-")]) == len(written)


@pytest.mark.skipif(_kernel_missing() is not None, reason=_kernel_missing() or "")
def test_kernel_accepts_the_external_ip_and_source_range_glue(netns):
    """The rarer matches: -m physdev and addrtype (externalIPs), hash:ip,port,net (source ranges) and
    -m ipvs (KUBE-IPVS-OUT-FILTER), with TestAcceptIPVSTraffic's and TestLoadBalancerSourceRanges' inputs.
    --test only: -m ipvs needs the ip_vs module to load for real."""
    services = [make_service("ns1", "svc1", "10.20.30.40", [port("p80", 80, node_port=80)], external_ips=["5.6.7.8"]),
                make_service("ns1", "svc2", "10.20.30.41", [port("p80", 80)], type="LoadBalancer",
                             load_balancer_ips=["1.2.3.4"], load_balancer_source_ranges=["10.0.0.0/8"])]
    rules = sync(services, [svc1_slice()], interface_addresses=("100.101.102.103",))
    assert "-m physdev" in rules.iptables_restore and "-m ipvs" in rules.iptables_restore
    loaded = _run(["ip", "netns", "exec", netns, "ipset", "restore"], ipset_restore(rules.ipsets))
    assert loaded.returncode == 0, loaded.stderr
    tested = _run(["ip", "netns", "exec", netns, "iptables-restore", "--noflush", "--test"], rules.iptables_restore)
    assert tested.returncode == 0, tested.stderr


@pytest.mark.skipif(not Path("/proc/net/ip_vs").exists(), reason="needs the ip_vs kernel module (/proc/net/ip_vs absent)")
def test_kernel_ipvsadm_restore(netns):  # pragma: no cover - only where IPVS exists
    """ipvsadm -R takes the virtual servers; ipvsadm -Ln prints the same listing."""
    if shutil.which("ipvsadm") is None:
        pytest.skip("needs ipvsadm (apt package ipvsadm)")
    proxy = KubeProxy(Cluster.load(ROOT / "scenarios/three-node-vxlan.yaml"), "node-1")
    rules = proxy.ipvs_rules(4)
    commands = []
    for vs in rules.virtual_servers:
        flag = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[vs.protocol]
        commands.append(f"-A {flag} {vs.address}:{vs.port} -s {vs.scheduler}")
        commands += [f"-a {flag} {vs.address}:{vs.port} -r {r} -m -w {r.weight}" for r in vs.real_servers]
    assert _run(["ip", "netns", "exec", netns, "ipvsadm", "-R"], "\n".join(commands) + "\n").returncode == 0
    listed = _run(["ip", "netns", "exec", netns, "ipvsadm", "-Ln"]).stdout
    assert listed.splitlines()[3:] == proxy.ipvsadm_ln().splitlines()[3:]


# -- the first-packet walk ----------------------------------------------------------------------


def test_walk_nodeport_from_outside_is_marked_and_masqueraded():
    """KUBE-SERVICES -> (dst is local) KUBE-NODE-PORT -> KUBE-NODE-PORT-TCP holds 3001 -> KUBE-MARK-MASQ;
    IPVS picks the real server; KUBE-POSTROUTING sees the mark, clears it and masquerades."""
    from kubenet_lab.kubeproxy.ipvs import walk_first_packet

    rules = sync([svc1_nodeport()], [svc1_slice()], interface_addresses=("100.101.102.103",))
    walk = walk_first_packet(rules, "203.0.113.2", "100.101.102.103", "tcp", 3001, local=["100.101.102.103"])
    assert walk.verdict == "ACCEPT" and walk.masquerade and str(walk.real_server) == "10.180.0.1:80"
    assert walk.virtual_server.kind == "node port"
    assert ("nat", "KUBE-MARK-MASQ", "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000") in walk.steps


def test_walk_from_a_pod_to_a_cluster_ip_is_not_masqueraded_and_empty_pools_drop():
    """With --cluster-cidr the ClusterIP MASQ rule skips pod sources; a virtual server without real
    servers has nowhere to send the packet."""
    from kubenet_lab.kubeproxy.ipvs import walk_first_packet

    svc = make_service("ns1", "svc1", "10.20.30.41", [port("p80", 80)])
    rules = sync([svc], [svc1_slice()], cluster_cidrs=("10.0.0.0/8",))
    walk = walk_first_packet(rules, "10.0.0.5", "10.20.30.41", "tcp", 80)
    assert walk.verdict == "ACCEPT" and not walk.masquerade and str(walk.real_server) == "10.180.0.1:80"
    empty = walk_first_packet(sync([svc], [], cluster_cidrs=("10.0.0.0/8",)), "10.0.0.5", "10.20.30.41", "tcp", 80)
    assert empty.verdict == "DROP" and empty.real_server is None


def test_ipvsadm_compares_addresses_as_wrapped_32_bit_differences():
    """libipvs ipvs_cmp_services: r = ntohl(a) - ntohl(b) stored in an int. 192.168.0.11 - 10.20.30.41 =
    0xC0A8000B - 0x0A141E29 = 0xB693E1E2, negative as a 32-bit int, so the node's NodePort virtual
    server is listed before the ClusterIP one although its address is numerically larger."""
    rules = sync([svc1_nodeport()], [svc1_slice()], interface_addresses=("192.168.0.11",))
    services = [line for line in ipvsadm_list(rules.virtual_servers).splitlines()[3:] if not line.startswith("  ")]
    assert services == ["TCP  192.168.0.11:3001 rr", "TCP  10.20.30.41:80 rr"]


def test_nodeports_listen_on_every_local_address_of_a_cluster_node():
    """GetAllLocalAddressesExcept(kube-ipvs0): on a flannel node that is eth0, cni0 and flannel.1;
    loopback is left out (TestGetNodeIPs case 0)."""
    c = Cluster.load(ROOT / "scenarios/three-node-vxlan.yaml")
    addresses = {a.split("/")[0] for link in c.host("node-1").links for a in link.addresses}
    rules = KubeProxy(c, "node-1").ipvs_rules()
    nodeport = {str(vs.address) for vs in rules.virtual_servers if vs.kind == "node port"}
    assert nodeport == addresses and {"192.168.0.11", "10.244.0.1"} <= nodeport
