"""The nftables walk: kube-proxy's own packet-flow expectations, and the iptables walk's answers.

Two independent sources of expected values:

* kube-proxy's nftables ``proxier_test.go`` (kubernetes/kubernetes
  ``pkg/proxy/nftables/proxier_test.go`` at commit
  ``030880a5dc5449403c6d1f0aa146a7dc21d6c6dc``, the same v1.34-line file the generator is
  checked against in ``test_kubeproxy_nftables.py``): every ``runPacketFlowTests`` case of
  that file (TestNoEndpointsReject, TestClusterIPGeneral, TestLoadBalancer, TestNodePorts,
  TestExternalTrafficPolicyLocal/Cluster, TestInternalTrafficPolicy,
  TestTerminatingEndpointsTrafficPolicyLocal/Cluster, TestInternalExternalMasquerade) is
  ported below with its inputs and expected ``output``/``masq`` copied verbatim, and our
  walk must give them in ``tracePacket``'s terms (DNAT destinations of every branch in
  ``numgen`` order, ``DROP``/``REJECT``, or ``""``; masquerade if any branch is marked).
  Unlike upstream's tracer, which reads rules with regexps and skips filter-input, the
  walk runs every base chain the kernel would, so node-originated packets take the
  output hooks;
* the iptables walk over kube-proxy's iptables ruleset for the same objects: the two modes
  implement one Service model, so for flows both modes handle alike (ClusterIPs, NodePorts
  on the node's primary IP, externalIPs, LoadBalancer IPs) the DNAT targets, the masquerade
  decision per endpoint and the REJECT/DROP verdicts must agree, and each endpoint's
  probability must be exactly ``1/n`` (nftables) and within ``1e-10`` of it (iptables,
  whose probabilities are printed with ten decimals).
"""

from __future__ import annotations

import ipaddress
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubenet_lab import Cluster
from kubenet_lab.datapath.trace import kube_proxy_rules
from kubenet_lab.errors import InvalidValue
from kubenet_lab.kubeproxy import iptables_restore, nft_ruleset
from kubenet_lab.kubeproxy.netfilter import Flow, Ruleset
from kubenet_lab.kubeproxy.nftwalk import NftRuleset, numgen_kernel_probability
from kubeproxy_upstream import (
    TEST_EXTERNAL_CLIENT,
    TEST_EXTERNAL_CLIENT_BLOCKED,
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_NODE_IPS,
    TEST_NODE_IPV6,
    TEST_NODE_IPV6_ALT,
    TEST_NODE_NAME,
    endpoint,
    endpoint_port,
    fake_proxier_settings,
    make_endpoint_slice,
    make_service,
    port,
)
from test_kubeproxy_nftables import SERVICE_CIDRS, sync

ip = ipaddress.ip_address


def nft_walk(rules: str, source: str, dest: str, dport: int, protocol: str = "tcp", node_ips=TEST_NODE_IPS, **kw):
    """A packet from ``source``: sent by the node itself when the source is one of its addresses."""
    flow = Flow(source, dest, protocol, dport, locally_generated=source in node_ips or ip(source).is_loopback,
                **kw.pop("flow", {}))
    return NftRuleset.parse(rules).walk(flow, local=node_ips, **kw)


def upstream_form(result) -> tuple[str, bool]:
    """Our result in ``tracePacket``'s terms (helpers_test.go): DNAT destinations of all branches in order,
    else DROP or REJECT, else ""; and whether any branch was marked for masquerade."""
    dnats = list(dict.fromkeys(b.dnat for b in result.branches if b.dnat))
    output = result.verdict if result.verdict in ("DROP", "REJECT") else ", ".join(dnats)
    return output, any(b.masquerade for b in result.branches)


def run_packet_flow_tests(rules: str, flows, node_ips=TEST_NODE_IPS) -> None:
    """``runPacketFlowTests``: (name, source, dest, dport, output, masq[, protocol]) per case."""
    errors = []
    for name, source, dest, dport, output, masq, *protocol in flows:
        got = upstream_form(nft_walk(rules, source, dest, dport, (protocol or ["TCP"])[0].lower(), node_ips))
        if got != (output, masq):
            errors.append(f"{name}: expected {(output, masq)}, got {got}")
    assert not errors, "\n".join(errors)


# -- kube-proxy's packet-flow tests (pkg/proxy/nftables/proxier_test.go) ---------------------------


