"""kube-proxy's iptables-mode unit tests, ported: same inputs, same settings, same expected output.

Each test names the upstream test it ports from kubernetes/kubernetes
``pkg/proxy/iptables/proxier_test.go`` (v1.33 development line). Expected rule
texts are copied verbatim from upstream and compared after upstream's own
normalisation (``sortIPTablesRules``); the packet-flow tests run upstream's
tracer over our output with upstream's expectations. The harness lives in
``kubeproxy_upstream.py``.

Not ported, and why:

* the middle steps of ``TestSyncProxyRulesRepeated`` and the partial syncs of
  ``TestSyncProxyRulesLargeClusterMode``: they check *partial* syncs (only
  changed Services rewritten), and this generator writes full syncs; the full
  syncs of both tests are ported;
* ``TestLoadBalancerIngressRouteTypeProxy`` with ``ipMode: Proxy``:
  :class:`~kubenet_lab.objects.Service` carries no ``ipMode``, so every LB
  ingress IP is a VIP; the ``VIP``/unset cases are ported;
* metrics, conntrack clean-up, health-check servers, ``TestParseIPTablesData``
  (a helper of a helper) and the sync-runner tests: not rule generation.
"""

import re

import pytest

from kubenet_lab.kubeproxy import iptables_restore
from kubeproxy_upstream import (
    TEST_EXTERNAL_CLIENT,
    TEST_EXTERNAL_CLIENT_BLOCKED,
    TEST_NODE_IP,
    TEST_NODE_IP_ALT,
    TEST_NODE_IPV6,
    TEST_NODE_IPV6_ALT,
    TEST_NODE_NAME,
    Flow,
    assert_iptables_chain_equal,
    assert_iptables_rules_equal,
    check_iptables_rule_jumps,
    endpoint,
    endpoint_port,
    fake_proxier_settings,
    make_endpoint_slice,
    make_service,
    port,
    run_packet_flow_tests,
)


def sync(services, slices=(), family=4, health_check_node_ports=None, existing_nat_chains=(), **settings):
    """``fp.syncProxyRules()`` on a fresh ``NewFakeProxier`` (a full sync), with ``settings`` changed."""
    rules = iptables_restore(services, slices, fake_proxier_settings(**settings), family,
                             health_check_node_ports=health_check_node_ports,
                             existing_nat_chains=existing_nat_chains)
    check_iptables_rule_jumps(rules)
    return rules


P80 = [endpoint_port("p80", 80)]

# TestOverallIPTablesRules: expected, verbatim.
OVERALL_EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3002 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"""


def overall_inputs():
    """TestOverallIPTablesRules' Services, EndpointSlices and healthCheckNodePorts."""
    services = [
        # ClusterIP service
        make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)]),
        # LoadBalancer service with Local traffic policy
        make_service("ns2", "svc2", "172.30.0.42", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                     external_traffic_policy="Local", load_balancer_ips=["1.2.3.4"], external_ips=["192.168.99.22"]),
        # NodePort service
        make_service("ns3", "svc3", "172.30.0.43", [port("p80", 80, node_port=3003)], type="NodePort"),
        # ExternalIP service (type NodePort without a nodePort)
        make_service("ns4", "svc4", "172.30.0.44", [port("p80", 80)], type="NodePort", external_ips=["192.168.99.33"]),
        # LoadBalancer service with Cluster traffic policy, source ranges, and session affinity
        make_service("ns5", "svc5", "172.30.0.45", [port("p80", 80, node_port=3002)], type="LoadBalancer",
                     load_balancer_ips=["5.6.7.8"], load_balancer_source_ranges=[" 203.0.113.0/25"],
                     session_affinity_timeout=10800),
        # ClusterIP service with no endpoints
        make_service("ns6", "svc6", "172.30.0.46", [port("p80", 80)]),
    ]
    slices = [
        make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1")], P80),
        # no NodeName: non-local, so svc2 has no local endpoint
        make_endpoint_slice("ns2", "svc2", 1, [endpoint("10.180.0.2")], P80),
        make_endpoint_slice("ns3", "svc3", 1, [endpoint("10.180.0.3")], P80),
        make_endpoint_slice("ns4", "svc4", 1, [endpoint("10.180.0.4"), endpoint("10.180.0.5", TEST_NODE_NAME)], P80),
        make_endpoint_slice("ns5", "svc5", 1, [endpoint("10.180.0.3")], P80),
    ]
    # Both LoadBalancers have HealthCheckNodePort 30000; only the eTP=Local one needs it.
    return services, slices, {"ns2/svc2": 30000, "ns5/svc5": 30000}


def test_overall_iptables_rules():
    # TestOverallIPTablesRules
    services, slices, health_check_node_ports = overall_inputs()
    rules = sync(services, slices, health_check_node_ports=health_check_node_ports)
    assert_iptables_rules_equal(OVERALL_EXPECTED, rules)


