"""Chain names and probabilities against the values in kube-proxy's own expected outputs.

Every (input, hash) pair below appears in an expected ruleset of
``pkg/proxy/iptables/proxier_test.go``; the test that shows it is named.
"""

import pytest

from kubenet_lab.kubeproxy import chains
from kubenet_lab.kubeproxy.iptables import probability

# (service port name, protocol, 16-character hash, upstream test that shows it)
SERVICE_PORT_HASHES = [
    ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O", "TestOverallIPTablesRules"),
    ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT", "TestOverallIPTablesRules"),
    ("ns3/svc3:p80", "tcp", "X27LE4BHSL4DOUIK", "TestOverallIPTablesRules"),
    ("ns4/svc4:p80", "tcp", "4SW47YFZTEDKD3PK", "TestOverallIPTablesRules"),
    ("ns5/svc5:p80", "tcp", "NUKIZ6OKUXPJNT4C", "TestOverallIPTablesRules"),
    ("ns2/svc2:p8080", "tcp", "2VJB64SDSIJUP5T6", "TestSyncProxyRulesRepeated"),
    ("ns4/svc4:p8082", "tcp", "EBDQOQU5SJFXRIL3", "TestSyncProxyRulesLargeClusterMode"),
]

# (service port name, protocol, endpoint, KUBE-SEP hash, upstream test that shows it)
ENDPOINT_HASHES = [
    ("ns1/svc1:p80", "tcp", "10.180.0.1:80", "SXIVWICOYRO3J4NJ", "TestOverallIPTablesRules"),
    ("ns2/svc2:p80", "tcp", "10.180.0.2:80", "RS4RBKLTHTF2IUXJ", "TestOverallIPTablesRules"),
    ("ns3/svc3:p80", "tcp", "10.180.0.3:80", "OYPFS5VJICHGATKP", "TestOverallIPTablesRules"),
    ("ns4/svc4:p80", "tcp", "10.180.0.4:80", "UKSFD7AGPMPPLUHC", "TestOverallIPTablesRules"),
    ("ns4/svc4:p80", "tcp", "10.180.0.5:80", "C6EBXVWJJZMIWKLZ", "TestOverallIPTablesRules"),
    ("ns5/svc5:p80", "tcp", "10.180.0.3:80", "I77PXRDZVX7PMWMN", "TestOverallIPTablesRules"),
    ("ns1/svc1:p80", "tcp", "10.0.1.1:80", "SNQ3ZNILQDEJNDQO", "TestSyncProxyRulesRepeated"),
    ("ns2/svc2:p8080", "tcp", "10.0.2.1:8080", "UHEGFW77JX3KXTOV", "TestSyncProxyRulesRepeated"),
    ("ns3/svc3:p80", "tcp", "10.0.3.1:80", "BSWRHOQ77KEXZLNL", "TestSyncProxyRulesRepeated"),
    ("ns3/svc3:p80", "tcp", "10.0.3.2:80", "DKCFIS26GWF2WLWC", "TestSyncProxyRulesRepeated"),
    ("ns3/svc3:p80", "tcp", "10.0.3.3:80", "JVVZVJ7BSEPPRNBS", "TestSyncProxyRulesRepeated"),
    ("ns4/svc4:p80", "tcp", "10.0.4.1:80", "AYCN5HPXMIRJNJXU", "TestSyncProxyRulesRepeated"),
    ("ns1/svc1:p80", "tcp", "10.0.0.0:80", "DKGQUZGBKLTPAR56", "TestSyncProxyRulesLargeClusterMode"),
    ("ns3/svc3:p8081", "tcp", "203.0.113.4:8081", "RUVVH7YV3PHQBDOS", "TestSyncProxyRulesLargeClusterMode"),
    ("ns4/svc4:p8082", "tcp", "10.4.0.1:8082", "SU5STNODRYEWJAUF", "TestSyncProxyRulesLargeClusterMode"),
]


@pytest.mark.parametrize("name, protocol, expected, upstream", SERVICE_PORT_HASHES)
def test_service_port_chain_names(name, protocol, expected, upstream):
    assert chains.service_port_chain_hash(name, protocol) == expected
    assert chains.service_chain(name, protocol) == "KUBE-SVC-" + expected
    assert chains.local_service_chain(name, protocol) == "KUBE-SVL-" + expected
    assert chains.external_chain(name, protocol) == "KUBE-EXT-" + expected
    assert chains.firewall_chain(name, protocol) == "KUBE-FW-" + expected


@pytest.mark.parametrize("name, protocol, endpoint, expected, upstream", ENDPOINT_HASHES)
def test_endpoint_chain_names(name, protocol, endpoint, expected, upstream):
    assert chains.endpoint_chain(name, protocol, endpoint) == "KUBE-SEP-" + expected


def test_chain_names_fit_iptables_limit():
    # iptables chain names are at most 28 characters, the reason for the 16-character hash.
    longest = chains.endpoint_chain("a-very-long-namespace/" + "x" * 63 + ":port", "sctp", "[fd00::1]:65535")
    assert len(longest) == len("KUBE-SEP-") + 16 <= 28
    assert len(chains.external_chain("ns/svc", "udp")) <= 28


def test_protocol_is_part_of_the_hash():
    # A DNS Service's "dns" UDP and TCP ports would collide without it.
    assert chains.service_chain("kube-system/kube-dns:dns", "udp") != chains.service_chain("kube-system/kube-dns:dns", "tcp")


def test_service_chain_prefixes():
    assert all(chains.is_service_chain(p + "X") for p in chains.SERVICE_CHAIN_PREFIXES)
    fixed = [chains.KUBE_SERVICES, chains.KUBE_EXTERNAL_SERVICES, chains.KUBE_NODEPORTS, chains.KUBE_POSTROUTING,
             chains.KUBE_MARK_MASQ, chains.KUBE_FORWARD, chains.KUBE_PROXY_FIREWALL, chains.KUBE_FIREWALL]
    assert not any(chains.is_service_chain(c) for c in fixed)


def test_compute_probability():
    # TestComputeProbability
    expected = {1: "1.0000000000", 2: "0.5000000000", 10: "0.1000000000", 100: "0.0100000000",
                1000: "0.0010000000", 10000: "0.0001000000", 100000: "0.0000100000", 100001: "0.0000099999"}
    assert {n: probability(n) for n in expected} == expected
    previous = 0.0
    for n in range(100000, 1, -1):
        current = float(probability(n))
        assert current > previous, n
        previous = current


def test_probabilities_give_every_endpoint_one_nth():
    # The 1/n, 1/(n-1), ..., 1 chain of -m statistic rules is a uniform choice.
    n = 7
    remaining, shares = 1.0, []
    for i in range(n):
        p = float(probability(n - i)) if i < n - 1 else 1.0
        shares.append(remaining * p)
        remaining *= 1 - p
    assert shares == pytest.approx([1 / n] * n, abs=1e-9)