def test_no_endpoints_reject():
    # TestNoEndpointsReject
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_ips=["192.168.99.11"], load_balancer_ips=["1.2.3.4"])
    rules = sync([svc])
    run_packet_flow_tests(rules, [
        ("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.41", 80, "REJECT", False),
        ("external to external IP with no endpoints", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT", False),
        ("pod to NodePort with no endpoints", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT", False),
        ("external to NodePort with no endpoints", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "REJECT", False),
        ("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "1.2.3.4", 80, "REJECT", False),
        ("external to LoadBalancer IP with no endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT", False),
    ])


def test_cluster_ip_general():
    # TestClusterIPGeneral
    svc1 = make_service("ns1", "svc1", "172.30.0.41", [port("http", 80)])
    svc2 = make_service("ns2", "svc2", "172.30.0.42", [port("http", 80), port("https", 443), port("dns-udp", 53, "UDP"),
                                                       port("dns-tcp", 53), port("dns-sctp", 53, "SCTP")])
    slices = [
        make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1", TEST_NODE_NAME)], [endpoint_port("http", 80)]),
        make_endpoint_slice("ns2", "svc2", 1, [endpoint("10.180.0.1", TEST_NODE_NAME), endpoint("10.180.2.1", "node2")],
                            [endpoint_port("http", 80), endpoint_port("https", 8443),
                             endpoint_port("dns-udp", 53, "UDP"), endpoint_port("dns-tcp", 5353),
                             endpoint_port("dns-sctp", 53, "SCTP")]),
    ]
    run_packet_flow_tests(sync([svc1, svc2], slices), [
        ("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),
        ("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),
        ("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, "10.180.0.1:80, 10.180.2.1:80", False),
        ("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, "10.180.0.1:8443, 10.180.2.1:8443", False),
        ("clusterIP with TCP, UDP, and SCTP on same port (TCP)", "10.180.0.2", "172.30.0.42", 53,
         "10.180.0.1:5353, 10.180.2.1:5353", False, "TCP"),
        ("clusterIP with TCP, UDP, and SCTP on same port (UDP)", "10.180.0.2", "172.30.0.42", 53,
         "10.180.0.1:53, 10.180.2.1:53", False, "UDP"),
        ("clusterIP with TCP, UDP, and SCTP on same port (SCTP)", "10.180.0.2", "172.30.0.42", 53,
         "10.180.0.1:53, 10.180.2.1:53", False, "SCTP"),
        ("TCP-only port does not match UDP traffic", "10.180.0.2", "172.30.0.42", 80, "REJECT", False, "UDP"),
        ("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, "REJECT", False),
        ("packet to unallocated cluster ip", "10.180.0.2", "172.30.0.50", 80, "DROP", False),
    ])


def test_load_balancer():
    # TestLoadBalancer
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4", "5.6.7.8"],
                       load_balancer_source_ranges=["192.168.0.0/24", " 203.0.113.0/25"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1")], [endpoint_port("p80", 80)])
    ep = "10.180.0.1:80"
    run_packet_flow_tests(sync([svc], [eps]), [
        ("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, ep, False),
        ("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, ep, True),
        ("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP, 3001, ep, True),
        ("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, ep, True),
        ("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, ep, True),
        ("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP", False),
        ("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP", False),
        ("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "1.2.3.4", 80, "DROP", False),
        ("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "5.6.7.8", 80, "DROP", False),
        ("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "1.2.3.4", 80, ep, True),
        ("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "5.6.7.8", 80, ep, True),
        ("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, ep, True),
        ("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, ep, True),
    ])


NODE_PORT_CASES = {  # TestNodePorts: family, nodePortAddresses (None: NewFakeProxier's), allowAltNodeIP
    "ipv4": (4, None, False),
    "ipv4, multiple nodeport-addresses": (4, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], True),
    "ipv6": (6, None, False),
    "ipv6, multiple nodeport-addresses": (6, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64",
                                              "2001:db8:1::2/128"], True),
}


@pytest.mark.parametrize("name", list(NODE_PORT_CASES))
def test_node_ports(name):
    # TestNodePorts
    family, nodeport_addresses, allow_alt = NODE_PORT_CASES[name]
    if family == 4:
        svc_ip, ep1, ep2, node, pod, client, alt = ("172.30.0.41", "10.180.0.1", "10.180.2.1", TEST_NODE_IP,
                                                    "10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_NODE_IP_ALT)
        output = f"{ep1}:80, {ep2}:80"
    else:
        svc_ip, ep1, ep2, node, pod, client, alt = ("fd00:172:30::41", "fd00:10:180::1", "fd00:10:180::2:1",
                                                    TEST_NODE_IPV6, "fd00:10::2", "2600:5200::1", TEST_NODE_IPV6_ALT)
        output = f"[{ep1}]:80, [{ep2}]:80"
    svc = make_service("ns1", "svc1", svc_ip, [port("p80", 80, node_port=3001)], type="NodePort")
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(ep1), endpoint(ep2, TEST_NODE_NAME)],
                              [endpoint_port("p80", 80)], address_type=f"IPv{family}")
    if nodeport_addresses is None:
        rules = sync([svc], [eps], family)
    else:
        settings = fake_proxier_settings(node_ips=(TEST_NODE_IP, TEST_NODE_IPV6), nodeport_addresses=nodeport_addresses)
        rules = nft_ruleset([svc], [eps], settings, family, service_cidrs=SERVICE_CIDRS[family])
    run_packet_flow_tests(rules, [
        ("pod to cluster IP", pod, svc_ip, 80, output, False),
        ("external to nodePort", client, node, 3001, output, True),
        ("node to nodePort", node, node, 3001, output, True),
        ("external to nodePort on secondary IP", client, alt, 3001, output, True) if allow_alt else
        ("secondary nodeIP ignores NodePorts", client, alt, 3001, "", False),
    ])


def external_policy_rules(policy: str) -> str:
    # TestExternalTrafficPolicyLocal / TestExternalTrafficPolicyCluster: the same Service but for the policy
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_traffic_policy=policy, external_ips=["192.168.99.11"], load_balancer_ips=["1.2.3.4"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1"), endpoint("10.180.2.1", TEST_NODE_NAME)],
                              [endpoint_port("p80", 80)])
    return sync([svc], [eps])


BOTH, LOCAL = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"


def test_external_traffic_policy_local():
    # TestExternalTrafficPolicyLocal
    run_packet_flow_tests(external_policy_rules("Local"), [
        ("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, BOTH, False),
        ("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "192.168.99.11", 80, BOTH, False),
        ("external to external IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80,
         LOCAL, False),
        ("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "1.2.3.4", 80, BOTH, False),
        ("external to LB IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80,
         LOCAL, False),
        ("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", TEST_NODE_IP, 3001, BOTH, False),
        ("external to NodePort hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001,
         LOCAL, False),
    ])


def test_external_traffic_policy_cluster():
    # TestExternalTrafficPolicyCluster
    run_packet_flow_tests(external_policy_rules("Cluster"), [
        ("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, BOTH, False),
        ("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "192.168.99.11", 80, BOTH, True),
        ("external to external IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80,
         BOTH, True),
        ("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "1.2.3.4", 80, BOTH, True),
        ("external to LB IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, BOTH, True),
        ("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", TEST_NODE_IP, 3001, BOTH, True),
        ("external to NodePort hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, BOTH, True),
    ])


INTERNAL_TRAFFIC_POLICY_CASES = {  # TestInternalTrafficPolicy: policy, endpoints (ip, node), expected output
    "internalTrafficPolicy is cluster": (
        "Cluster", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    "internalTrafficPolicy is local and there is one local endpoint": (
        "Local", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "10.0.1.1:80"),
    "internalTrafficPolicy is local and there are multiple local endpoints": (
        "Local", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", TEST_NODE_NAME), ("10.0.1.3", "node2")],
        "10.0.1.1:80, 10.0.1.2:80"),
    "internalTrafficPolicy is local and there are no local endpoints": (
        "Local", [("10.0.1.1", "node0"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "DROP"),
}


@pytest.mark.parametrize("name", list(INTERNAL_TRAFFIC_POLICY_CASES))
def test_internal_traffic_policy(name):
    # TestInternalTrafficPolicy, then "endpoints deleted"
    policy, endpoints, output = INTERNAL_TRAFFIC_POLICY_CASES[name]
    svc = make_service("ns1", "svc1", "172.30.1.1", [port("", 80)], internal_traffic_policy=policy)
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(a, n, ready=True) for a, n in endpoints],
                              [endpoint_port("", 80)])
    run_packet_flow_tests(sync([svc], [eps]), [("pod to ClusterIP", "10.0.0.2", "172.30.1.1", 80, output, False)])
    run_packet_flow_tests(sync([svc], []), [("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT", False)])


def terminating_service(policy: str):
    # TestTerminatingEndpointsTrafficPolicyLocal / ...Cluster: an unnamed port, LB IP 1.2.3.4, no NodePort
    return make_service("ns1", "svc1", "172.30.1.1", [port("", 80)], type="LoadBalancer",
                        external_traffic_policy=policy, load_balancer_ips=["1.2.3.4"])


R, T, GONE = dict(ready=True, serving=True, terminating=False), dict(ready=False, serving=True, terminating=True), \
    dict(ready=False, serving=False, terminating=True)  # ready; serving but terminating; neither
# (policy, case): endpoints (ip, node, conditions), pod-to-ClusterIP output, external-to-LB (output, masq)
TERMINATING_CASES = {
    ("Local", "ready endpoints exist"): (
        [("10.0.1.1", TEST_NODE_NAME, R), ("10.0.1.2", TEST_NODE_NAME, R), ("10.0.1.3", TEST_NODE_NAME, T),
         ("10.0.1.4", TEST_NODE_NAME, GONE), ("10.0.1.5", "node-1", R)],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", ("10.0.1.1:80, 10.0.1.2:80", False)),
    ("Local", "only terminating endpoints exist"): (
        [("10.0.1.2", TEST_NODE_NAME, T), ("10.0.1.3", TEST_NODE_NAME, T), ("10.0.1.4", TEST_NODE_NAME, GONE),
         ("10.0.1.5", "node-1", R)],
        "10.0.1.5:80", ("10.0.1.2:80, 10.0.1.3:80", False)),
    ("Local", "terminating endpoints on remote node"): (
        [("10.0.1.5", "node-1", T)], "10.0.1.5:80", ("DROP", False)),
    ("Local", "no usable endpoints on any node"): (
        [("10.0.1.5", TEST_NODE_NAME, GONE), ("10.0.1.5", "node-1", GONE)], "REJECT", ("REJECT", False)),
    ("Cluster", "ready endpoints exist"): (
        [("10.0.1.1", TEST_NODE_NAME, R), ("10.0.1.2", TEST_NODE_NAME, R), ("10.0.1.3", "another-node", T),
         ("10.0.1.4", "another-node", GONE), ("10.0.1.5", "another-node", R)],
        "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", ("10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", True)),
    ("Cluster", "only terminating endpoints exist"): (
        [("10.0.1.2", TEST_NODE_NAME, T), ("10.0.1.3", TEST_NODE_NAME, T), ("10.0.1.4", "another-node", GONE),
         ("10.0.1.5", "another-node", T)],
        "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", ("10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", True)),
    ("Cluster", "terminating endpoints on remote node"): (
        [("10.0.1.5", "node-1", T)], "10.0.1.5:80", ("10.0.1.5:80", True)),
    ("Cluster", "no usable endpoints on any node"): (
        [("10.0.1.5", TEST_NODE_NAME, GONE), ("10.0.1.5", "node-1", GONE)], "REJECT", ("REJECT", False)),
}


@pytest.mark.parametrize("policy, case", list(TERMINATING_CASES), ids=[f"{p}-{c}" for p, c in TERMINATING_CASES])
def test_terminating_endpoints(policy, case):
    # TestTerminatingEndpointsTrafficPolicyLocal and TestTerminatingEndpointsTrafficPolicyCluster
    endpoints, to_cluster_ip, (to_lb, lb_masq) = TERMINATING_CASES[(policy, case)]
    svc = terminating_service(policy)
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(a, n, **c) for a, n, c in endpoints], [endpoint_port("", 80)])
    run_packet_flow_tests(sync([svc], [eps]), [
        ("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, to_cluster_ip, False),
        ("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, to_lb, lb_masq),
    ])
    run_packet_flow_tests(sync([svc], []), [
        ("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT", False),
        ("external to LB after endpoints deleted", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT", False),
    ])


def internal_external_objects():
    # TestInternalExternalMasquerade's setupTest
    svcs = [make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                         load_balancer_ips=["1.2.3.4"]),
            make_service("ns2", "svc2", "172.30.0.42", [port("p80", 80, node_port=3002)], type="LoadBalancer",
                         external_traffic_policy="Local", load_balancer_ips=["5.6.7.8"]),
            make_service("ns3", "svc3", "172.30.0.43", [port("p80", 80, node_port=3003)], type="LoadBalancer",
                         internal_traffic_policy="Local", load_balancer_ips=["9.10.11.12"])]
    slices = [make_endpoint_slice(f"ns{i}", f"svc{i}", 1, [endpoint(f"10.180.0.{i}", TEST_NODE_NAME),
                                                            endpoint(f"10.180.1.{i}", "remote")],
                                  [endpoint_port("p80", 80)]) for i in (1, 2, 3)]
    return svcs, slices


E1, E2, E3 = "10.180.0.1:80, 10.180.1.1:80", "10.180.0.2:80, 10.180.1.2:80", "10.180.0.3:80, 10.180.1.3:80"
INTERNAL_EXTERNAL_FLOWS = [  # verbatim, including "node to NodePort with eTP:Local" aimed at svc1's 3001
    ("pod to ClusterIP", "10.0.0.2", "172.30.0.41", 80, E1, False),
    ("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, E1, True),
    ("pod to LB", "10.0.0.2", "1.2.3.4", 80, E1, True),
    ("node to ClusterIP", TEST_NODE_IP, "172.30.0.41", 80, E1, True),
    ("node to NodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, E1, True),
    ("node to LB", TEST_NODE_IP, "1.2.3.4", 80, E1, True),
    ("external to ClusterIP", TEST_EXTERNAL_CLIENT, "172.30.0.41", 80, E1, True),
    ("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, E1, True),
    ("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, E1, True),
    ("pod to ClusterIP with eTP:Local", "10.0.0.2", "172.30.0.42", 80, E2, False),
    ("pod to NodePort with eTP:Local", "10.0.0.2", TEST_NODE_IP, 3002, E2, False),
    ("pod to LB with eTP:Local", "10.0.0.2", "5.6.7.8", 80, E2, False),
    ("node to ClusterIP with eTP:Local", TEST_NODE_IP, "172.30.0.42", 80, E2, True),
    ("node to NodePort with eTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3001, E1, True),
    ("node to LB with eTP:Local", TEST_NODE_IP, "5.6.7.8", 80, E2, True),
    ("external to ClusterIP with eTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.42", 80, E2, True),
    ("external to NodePort with eTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3002, "10.180.0.2:80", False),
    ("external to LB with eTP:Local", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.2:80", False),
    ("pod to ClusterIP with iTP:Local", "10.0.0.2", "172.30.0.43", 80, "10.180.0.3:80", False),
    ("pod to NodePort with iTP:Local", "10.0.0.2", TEST_NODE_IP, 3003, E3, True),
    ("pod to LB with iTP:Local", "10.0.0.2", "9.10.11.12", 80, E3, True),
    ("node to ClusterIP with iTP:Local", TEST_NODE_IP, "172.30.0.43", 80, "10.180.0.3:80", True),
    ("node to NodePort with iTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3003, E3, True),
    ("node to LB with iTP:Local", TEST_NODE_IP, "9.10.11.12", 80, E3, True),
    ("external to ClusterIP with iTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.43", 80, "10.180.0.3:80", True),
    ("external to NodePort with iTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3003, E3, True),
    ("external to LB with iTP:Local", TEST_EXTERNAL_CLIENT, "9.10.11.12", 80, E3, True),
]
NO_DETECTOR = {  # "no LocalTrafficDetector": ClusterIP traffic counts as pod traffic; no pod short-circuit
    "node to ClusterIP": {"masq": False}, "node to ClusterIP with eTP:Local": {"masq": False},
    "node to ClusterIP with iTP:Local": {"masq": False}, "external to ClusterIP": {"masq": False},
    "external to ClusterIP with eTP:Local": {"masq": False}, "external to ClusterIP with iTP:Local": {"masq": False},
    "pod to NodePort with eTP:Local": {"output": "10.180.0.2:80"},
    "pod to LB with eTP:Local": {"output": "10.180.0.2:80"},
}
MASQUERADE_ALL = {"pod to ClusterIP": {"masq": True}, "pod to ClusterIP with eTP:Local": {"masq": True},
                  "pod to ClusterIP with iTP:Local": {"masq": True}}
INTERNAL_EXTERNAL_CASES = {  # masqueradeAll, localDetector, overrides
    "base": (False, True, {}),
    "no LocalTrafficDetector": (False, False, NO_DETECTOR),
    "masqueradeAll": (True, True, MASQUERADE_ALL),
    "masqueradeAll, no LocalTrafficDetector": (True, False, {
        **MASQUERADE_ALL, **{k: v for k, v in NO_DETECTOR.items() if "output" in v}}),
}


@pytest.mark.parametrize("name", list(INTERNAL_EXTERNAL_CASES))
def test_internal_external_masquerade(name):
    # TestInternalExternalMasquerade
    masquerade_all, local_detector, overrides = INTERNAL_EXTERNAL_CASES[name]
    settings = fake_proxier_settings(node_ips=(TEST_NODE_IP, TEST_NODE_IPV6),
                                     nodeport_addresses=(f"{TEST_NODE_IP}/32", f"{TEST_NODE_IPV6}/128"),
                                     masquerade_all=masquerade_all,
                                     cluster_cidrs=("10.0.0.0/8",) if local_detector else ())
    rules = nft_ruleset(*internal_external_objects(), settings, service_cidrs=SERVICE_CIDRS[4])
    flows = []
    for name_, source, dest, dport, output, masq in INTERNAL_EXTERNAL_FLOWS:
        change = overrides.get(name_, {})
        flows.append((name_, source, dest, dport, change.get("output", output), change.get("masq", masq)))
    assert set(overrides) <= {f[0] for f in INTERNAL_EXTERNAL_FLOWS}
    run_packet_flow_tests(rules, flows)


# -- exact odds, affinity, counting ------------------------------------------------------------------


def one_service(n: int, **service) -> tuple[list, list]:
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)], **service)
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(f"10.180.0.{i}") for i in range(1, n + 1)],
                              [endpoint_port("p80", 80)])
    return [svc], [eps]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_every_endpoint_gets_exactly_one_nth(n):
    result = nft_walk(sync(*one_service(n)), "10.0.0.2", "172.30.0.41", 80)
    assert result.probabilities == {f"10.180.0.{i}:80": Fraction(1, n) for i in range(1, n + 1)}
    assert all(d == 0 for d in result.deviations.values())
    # the kernel: (r * n) >> 32 over 32-bit r; index i gets ceil((i+1) 2^32 / n) - ceil(i 2^32 / n) values
    counts = [-(-((i + 1) << 32) // n) - -(-(i << 32) // n) for i in range(n)]
    assert list(result.kernel_probabilities.values()) == [Fraction(c, 2**32) for c in counts]
    assert sum(counts) == 2**32 and max(counts) - min(counts) <= 1


def test_numgen_kernel_probability_for_three():
    # 2^32 = 3 * 1431655765 + 1: the spare value falls to index 0 (r = 1431655765 gives (3r) >> 32 = 0)
    assert [numgen_kernel_probability(i, 3) * 2**32 for i in range(3)] == [1431655766, 1431655765, 1431655765]


def test_seeded_choice_and_forced_endpoint():
    rules = sync(*one_service(5))
    chosen = {nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, seed=seed).dnat for seed in range(100)}
    assert chosen == {f"10.180.0.{i}:80" for i in range(1, 6)}
    assert nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, seed=3).dnat == \
        nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, seed=3).dnat
    forced = nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, endpoint="10.180.0.4")
    assert forced.dnat == "10.180.0.4:80" and forced.chosen.decisions == (3,)  # numgen index 3 of 0..4
    assert forced.chosen.probability == Fraction(1, 5)
    with pytest.raises(InvalidValue, match="'endpoint' must be one of"):
        nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, endpoint="10.180.0.9:80")


def test_session_affinity_remembers_the_endpoint():
    rules = sync(*one_service(3, session_affinity_timeout=10800))
    first = nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, endpoint="10.180.0.2:80")
    (remembered,) = first.chosen.recent_set  # update @affinity-... { ip saddr } in the endpoint chain
    assert remembered.startswith("affinity-") and remembered.endswith("ns1/svc1/tcp/p80__10.180.0.2/80")
    again = nft_walk(rules, "10.0.0.2", "172.30.0.41", 80, flow={"recent": {remembered}})
    assert again.probabilities == {"10.180.0.2:80": 1}  # ip saddr @affinity-... goto: before the numgen
    assert not any("numgen" in s.rule.text for s in again.steps)


def test_the_decisive_steps_are_shown():
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)])
    result = nft_walk(sync([svc]), "10.0.0.2", "172.30.0.41", 80)
    assert result.verdict == "REJECT"
    assert [s.rule.text for s in result.steps] == [
        "add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check",
        "add rule ip kube-proxy nat-prerouting jump services",  # matched; the service-ips lookup then misses
        "add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check",
        "add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        'add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" '
        ": goto reject-chain }",
        "add rule ip kube-proxy reject-chain reject",
    ]
    assert result.verdict_rule.chain == "reject-chain" and result.steps[4].rule.comment == "ns1/svc1:p80"
    hairpin = nft_walk(sync(*one_service(1)), "10.180.0.1", "172.30.0.41", 80)
    assert hairpin.masquerade and hairpin.masquerade_rule.text.endswith("masquerading masquerade fully-random")
    assert [s.rule.target for s in hairpin.steps].count("mark-for-masquerade") == 1
    assert hairpin.mark == 0  # masquerading clears the bit (mark set mark xor 0x4000) first


def services(n: int) -> tuple[list, list]:
    svcs = [make_service("ns", f"svc{i}", str(ip("172.30.0.0") + i + 1), [port("p80", 80)]) for i in range(n)]
    slices = [make_endpoint_slice("ns", f"svc{i}", 1, [endpoint(str(ip("10.128.0.0") + i))], [endpoint_port("p80", 80)])
              for i in range(n)]
    return svcs, slices


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_rules_evaluated_stay_flat_as_services_grow(n):
    rules = NftRuleset.parse(sync(*services(n)))
    last = str(ip("172.30.0.0") + n)
    # a hit: filter-prerouting-pre-dnat 1 + firewall-check 1; nat-prerouting 1 + services 1 (one vmap lookup)
    # + service chain 2 + endpoint chain 2; filter-forward 2 + service-endpoints-check 1 + cluster-ips-check 2;
    # nat-postrouting 1 + masquerading 1
    hit = rules.walk(Flow("10.0.0.2", last, "tcp", 80), local=[TEST_NODE_IP])
    assert hit.dnat is not None and hit.evaluated == 2 + 6 + 5 + 2
    # a miss (to a pod): services tries both of its vmap rules, nothing else changes
    miss = rules.walk(Flow("10.0.0.2", "10.0.0.3", "tcp", 80), local=[TEST_NODE_IP])
    assert miss.dnat is None and miss.evaluated == 2 + 3 + 5 + 2
    iptables = Ruleset.parse(iptables_restore(*services(n), fake_proxier_settings()))
    assert iptables.walk(Flow("10.0.0.2", "10.0.0.3", "tcp", 80), local=[TEST_NODE_IP]).evaluated == n + 11


def test_bad_transactions_are_refused_with_the_line():
    head = 'add table ip kube-proxy { comment "rules for kube-proxy" ; }\nadd chain ip kube-proxy c\n'
    with pytest.raises(InvalidValue, match="line 3"):
        NftRuleset.parse(head + "flush chain ip kube-proxy c\n")
    with pytest.raises(InvalidValue, match="which was not added"):
        NftRuleset.parse(head + "add rule ip kube-proxy nowhere accept\n")
    with pytest.raises(InvalidValue, match="not an expression kube-proxy writes"):
        NftRuleset.parse(head + "add rule ip kube-proxy c frobnicate 1 accept\n")
    with pytest.raises(InvalidValue, match="not a set or map of the table"):
        NftRuleset.parse(head + "add rule ip kube-proxy c ip daddr @missing accept\n")
    with pytest.raises(InvalidValue, match="must name a chain of the table"):
        NftRuleset.parse(head + "add rule ip kube-proxy c jump elsewhere\n")
    with pytest.raises(InvalidValue, match="before adding it"):
        NftRuleset.parse("add chain ip kube-proxy c\n")


# -- the same answers as the iptables walk ------------------------------------------------------------

NODE_SETTINGS = dict(node_ips=(TEST_NODE_IP,))


def both_walks(services_, slices, source, dest, dport, proto="tcp"):
    """(iptables result, nftables result) for one flow on test-node, each mode with its own defaults."""
    local = source in TEST_NODE_IPS
    flow = Flow(source, dest, proto, dport, locally_generated=local)
    ipt = Ruleset.parse(iptables_restore(services_, slices, fake_proxier_settings(**NODE_SETTINGS)))
    nft = NftRuleset.parse(sync(services_, slices))
    return ipt.walk(flow, local=TEST_NODE_IPS), nft.walk(flow, local=TEST_NODE_IPS)


def assert_same_service_behaviour(ipt, nft, what=""):
    def per_endpoint(result):
        return {b.dnat: (b.verdict, b.masquerade) for b in result.branches}

    assert per_endpoint(nft) == per_endpoint(ipt), what
    n = len([d for d in nft.probabilities if d is not None])
    if n:
        assert all(p == Fraction(1, n) for p in nft.probabilities.values()), what
        assert all(abs(p - Fraction(1, n)) < Fraction(1, 10**10) for p in ipt.probabilities.values()), what


@pytest.mark.parametrize("policy", ["Cluster", "Local"])
@pytest.mark.parametrize("source", ["10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, "10.180.0.1"])
def test_external_policies_agree_with_iptables(policy, source):
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_traffic_policy=policy, external_ips=["192.168.99.33"], load_balancer_ips=["1.2.3.4"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1"), endpoint("10.180.2.1", TEST_NODE_NAME)],
                              [endpoint_port("p80", 80)])
    for dest, dport in (("172.30.0.41", 80), ("192.168.99.33", 80), ("1.2.3.4", 80), (TEST_NODE_IP, 3001)):
        ipt, nft = both_walks([svc], [eps], source, dest, dport)
        assert ipt.dnat is not None
        assert_same_service_behaviour(ipt, nft, f"{source} -> {dest}:{dport}")


def test_session_affinity_agrees_with_iptables():
    svcs, slices = one_service(3, session_affinity_timeout=10800)
    ipt, nft = both_walks(svcs, slices, "10.0.0.2", "172.30.0.41", 80)
    assert_same_service_behaviour(ipt, nft)
    # the remembered endpoint wins in both modes: -m recent --rcheck / ip saddr @affinity-...
    chosen = "10.180.0.3:80"
    ipt_list = ipt.choose(chosen).chosen.recent_set
    nft_set = nft.choose(chosen).chosen.recent_set
    flow = dict(src="10.0.0.2", dst="172.30.0.41", proto="tcp", dport=80)
    again_ipt = Ruleset.parse(iptables_restore(svcs, slices, fake_proxier_settings())).walk(
        Flow(**flow, recent=ipt_list), local=TEST_NODE_IPS)
    again_nft = NftRuleset.parse(sync(svcs, slices)).walk(Flow(**flow, recent=nft_set), local=TEST_NODE_IPS)
    assert again_ipt.probabilities == again_nft.probabilities == {chosen: 1}


SOURCES = ["10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP]


@st.composite
def clusters(draw):
    """1-3 Services of random type and policies, 0-3 endpoints each (some on test-node, some terminating)."""
    svcs, slices = [], []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
        external = draw(st.booleans())
        svcs.append(make_service(
            "ns", f"svc{i}", f"172.30.0.{41 + i}",
            [port("p80", 80, node_port=3001 + i if kind != "ClusterIP" else None)], type=kind,
            external_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            internal_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
            external_ips=[f"192.168.99.{33 + i}"] if external else [],
            load_balancer_ips=[f"1.2.3.{4 + i}"] if kind == "LoadBalancer" else [],
            load_balancer_source_ranges=draw(st.sampled_from([[], ["203.0.113.0/25"], ["192.168.0.0/24"]]))
            if kind == "LoadBalancer" else [],
            session_affinity_timeout=draw(st.sampled_from([None, 10800]))))
        endpoints = [endpoint(f"10.180.{i}.{j + 1}", draw(st.sampled_from([TEST_NODE_NAME, "node2"])),
                              ready=draw(st.sampled_from([True, True, False])), serving=True,
                              terminating=draw(st.booleans()))
                     for j in range(draw(st.integers(0, 3)))]
        slices.append(make_endpoint_slice("ns", f"svc{i}", 1, endpoints, [endpoint_port("p80", 80)]))
    return svcs, slices


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.data())
def test_random_clusters_agree_with_iptables(cluster, data):
    svcs, slices = cluster
    svc = data.draw(st.sampled_from(svcs))
    frontends = [(str(svc.cluster_ips[0]), 80)] + [(str(a), 80) for a in (*svc.external_ips, *svc.load_balancer_ips)]
    if svc.ports[0].node_port:
        frontends.append((TEST_NODE_IP, svc.ports[0].node_port))
    dest, dport = data.draw(st.sampled_from(frontends))
    eps = [str(e.addresses[0]) for s in slices if s.service == svc.name for e in s.endpoints]
    source = data.draw(st.sampled_from(SOURCES + eps[:1]))  # the first endpoint: a hairpin
    ipt, nft = both_walks(svcs, slices, source, dest, dport)
    refused = nft.dnat is None and nft.verdict in ("DROP", "REJECT")
    if refused and source == TEST_NODE_IP and dest not in (TEST_NODE_IP, str(svc.cluster_ips[0])) \
            and ipt.verdict == "ACCEPT":
        # difference 1, see test_node_to_an_external_ip_without_endpoints_differs
        assert ipt.dnat is None
        return
    if refused and nft.verdict_rule.chain.startswith("firewall-") and ipt.verdict == "REJECT":
        # difference 2, see test_source_ranges_without_endpoints_drop_instead_of_reject
        assert ipt.verdict_rule.comment.endswith("has no endpoints")
        return
    assert_same_service_behaviour(ipt, nft, f"{source} -> {dest}:{dport}\n{ipt}\n{nft}")


def test_source_ranges_without_endpoints_drop_instead_of_reject():
    # A difference between the modes, not a bug: iptables mode writes the KUBE-PROXY-FIREWALL DROP only
    # for a Service with endpoints (usesFWChain needs hasEndpoints), so a blocked source gets the "has no
    # endpoints" REJECT; nftables mode adds the firewall-ips element whatever the endpoints
    # (kube-proxy.md section 13), so the pre-DNAT firewall drops it first. Both refuse the connection.
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"], load_balancer_source_ranges=["203.0.113.0/25"])
    ipt, nft = both_walks([svc], [], TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80)
    assert ipt.verdict == "REJECT" and "has no endpoints" in ipt.verdict_rule.comment
    assert nft.verdict == "DROP" and nft.verdict_rule.text.endswith("ip saddr != { 203.0.113.0/25 } drop")
    allowed = both_walks([svc], [], TEST_EXTERNAL_CLIENT, "1.2.3.4", 80)
    assert [r.verdict for r in allowed] == ["REJECT", "REJECT"]


def test_node_to_an_external_ip_without_endpoints_differs():
    # A difference between the modes, not a bug: iptables mode jumps to KUBE-EXTERNAL-SERVICES (the REJECT
    # rules of externalIPs and LB IPs) only from INPUT and FORWARD (proxier.go iptablesJumpChains), so the
    # node's own connection leaves for the real load balancer; nftables mode runs service-endpoints-check
    # from filter-output too (the v1.34 baseRules: "filter-output ct state new jump service-endpoints-check").
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4"])
    ipt, nft = both_walks([svc], [], TEST_NODE_IP, "1.2.3.4", 80)
    assert (ipt.verdict, ipt.verdict_rule) == ("ACCEPT", None) and "filter KUBE-EXTERNAL-SERVICES" not in ipt.chains
    assert nft.verdict == "REJECT" and nft.chains[-2:] == ("service-endpoints-check", "reject-chain")
    # from anywhere else the two agree
    for source in ("10.0.0.2", TEST_EXTERNAL_CLIENT):
        assert_same_service_behaviour(*both_walks([svc], [], source, "1.2.3.4", 80))


# -- the packet walk (cluster.trace) through an nftables-mode cluster ---------------------------------


def lab(mode: str) -> Cluster:
    """Three nodes; web on node-1 and node-2 behind a ClusterIP and an eTP=Local NodePort; an empty Service."""
    c = Cluster(kube_proxy_mode=mode)
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
    c.add_pod("client", node="node-1")
    c.add_pod("web-1", node="node-1", labels={"app": "web"})
    c.add_pod("web-2", node="node-2", labels={"app": "web"})
    c.add_service("web", selector={"app": "web"}, port=80, target_port=8080)
    c.add_service("web-local", selector={"app": "web"}, port=80, target_port=8080, type="NodePort", node_port=30090,
                  external_traffic_policy="Local")
    c.add_service("empty", selector={"app": "nothing"}, port=80)
    return c


@pytest.fixture(scope="module")
def nft_lab():
    return lab("nftables")


@pytest.fixture(scope="module")
def ipt_lab():
    return lab("iptables")


def dnat_hops(t):
    return [h for h in t.hops if h.action == "dnat"]


@pytest.mark.parametrize("pod", ["web-1", "web-2"])
def test_trace_dnats_with_the_nft_rules(nft_lab, ipt_lab, pod):
    vip = str(nft_lab.service("web").cluster_ips[0])
    t = nft_lab.trace("client", vip, proto="tcp", dport=80, endpoint=pod)
    ip_of = str(nft_lab.pod(pod).ips[0])
    (dnat,) = dnat_hops(t)
    assert dnat.namespace == "node-1" and dnat.decided_by == (
        f"add rule ip kube-proxy {t.netfilter[0][1].dnat_rule.chain} meta l4proto tcp dnat to {ip_of}:8080")
    assert t.outcome == "delivered" and t.hops[-1].namespace == f"pod:default/{pod}"
    assert t.service_choice.probabilities == {f"{a}:8080": Fraction(1, 2) for a in
                                              sorted((str(nft_lab.pod(p).ips[0]) for p in ("web-1", "web-2")))}
    # the same walk in iptables mode: the same hops but for who decided the DNAT
    same = ipt_lab.trace("client", vip, proto="tcp", dport=80, endpoint=pod)
    assert [(h.namespace, h.action) for h in same.hops] == [(h.namespace, h.action) for h in t.hops]
    assert dnat_hops(same)[0].decided_by.startswith("-A KUBE-SEP-")


def test_trace_masquerades_node_traffic_marked_by_the_service_chain(nft_lab):
    t = nft_lab.trace("node-1", "web", proto="tcp", dport=80, endpoint="web-2")
    (masq,) = [h for h in t.hops if h.action == "masquerade"]
    assert masq.namespace == "node-1" and "service-" in masq.detail  # ip saddr != <pod CIDR> jump mark-for-masquerade
    assert masq.decided_by == "add rule ip kube-proxy masquerading masquerade fully-random"


def test_trace_rejects_a_service_without_endpoints(nft_lab):
    t = nft_lab.trace("client", str(nft_lab.service("empty").cluster_ips[0]), proto="tcp", dport=80)
    assert t.outcome == "dropped" and "ICMP port unreachable" in t.reason and "(default/empty)" in t.reason
    assert t.hops[-1].decided_by == "add rule ip kube-proxy reject-chain reject"


def test_trace_local_policy_nodeport(nft_lab):
    node2, node3 = (str(nft_lab.node(n).ip) for n in ("node-2", "node-3"))
    kept = nft_lab.trace("node-1", node2, proto="tcp", dport=30090)
    assert kept.outcome == "delivered" and kept.hops[-1].namespace == "pod:default/web-2"
    assert not [h for h in kept.hops if h.action == "masquerade"]  # the client's source is kept
    dropped = nft_lab.trace("node-1", node3, proto="tcp", dport=30090)  # node-3 has no web pod
    assert dropped.outcome == "dropped" and dropped.hops[-1].namespace == "node-3"
    assert dropped.hops[-1].decided_by.startswith("add element ip kube-proxy no-endpoint-nodeports { tcp . 30090 ")


def test_dual_stack_node_walks_each_family_through_its_own_table():
    c = Cluster(pod_cidr=["10.244.0.0/16", "fd00:10::/56"], service_cidr=["10.96.0.0/12", "fd00:96::/112"],
                kube_proxy_mode="nftables")
    c.add_node("node-1")
    c.add_node("node-2")
    c.add_pod("client", node="node-1")
    backend = c.add_pod("w", node="node-2", labels={"app": "w"})
    svc = c.add_service("web", selector={"app": "w"}, port=80, ip_family_policy="PreferDualStack")
    rules = kube_proxy_rules(c, c.topology(), "node-1")
    assert [(t.family, t.name) for t in rules.tables] == [("ip", "kube-proxy"), ("ip6", "kube-proxy")]
    v4, v6 = svc.cluster_ips
    walks = {ip.version: rules.walk(Flow(c.pod("client").ips[ip.version == 6], ip, "tcp", 80, in_interface="cni0"),
                                    local=[c.node("node-1").ip]) for ip in (v4, v6)}
    assert walks[4].dnat == f"{backend.ips[0]}:80" and walks[6].dnat == f"[{backend.ips[1]}]:80"
    assert all(s.rule.table == "ip6 kube-proxy" for s in walks[6].steps)
    assert c.trace("client", "web", proto="tcp", dport=80).service_choice.chosen == f"{backend.ips[0]}:80"