# TestSyncProxyRulesRepeated: the first sync (a full one), verbatim.
REPEATED_FIRST_EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
:KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
:KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
COMMIT
"""

# TestSyncProxyRulesRepeated: the full resync after the failed partial one, verbatim. svc2 and
# svc4 were deleted earlier; svc4's chains were still in the kernel, so they are flushed and deleted.
REPEATED_FULL_RESYNC_EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-AYCN5HPXMIRJNJXU - [0:0]
:KUBE-SEP-DKCFIS26GWF2WLWC - [0:0]
:KUBE-SEP-JVVZVJ7BSEPPRNBS - [0:0]
:KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -s 10.0.3.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-DKCFIS26GWF2WLWC -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.2:80
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -s 10.0.3.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-JVVZVJ7BSEPPRNBS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.3.3:80
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-DKCFIS26GWF2WLWC
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.0.3.3:80" -j KUBE-SEP-JVVZVJ7BSEPPRNBS
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
-X KUBE-SEP-AYCN5HPXMIRJNJXU
-X KUBE-SVC-4SW47YFZTEDKD3PK
COMMIT
"""


def test_sync_proxy_rules_repeated_full_syncs():
    # TestSyncProxyRulesRepeated: the initial sync and the final forced full resync
    svc1 = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)])
    svc2 = make_service("ns2", "svc2", "172.30.0.42", [port("p8080", 8080)])
    svc3 = make_service("ns3", "svc3", "172.30.0.43", [port("p80", 80)])
    eps1 = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.0.1.1")], P80)
    eps2 = make_endpoint_slice("ns2", "svc2", 1, [endpoint("10.0.2.1")], [endpoint_port("p8080", 8080)])
    assert_iptables_rules_equal(REPEATED_FIRST_EXPECTED, sync([svc1, svc2], [eps1, eps2]))

    eps3 = make_endpoint_slice("ns3", "svc3", 1, [endpoint("10.0.3.2"), endpoint("10.0.3.3")], P80)
    eps4 = make_endpoint_slice("ns4", "svc4", 1, [endpoint("10.0.4.1")], P80)  # its Service is gone
    in_kernel = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
                 "KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SVC-X27LE4BHSL4DOUIK",
                 "KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SEP-JVVZVJ7BSEPPRNBS",
                 "KUBE-SEP-AYCN5HPXMIRJNJXU", "KUBE-SVC-4SW47YFZTEDKD3PK"]
    rules = iptables_restore([svc1, svc3], [eps1, eps3, eps4], fake_proxier_settings(),
                             existing_nat_chains=in_kernel)
    assert_iptables_rules_equal(REPEATED_FULL_RESYNC_EXPECTED, rules, check_consistency=False)


# TestBadIPs: expected, verbatim.
BAD_IPS_EXPECTED = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
:KUBE-FW-XPGD46QRK7WJZT7O - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O
-A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"""


def _parse_sloppy(text: str) -> str:
    """``netutils.ParseIPSloppy``/``ParseCIDRSloppy`` for IPv4: leading zeros are decimal, not octal.

    kubenet_lab's own parsers (like the API server's strict validation) reject such
    text, so the test applies kube-proxy's reading before building the objects.
    """
    address, _, prefix = text.partition("/")
    canonical = ".".join(str(int(octet, 10)) for octet in address.split("."))
    return f"{canonical}/{int(prefix, 10)}" if prefix else canonical


def test_bad_ips():
    # TestBadIPs: "bad" (leading-zero) IPs and CIDRs come out canonical.
    svc = make_service("ns1", "svc1", _parse_sloppy("172.30.0.041"), [port("p80", 80, node_port=3001)],
                       type="LoadBalancer", load_balancer_ips=[_parse_sloppy("1.2.3.004")],
                       external_ips=[_parse_sloppy("192.168.099.022")],
                       load_balancer_source_ranges=[_parse_sloppy("203.0.113.000/025")])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(_parse_sloppy("10.180.00.001"))], P80)
    assert_iptables_rules_equal(BAD_IPS_EXPECTED, sync([svc], [eps]))


def _count_endpoints_and_comments(rules: str, match_endpoint: str) -> tuple[str, int, int]:
    """``countEndpointsAndComments``."""
    matched, endpoints, comments = "", 0, 0
    for line in rules.split("\n"):
        if line.startswith("-A KUBE-SEP-") and "-j DNAT" in line:
            endpoints += 1
            comments += "--comment" in line
            if match_endpoint in line:
                matched = line
    return matched, endpoints, comments


def test_sync_proxy_rules_large_cluster_mode():
    # TestSyncProxyRulesLargeClusterMode (the full syncs, with masqueradeAll)
    threshold = 1000
    services = [
        make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)]),
        make_service("ns2", "svc2", "172.30.0.42", [port("p8080", 8080)]),
        make_service("ns3", "svc3", "172.30.0.43", [port("p8081", 8081)]),
    ]
    slices = [
        make_endpoint_slice("ns1", "svc1", 1, [endpoint(f"10.0.{i % 256}.{i // 256}") for i in range(threshold // 2 - 1)],
                            P80),
        make_endpoint_slice("ns2", "svc2", 1, [endpoint(f"10.1.{i % 256}.{i // 256}") for i in range(threshold // 2 - 1)],
                            [endpoint_port("p8080", 8080)]),
    ]
    rules = sync(services, slices, masquerade_all=True)
    first, endpoints, comments = _count_endpoints_and_comments(rules, "10.0.0.0")
    assert first == "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
    assert endpoints == 2 * (threshold // 2 - 1) and comments == endpoints

    slices.append(make_endpoint_slice("ns3", "svc3", 1, [endpoint("203.0.113.4"), endpoint("203.0.113.8"),
                                                         endpoint("203.0.113.12")], [endpoint_port("p8081", 8081)]))
    rules = sync(services, slices, masquerade_all=True)
    first, endpoints, comments = _count_endpoints_and_comments(rules, "10.0.0.0")
    assert first == "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
    assert (endpoints, comments) == (2 * (threshold // 2 - 1) + 3, 0)
    assert _count_endpoints_and_comments(rules, "203.0.113.4")[0] == \
        "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081"

    # svc4 came and went; once the stale-chain clean-up runs, its chains are deleted.
    svc4 = make_service("ns4", "svc4", "172.30.0.44", [port("p8082", 8082)])
    slice4 = make_endpoint_slice("ns4", "svc4", 1, [endpoint("10.4.0.1")], [endpoint_port("p8082", 8082)])
    rules = sync(services + [svc4], slices + [slice4], masquerade_all=True)
    assert _count_endpoints_and_comments(rules, "10.4.0.1")[0] == \
        "-A KUBE-SEP-SU5STNODRYEWJAUF -m tcp -p tcp -j DNAT --to-destination 10.4.0.1:8082"
    rules = sync(services, slices + [slice4], masquerade_all=True,
                 existing_nat_chains=["KUBE-SVC-EBDQOQU5SJFXRIL3", "KUBE-SEP-SU5STNODRYEWJAUF"])
    assert _count_endpoints_and_comments(rules, "10.4.0.1")[0] == ""
    assert "-X KUBE-SVC-EBDQOQU5SJFXRIL3" in rules and "-X KUBE-SEP-SU5STNODRYEWJAUF" in rules


def test_no_endpoints_reject():
    # TestNoEndpointsReject
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_ips=["192.168.99.11"], load_balancer_ips=["1.2.3.4"])
    run_packet_flow_tests(sync([svc]), [
        Flow("pod to cluster IP with no endpoints", "10.0.0.2", "172.30.0.41", 80, "REJECT"),
        Flow("external to external IP with no endpoints", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80, "REJECT"),
        Flow("pod to NodePort with no endpoints", "10.0.0.2", TEST_NODE_IP, 3001, "REJECT"),
        Flow("external to NodePort with no endpoints", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "REJECT"),
        Flow("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "1.2.3.4", 80, "REJECT"),
        Flow("external to LoadBalancer IP with no endpoints", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
    ])


def test_cluster_ip_general():
    # TestClusterIPGeneral
    services = [
        make_service("ns1", "svc1", "172.30.0.41", [port("http", 80)]),
        make_service("ns2", "svc2", "172.30.0.42", [
            port("http", 80), port("https", 443), port("dns-udp", 53, "UDP"), port("dns-tcp", 53),
            port("dns-sctp", 53, "SCTP")]),
    ]
    slices = [
        make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1", TEST_NODE_NAME)], [endpoint_port("http", 80)]),
        make_endpoint_slice("ns2", "svc2", 1, [endpoint("10.180.0.1", TEST_NODE_NAME), endpoint("10.180.2.1", "node2")], [
            endpoint_port("http", 80), endpoint_port("https", 8443), endpoint_port("dns-udp", 53, "UDP"),
            endpoint_port("dns-tcp", 5353), endpoint_port("dns-sctp", 53, "SCTP")]),
    ]
    run_packet_flow_tests(sync(services, slices), [
        Flow("simple clusterIP", "10.180.0.2", "172.30.0.41", 80, "10.180.0.1:80"),
        Flow("hairpin to cluster IP", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", masq=True),
        Flow("clusterIP with multiple endpoints", "10.180.0.2", "172.30.0.42", 80, "10.180.0.1:80, 10.180.2.1:80"),
        Flow("clusterIP with TargetPort", "10.180.0.2", "172.30.0.42", 443, "10.180.0.1:8443, 10.180.2.1:8443"),
        Flow("clusterIP with TCP, UDP, and SCTP on same port (TCP)", "10.180.0.2", "172.30.0.42", 53,
             "10.180.0.1:5353, 10.180.2.1:5353", protocol="TCP"),
        Flow("clusterIP with TCP, UDP, and SCTP on same port (UDP)", "10.180.0.2", "172.30.0.42", 53,
             "10.180.0.1:53, 10.180.2.1:53", protocol="UDP"),
        Flow("clusterIP with TCP, UDP, and SCTP on same port (SCTP)", "10.180.0.2", "172.30.0.42", 53,
             "10.180.0.1:53, 10.180.2.1:53", protocol="SCTP"),
        Flow("TCP-only port does not match UDP traffic", "10.180.0.2", "172.30.0.42", 80, "", protocol="UDP"),
        Flow("svc1 does not accept svc2's ports", "10.180.0.2", "172.30.0.41", 443, ""),
    ])


def test_load_balancer():
    # TestLoadBalancer
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.4", "5.6.7.8"],
                       # Regression test upstream: excess whitespace gets ignored
                       load_balancer_source_ranges=["192.168.0.0/24", " 203.0.113.0/25"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1")], P80)
    ep = "10.180.0.1:80"
    run_packet_flow_tests(sync([svc], [eps]), [
        Flow("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, ep),
        Flow("external to nodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, ep, masq=True),
        Flow("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, TEST_NODE_IP, 3001, ep, masq=True),
        Flow("accepted external to LB1", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, ep, masq=True),
        Flow("accepted external to LB2", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, ep, masq=True),
        Flow("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "1.2.3.4", 80, "DROP"),
        Flow("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "5.6.7.8", 80, "DROP"),
        Flow("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "1.2.3.4", 80, "DROP"),
        Flow("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "5.6.7.8", 80, "DROP"),
        Flow("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "1.2.3.4", 80, ep, masq=True),
        Flow("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "5.6.7.8", 80, ep, masq=True),
        Flow("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "1.2.3.4", 80, ep, masq=True),
        Flow("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "5.6.7.8", 80, ep, masq=True),
    ])


FIREWALL_RULE = ('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
                 "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n")


# TestNodePorts: family, localhostNodePorts, nodePortAddresses, allowAltNodeIP, expectFirewall.
NODE_PORT_CASES = {
    "ipv4, localhost-nodeports enabled": (4, True, None, True, True),
    "ipv4, localhost-nodeports disabled": (4, False, None, True, False),
    "ipv4, localhost-nodeports disabled, localhost in nodeport-addresses":
        (4, False, ["192.168.0.0/24", "127.0.0.1/32"], False, False),
    "ipv4, localhost-nodeports enabled, multiple nodeport-addresses":
        (4, False, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], True, False),
    "ipv6, localhost-nodeports enabled": (6, True, None, True, False),
    "ipv6, localhost-nodeports disabled": (6, False, None, True, False),
    "ipv6, localhost-nodeports disabled, multiple nodeport-addresses":
        (6, False, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], False, False),
}


@pytest.mark.parametrize("name", list(NODE_PORT_CASES))
def test_node_ports(name):
    # TestNodePorts
    family, localhost_nodeports, nodeport_addresses, allow_alt_node_ip, expect_firewall = NODE_PORT_CASES[name]
    if family == 4:
        svc_ip, ep1, ep2 = "172.30.0.41", "10.180.0.1", "10.180.2.1"
        pod, client, node, alt, localhost = "10.0.0.2", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, TEST_NODE_IP_ALT, "127.0.0.1"
        output = f"{ep1}:80, {ep2}:80"
    else:
        svc_ip, ep1, ep2 = "fd00:172:30::41", "fd00:10:180::1", "fd00:10:180::2:1"
        pod, client, node, alt, localhost = "fd00:10::2", "2600:5200::1", TEST_NODE_IPV6, TEST_NODE_IPV6_ALT, "::1"
        output = f"[{ep1}]:80, [{ep2}]:80"
    svc = make_service("ns1", "svc1", svc_ip, [port("p80", 80, node_port=3001)], type="NodePort")
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(ep1), endpoint(ep2, TEST_NODE_NAME)], P80,
                              address_type=f"IPv{family}")
    rules = sync([svc], [eps], family, localhost_nodeports=localhost_nodeports,
                 nodeport_addresses=tuple(nodeport_addresses or ()))
    flows = [
        Flow("pod to cluster IP", pod, svc_ip, 80, output),
        Flow("external to nodePort", client, node, 3001, output, masq=True),
        Flow("node to nodePort", node, node, 3001, output, masq=True),
    ]
    if family == 4 and localhost_nodeports:
        flows.append(Flow("localhost to nodePort gets masqueraded", localhost, localhost, 3001, output, masq=True))
    else:
        flows.append(Flow("localhost to nodePort is ignored", localhost, localhost, 3001, ""))
    if allow_alt_node_ip:
        flows.append(Flow("external to nodePort on secondary IP", client, alt, 3001, output, masq=True))
    else:
        flows.append(Flow("secondary nodeIP ignores NodePorts", client, alt, 3001, ""))
    run_packet_flow_tests(rules, flows)
    assert_iptables_chain_equal("filter", "KUBE-FIREWALL", FIREWALL_RULE if expect_firewall else "", rules)


def test_health_check_node_port():
    # TestHealthCheckNodePort
    svc = make_service("ns1", "svc1", "172.30.0.42", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_traffic_policy="Local")
    rules = sync([svc], health_check_node_ports={"ns1/svc1": 30000}, nodeport_addresses=("127.0.0.0/8",))
    run_packet_flow_tests(rules, [Flow("firewall accepts HealthCheckNodePort", "1.2.3.4", TEST_NODE_IP, 30000, "ACCEPT")])
    rules = sync([], nodeport_addresses=("127.0.0.0/8",))
    run_packet_flow_tests(rules, [Flow("HealthCheckNodePort no longer has any rule", "1.2.3.4", TEST_NODE_IP, 30000, "")])


FORWARD_TAIL = """\
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
"""


@pytest.mark.parametrize("nfacct, tcp_liberal, drop_rule", [
    (False, False, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"),
    (True, False, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\n"),
    (False, True, ""),
])
def test_drop_invalid_rule(nfacct, tcp_liberal, drop_rule):
    # TestDropInvalidRule
    rules = sync([], nfacct=nfacct, conntrack_tcp_be_liberal=tcp_liberal)
    assert_iptables_chain_equal("filter", "KUBE-FORWARD", drop_rule + FORWARD_TAIL, rules)


@pytest.mark.parametrize("random_fully", [False, True])
def test_masquerade_rule(random_fully):
    # TestMasqueradeRule
    expected = ("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
                "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
                '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
                + (" --random-fully" if random_fully else "") + "\n")
    assert_iptables_chain_equal("nat", "KUBE-POSTROUTING", expected, sync([], random_fully=random_fully))


def _external_traffic_policy_rules(policy: str) -> str:
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       external_traffic_policy=policy, external_ips=["192.168.99.11"], load_balancer_ips=["1.2.3.4"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1"), endpoint("10.180.2.1", TEST_NODE_NAME)], P80)
    return sync([svc], [eps], health_check_node_ports={"ns1/svc1": 30000})


def test_external_traffic_policy_local():
    # TestExternalTrafficPolicyLocal
    both, local = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"
    run_packet_flow_tests(_external_traffic_policy_rules("Local"), [
        Flow("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both),
        Flow("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "192.168.99.11", 80, both),
        Flow("external to external IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11",
             80, local),
        Flow("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "1.2.3.4", 80, both),
        Flow("external to LB IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, local),
        Flow("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", TEST_NODE_IP, 3001, both),
        Flow("external to NodePort hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001,
             local),
    ])


def test_external_traffic_policy_cluster():
    # TestExternalTrafficPolicyCluster
    both = "10.180.0.1:80, 10.180.2.1:80"
    run_packet_flow_tests(_external_traffic_policy_rules("Cluster"), [
        Flow("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "172.30.0.41", 80, both),
        Flow("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "192.168.99.11", 80, both, masq=True),
        Flow("external to external IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "192.168.99.11", 80,
             both, masq=True),
        Flow("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "1.2.3.4", 80, both, masq=True),
        Flow("external to LB IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, both, masq=True),
        Flow("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", TEST_NODE_IP, 3001, both, masq=True),
        Flow("external to NodePort hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, both,
             masq=True),
    ])


# TestInternalTrafficPolicy: policy, endpoints (ip, node), expected output of pod -> ClusterIP.
INTERNAL_TRAFFIC_POLICY_CASES = {
    "internalTrafficPolicy is cluster":
        ("Cluster", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")],
         "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    "internalTrafficPolicy is local and there is one local endpoint":
        ("Local", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "10.0.1.1:80"),
    "internalTrafficPolicy is local and there are multiple local endpoints":
        ("Local", [("10.0.1.1", TEST_NODE_NAME), ("10.0.1.2", TEST_NODE_NAME), ("10.0.1.3", "node2")],
         "10.0.1.1:80, 10.0.1.2:80"),
    "internalTrafficPolicy is local and there are no local endpoints":
        ("Local", [("10.0.1.1", "node0"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "DROP"),
}


@pytest.mark.parametrize("name", list(INTERNAL_TRAFFIC_POLICY_CASES))
def test_internal_traffic_policy(name):
    # TestInternalTrafficPolicy
    policy, endpoints, output = INTERNAL_TRAFFIC_POLICY_CASES[name]
    svc = make_service("ns1", "svc1", "172.30.1.1", [port("", 80)], internal_traffic_policy=policy)
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(ip, node, ready=True) for ip, node in endpoints],
                              [endpoint_port("", 80)])
    run_packet_flow_tests(sync([svc], [eps]), [Flow("pod to ClusterIP", "10.0.0.2", "172.30.1.1", 80, output)])
    run_packet_flow_tests(sync([svc]), [Flow("endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT")])


def _conditions(ready, serving, terminating, node, ip):
    return endpoint(ip, node, ready=ready, serving=serving, terminating=terminating)


# TestTerminatingEndpointsTrafficPolicyLocal / ...Cluster: name -> (endpoints, pod->clusterIP, external->LB, masq).
TERMINATING_LOCAL_CASES = {
    "ready endpoints exist": ([
        _conditions(True, True, False, TEST_NODE_NAME, "10.0.1.1"),
        _conditions(True, True, False, TEST_NODE_NAME, "10.0.1.2"),
        _conditions(False, True, True, TEST_NODE_NAME, "10.0.1.3"),
        _conditions(False, False, True, TEST_NODE_NAME, "10.0.1.4"),
        _conditions(True, True, False, "node-1", "10.0.1.5"),
    ], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80", False),
    "only terminating endpoints exist": ([
        _conditions(False, True, True, TEST_NODE_NAME, "10.0.1.2"),
        _conditions(False, True, True, TEST_NODE_NAME, "10.0.1.3"),
        _conditions(False, False, True, TEST_NODE_NAME, "10.0.1.4"),
        _conditions(True, True, False, "node-1", "10.0.1.5"),
    ], "10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80", False),
    "terminating endpoints on remote node": ([
        _conditions(False, True, True, "node-1", "10.0.1.5"),
    ], "10.0.1.5:80", "DROP", False),
    "no usable endpoints on any node": ([
        _conditions(False, False, True, TEST_NODE_NAME, "10.0.1.5"),
        _conditions(False, False, True, "node-1", "10.0.1.5"),
    ], "REJECT", "REJECT", False),
}

TERMINATING_CLUSTER_CASES = {
    "ready endpoints exist": ([
        _conditions(True, True, False, TEST_NODE_NAME, "10.0.1.1"),
        _conditions(True, True, False, TEST_NODE_NAME, "10.0.1.2"),
        _conditions(False, True, True, "another-node", "10.0.1.3"),
        _conditions(False, False, True, "another-node", "10.0.1.4"),
        _conditions(True, True, False, "another-node", "10.0.1.5"),
    ], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", True),
    "only terminating endpoints exist": ([
        _conditions(False, True, True, TEST_NODE_NAME, "10.0.1.2"),
        _conditions(False, True, True, TEST_NODE_NAME, "10.0.1.3"),
        _conditions(False, False, True, "another-node", "10.0.1.4"),
        _conditions(False, True, True, "another-node", "10.0.1.5"),
    ], "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80, 10.0.1.5:80", True),
    "terminating endpoints on remote node": ([
        _conditions(False, True, True, "node-1", "10.0.1.5"),
    ], "10.0.1.5:80", "10.0.1.5:80", True),
    "no usable endpoints on any node": ([
        _conditions(False, False, True, TEST_NODE_NAME, "10.0.1.5"),
        _conditions(False, False, True, "node-1", "10.0.1.5"),
    ], "REJECT", "REJECT", False),
}


@pytest.mark.parametrize("policy, name", [("Local", n) for n in TERMINATING_LOCAL_CASES]
                         + [("Cluster", n) for n in TERMINATING_CLUSTER_CASES])
def test_terminating_endpoints(policy, name):
    # TestTerminatingEndpointsTrafficPolicyLocal and TestTerminatingEndpointsTrafficPolicyCluster
    endpoints, to_cluster_ip, to_lb, lb_masq = (TERMINATING_LOCAL_CASES if policy == "Local"
                                                else TERMINATING_CLUSTER_CASES)[name]
    svc = make_service("ns1", "svc1", "172.30.1.1", [port("", 80)], type="LoadBalancer",
                       external_traffic_policy=policy, load_balancer_ips=["1.2.3.4"])
    eps = make_endpoint_slice("ns1", "svc1", 1, endpoints, [endpoint_port("", 80)])
    run_packet_flow_tests(sync([svc], [eps], health_check_node_ports={"ns1/svc1": 30000}), [
        Flow("pod to clusterIP", "10.0.0.2", "172.30.1.1", 80, to_cluster_ip),
        Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, to_lb, masq=lb_masq),
    ])
    run_packet_flow_tests(sync([svc], health_check_node_ports={"ns1/svc1": 30000}), [
        Flow("pod to clusterIP after endpoints deleted", "10.0.0.2", "172.30.1.1", 80, "REJECT"),
        Flow("external to LB after endpoints deleted", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "REJECT"),
    ])


# TestInternalExternalMasquerade: the base flows (working local detector, no masqueradeAll).
INTERNAL_EXTERNAL_FLOWS = [
    Flow("pod to ClusterIP", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80, 10.180.1.1:80"),
    Flow("pod to NodePort", "10.0.0.2", TEST_NODE_IP, 3001, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("pod to LB", "10.0.0.2", "1.2.3.4", 80, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("node to ClusterIP", TEST_NODE_IP, "172.30.0.41", 80, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("node to NodePort", TEST_NODE_IP, TEST_NODE_IP, 3001, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("localhost to NodePort", "127.0.0.1", "127.0.0.1", 3001, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("node to LB", TEST_NODE_IP, "1.2.3.4", 80, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("external to ClusterIP", TEST_EXTERNAL_CLIENT, "172.30.0.41", 80, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("external to NodePort", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3001, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("external to LB", TEST_EXTERNAL_CLIENT, "1.2.3.4", 80, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("pod to ClusterIP with eTP:Local", "10.0.0.2", "172.30.0.42", 80, "10.180.0.2:80, 10.180.1.2:80"),
    Flow("pod to NodePort with eTP:Local", "10.0.0.2", TEST_NODE_IP, 3002, "10.180.0.2:80, 10.180.1.2:80"),
    Flow("pod to LB with eTP:Local", "10.0.0.2", "5.6.7.8", 80, "10.180.0.2:80, 10.180.1.2:80"),
    Flow("node to ClusterIP with eTP:Local", TEST_NODE_IP, "172.30.0.42", 80, "10.180.0.2:80, 10.180.1.2:80", masq=True),
    Flow("node to NodePort with eTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3001, "10.180.0.1:80, 10.180.1.1:80", masq=True),
    Flow("localhost to NodePort with eTP:Local", "127.0.0.1", "127.0.0.1", 3002, "10.180.0.2:80, 10.180.1.2:80",
         masq=True),
    Flow("node to LB with eTP:Local", TEST_NODE_IP, "5.6.7.8", 80, "10.180.0.2:80, 10.180.1.2:80", masq=True),
    Flow("external to ClusterIP with eTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.42", 80,
         "10.180.0.2:80, 10.180.1.2:80", masq=True),
    Flow("external to NodePort with eTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3002, "10.180.0.2:80"),
    Flow("external to LB with eTP:Local", TEST_EXTERNAL_CLIENT, "5.6.7.8", 80, "10.180.0.2:80"),
    Flow("pod to ClusterIP with iTP:Local", "10.0.0.2", "172.30.0.43", 80, "10.180.0.3:80"),
    Flow("pod to NodePort with iTP:Local", "10.0.0.2", TEST_NODE_IP, 3003, "10.180.0.3:80, 10.180.1.3:80", masq=True),
    Flow("pod to LB with iTP:Local", "10.0.0.2", "9.10.11.12", 80, "10.180.0.3:80, 10.180.1.3:80", masq=True),
    Flow("node to ClusterIP with iTP:Local", TEST_NODE_IP, "172.30.0.43", 80, "10.180.0.3:80", masq=True),
    Flow("node to NodePort with iTP:Local", TEST_NODE_IP, TEST_NODE_IP, 3003, "10.180.0.3:80, 10.180.1.3:80", masq=True),
    Flow("localhost to NodePort with iTP:Local", "127.0.0.1", "127.0.0.1", 3003, "10.180.0.3:80, 10.180.1.3:80",
         masq=True),
    Flow("node to LB with iTP:Local", TEST_NODE_IP, "9.10.11.12", 80, "10.180.0.3:80, 10.180.1.3:80", masq=True),
    Flow("external to ClusterIP with iTP:Local", TEST_EXTERNAL_CLIENT, "172.30.0.43", 80, "10.180.0.3:80", masq=True),
    Flow("external to NodePort with iTP:Local", TEST_EXTERNAL_CLIENT, TEST_NODE_IP, 3003,
         "10.180.0.3:80, 10.180.1.3:80", masq=True),
    Flow("external to LB with iTP:Local", TEST_EXTERNAL_CLIENT, "9.10.11.12", 80, "10.180.0.3:80, 10.180.1.3:80",
         masq=True),
]

# The per-case overrides: name -> (masqueradeAll, localDetector, {flow: (output or None, masq or None)}).
INTERNAL_EXTERNAL_CASES = {
    "base": (False, True, {}),
    "no LocalTrafficDetector": (False, False, {
        "node to ClusterIP": (None, False),
        "node to ClusterIP with eTP:Local": (None, False),
        "node to ClusterIP with iTP:Local": (None, False),
        "external to ClusterIP": (None, False),
        "external to ClusterIP with eTP:Local": (None, False),
        "external to ClusterIP with iTP:Local": (None, False),
        "pod to NodePort with eTP:Local": ("10.180.0.2:80", None),
        "pod to LB with eTP:Local": ("10.180.0.2:80", None),
    }),
    "masqueradeAll": (True, True, {
        "pod to ClusterIP": (None, True),
        "pod to ClusterIP with eTP:Local": (None, True),
        "pod to ClusterIP with iTP:Local": (None, True),
    }),
    "masqueradeAll, no LocalTrafficDetector": (True, False, {
        "pod to ClusterIP": (None, True),
        "pod to ClusterIP with eTP:Local": (None, True),
        "pod to ClusterIP with iTP:Local": (None, True),
        "pod to NodePort with eTP:Local": ("10.180.0.2:80", None),
        "pod to LB with eTP:Local": ("10.180.0.2:80", None),
    }),
}


@pytest.mark.parametrize("name", list(INTERNAL_EXTERNAL_CASES))
def test_internal_external_masquerade(name):
    # TestInternalExternalMasquerade
    masquerade_all, local_detector, overrides = INTERNAL_EXTERNAL_CASES[name]
    services = [
        make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                     load_balancer_ips=["1.2.3.4"]),
        make_service("ns2", "svc2", "172.30.0.42", [port("p80", 80, node_port=3002)], type="LoadBalancer",
                     external_traffic_policy="Local", load_balancer_ips=["5.6.7.8"]),
        make_service("ns3", "svc3", "172.30.0.43", [port("p80", 80, node_port=3003)], type="LoadBalancer",
                     internal_traffic_policy="Local", load_balancer_ips=["9.10.11.12"]),
    ]
    slices = [make_endpoint_slice(f"ns{i}", f"svc{i}", 1, [endpoint(f"10.180.0.{i}", TEST_NODE_NAME),
                                                           endpoint(f"10.180.1.{i}", "remote")], P80)
              for i in (1, 2, 3)]
    rules = sync(services, slices, health_check_node_ports={"ns1/svc1": 30001, "ns2/svc2": 30002, "ns3/svc3": 30003},
                 masquerade_all=masquerade_all, cluster_cidrs=("10.0.0.0/8",) if local_detector else ())
    flows = []
    for flow in INTERNAL_EXTERNAL_FLOWS:
        output, masq = overrides.get(flow.name, (None, None))
        assert output != flow.output and masq != flow.masq, f"{flow.name!r} override is the same as the base value"
        flows.append(Flow(flow.name, flow.source, flow.dest, flow.dport, flow.output if output is None else output,
                          flow.masq if masq is None else masq))
    assert set(overrides) <= {f.name for f in INTERNAL_EXTERNAL_FLOWS}
    run_packet_flow_tests(rules, flows)


def test_load_balancer_ingress_ip_without_ip_mode_is_a_vip():
    # TestLoadBalancerIngressRouteTypeProxy, the cases "ipMode VIP" and "ipMode nil": the LB IP gets a rule.
    svc = make_service("ns1", "svc1", "10.20.30.43", [port("p80", 80, node_port=3001)], type="LoadBalancer",
                       load_balancer_ips=["1.2.3.6"])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("10.180.0.1")], P80)
    rules = sync([svc], [eps])
    assert any(re.match(r"-A KUBE-SERVICES .* -d 1\.2\.3\.6 ", line) for line in rules.splitlines())


def test_ipv6_endpoints_are_bracketed_and_hashed_bracketed():
    # TestNodePorts (IPv6) and kube-proxy's Endpoint.String(): [ip]:port in comments, DNAT and hashes.
    svc = make_service("ns1", "svc1", "fd00:172:30::41", [port("p80", 80)])
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint("fd00:10:180::1")], P80, address_type="IPv6")
    rules = sync([svc], [eps], family=6)
    assert "-A KUBE-SEP-" in rules and "-s fd00:10:180::1 -j KUBE-MARK-MASQ" in rules
    assert "--to-destination [fd00:10:180::1]:80" in rules
    assert '"ns1/svc1:p80 -> [fd00:10:180::1]:80"' in rules
    assert "! -s fd00:10::/64" in rules and "KUBE-FIREWALL" not in rules
    assert rules.splitlines()[-2].endswith("-m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS")
