"""EndpointsMap and CategorizeEndpoints against kube-proxy's own test cases.

From kubernetes/kubernetes: ``pkg/proxy/topology_test.go`` ``TestCategorizeEndpoints``
(every case without topology hints: :class:`~kubenet_lab.objects.Endpoint` carries
no hints, so the hint cases cannot be expressed) and
``pkg/proxy/iptables/proxier_test.go`` ``TestUpdateEndpointsMap`` (the endpoints
kube-proxy holds once the "current" slices of each case are applied; the
change-tracking, conntrack and health-check parts are not rule generation).
"""

import ipaddress

import pytest

from kubenet_lab.errors import InvalidValue
from kubenet_lab.kubeproxy import EndpointInfo, ServicePortInfo, ServicePortName, categorize_endpoints
from kubenet_lab.kubeproxy.endpoints import endpoints_map
from kubenet_lab.objects import Endpoint, EndpointSlice
from kubeproxy_upstream import TEST_NODE_NAME, endpoint, endpoint_port, make_endpoint_slice


def _ep(text: str, ready=False, serving=False, terminating=False, local=False) -> EndpointInfo:
    # A Go &BaseEndpointInfo{...}: unset booleans are false.
    ip, port = text.rsplit(":", 1)
    return EndpointInfo(ip, int(port), is_local=local, ready=ready, serving=serving, terminating=terminating)


def _svc(internal_local=False, external_local=False, node_port=0) -> ServicePortInfo:
    # A Go &BaseServicePortInfo{internalPolicyLocal, externalPolicyLocal, nodePort}.
    return ServicePortInfo(ServicePortName("ns", "svc", "", "TCP"), ipaddress.ip_address("10.96.0.1"), 80,
                           node_port=node_port, external_policy_local=external_local,
                           internal_policy_local=internal_local)


# TestCategorizeEndpoints: name -> (service, endpoints, cluster, local, all, onlyRemoteEndpoints);
# None means "the service does not use this kind of endpoints".
CATEGORIZE_CASES = {
    "internalTrafficPolicy: Local, with empty endpoints": (_svc(internal_local=True), [], None, set(), None, False),
    "internalTrafficPolicy: Local, but all endpoints are remote": (
        _svc(internal_local=True), [_ep("10.0.0.0:80", ready=True), _ep("10.0.0.1:80", ready=True)],
        None, set(), None, True),
    "internalTrafficPolicy: Local, all endpoints are local": (
        _svc(internal_local=True), [_ep("10.0.0.0:80", ready=True, local=True), _ep("10.0.0.1:80", ready=True, local=True)],
        None, {"10.0.0.0:80", "10.0.0.1:80"}, None, False),
    "internalTrafficPolicy: Local, some endpoints are local": (
        _svc(internal_local=True), [_ep("10.0.0.0:80", ready=True, local=True), _ep("10.0.0.1:80", ready=True)],
        None, {"10.0.0.0:80"}, None, False),
    "Cluster traffic policy, endpoints not Ready": (
        _svc(), [_ep("10.0.0.0:80"), _ep("10.0.0.1:80")], set(), None, None, False),
    "Cluster traffic policy, some endpoints are Ready": (
        _svc(), [_ep("10.0.0.0:80"), _ep("10.0.0.1:80", ready=True)], {"10.0.0.1:80"}, None, None, False),
    "Cluster traffic policy, all endpoints are terminating": (
        _svc(), [_ep("10.0.0.0:80", serving=True, terminating=True, local=True),
                 _ep("10.0.0.1:80", serving=True, terminating=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, None, None, False),
    "iTP: Local, eTP: Cluster, some endpoints local": (
        _svc(internal_local=True, node_port=8080), [_ep("10.0.0.0:80", ready=True, local=True), _ep("10.0.0.1:80", ready=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, {"10.0.0.0:80"}, {"10.0.0.0:80", "10.0.0.1:80"}, False),
    "iTP: Cluster, eTP: Local, some endpoints local": (
        _svc(external_local=True, node_port=8080), [_ep("10.0.0.0:80", ready=True, local=True), _ep("10.0.0.1:80", ready=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, {"10.0.0.0:80"}, {"10.0.0.0:80", "10.0.0.1:80"}, False),
    "iTP: Local, eTP: Local, some endpoints local": (
        _svc(True, True, 8080), [_ep("10.0.0.0:80", ready=True, local=True), _ep("10.0.0.1:80", ready=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, {"10.0.0.0:80"}, {"10.0.0.0:80", "10.0.0.1:80"}, False),
    "iTP: Local, eTP: Local, all endpoints remote": (
        _svc(True, True, 8080), [_ep("10.0.0.0:80", ready=True), _ep("10.0.0.1:80", ready=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, set(), {"10.0.0.0:80", "10.0.0.1:80"}, False),
    "iTP: Local, eTP: Local, all endpoints remote and terminating": (
        _svc(True, True, 8080), [_ep("10.0.0.0:80", serving=True, terminating=True),
                                 _ep("10.0.0.1:80", serving=True, terminating=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, set(), {"10.0.0.0:80", "10.0.0.1:80"}, True),
    "iTP: Cluster, eTP: Local, with terminating endpoints": (
        _svc(external_local=True, node_port=8080), [
            _ep("10.0.0.0:80", ready=True), _ep("10.0.0.1:80", local=True),
            _ep("10.0.0.2:80", serving=True, terminating=True, local=True), _ep("10.0.0.3:80", serving=True, terminating=True)],
        {"10.0.0.0:80"}, {"10.0.0.2:80"}, {"10.0.0.0:80", "10.0.0.2:80"}, False),
    "externalTrafficPolicy ignored if not externally accessible": (
        _svc(external_local=True), [_ep("10.0.0.0:80", ready=True), _ep("10.0.0.1:80", ready=True, local=True)],
        {"10.0.0.0:80", "10.0.0.1:80"}, None, {"10.0.0.0:80", "10.0.0.1:80"}, False),
    "no cluster endpoints for iTP:Local internal-only service": (
        _svc(internal_local=True), [_ep("10.0.0.0:80", ready=True), _ep("10.0.0.1:80", ready=True, local=True)],
        None, {"10.0.0.1:80"}, {"10.0.0.1:80"}, False),
}


@pytest.mark.parametrize("name", list(CATEGORIZE_CASES))
def test_categorize_endpoints(name):
    # TestCategorizeEndpoints
    svc, endpoints, cluster, local, all_endpoints, only_remote = CATEGORIZE_CASES[name]
    pools = categorize_endpoints(tuple(sorted(endpoints, key=str)), svc)
    assert svc.uses_cluster_endpoints == (cluster is not None)
    assert svc.uses_local_endpoints == (local is not None)
    assert {str(e) for e in pools.cluster} == (cluster or set())
    assert {str(e) for e in pools.local} == (local or set())
    if cluster is not None and local is None:
        all_endpoints = cluster
    elif local is not None and cluster is None:
        all_endpoints = local
    assert {str(e) for e in pools.reachable} == all_endpoints
    assert pools.has_any == (len(all_endpoints) > 0 or only_remote)


def _subset(ns, name, num, endpoints, ports):
    return make_endpoint_slice(ns, name, num, endpoints, [endpoint_port(p, n, "UDP") for p, n in ports])


LOCAL = TEST_NODE_NAME
# The slices of TestUpdateEndpointsMap, by upstream name.
subset1 = _subset("ns1", "ep1", 1, [endpoint("10.1.1.1")], [("p11", 11)])
subset2 = _subset("ns1", "ep1", 2, [endpoint("10.1.1.2")], [("p12", 12)])
named_port_local = [_subset("ns1", "ep1", 1, [endpoint("10.1.1.1", LOCAL)], [("p11", 11)])]
named_port_renamed = [_subset("ns1", "ep1", 1, [endpoint("10.1.1.1")], [("p11-2", 11)])]
named_port_renumbered = [_subset("ns1", "ep1", 1, [endpoint("10.1.1.1")], [("p11", 22)])]
named_ports_local_no_local = [_subset("ns1", "ep1", 1, [endpoint("10.1.1.1"), endpoint("10.1.1.2", LOCAL)],
                                      [("p11", 11), ("p12", 12)])]
multiple_subsets_with_local = [subset1, _subset("ns1", "ep1", 2, [endpoint("10.1.1.2", LOCAL)], [("p12", 12)])]
multiple_subsets_multiple_ports_local = [
    _subset("ns1", "ep1", 1, [endpoint("10.1.1.1", LOCAL)], [("p11", 11), ("p12", 12)]),
    _subset("ns1", "ep1", 2, [endpoint("10.1.1.3")], [("p13", 13)]),
]
multiple_subsets_ips_ports = [
    _subset("ns1", "ep1", 1, [endpoint("10.1.1.1"), endpoint("10.1.1.2", LOCAL)], [("p11", 11), ("p12", 12)]),
    _subset("ns1", "ep1", 2, [endpoint("10.1.1.3"), endpoint("10.1.1.4", LOCAL)], [("p13", 13), ("p14", 14)]),
    _subset("ns2", "ep2", 1, [endpoint("10.2.2.1"), endpoint("10.2.2.2", LOCAL)], [("p21", 21), ("p22", 22)]),
]
complex_after = [
    _subset("ns1", "ep1", 1, [endpoint("10.1.1.1"), endpoint("10.1.1.11")], [("p11", 11)]),
    _subset("ns1", "ep1", 2, [endpoint("10.1.1.2")], [("p12", 12), ("p122", 122)]),
    _subset("ns3", "ep3", 1, [endpoint("10.3.3.3")], [("p33", 33)]),
    _subset("ns4", "ep4", 1, [endpoint("10.4.4.4", LOCAL)], [("p44", 44)]),
]

# TestUpdateEndpointsMap: case -> (current slices, expectedResult as {"ns/name:port": [(endpoint, isLocal)]}).
UPDATE_CASES = {
    "nothing": ([], {}),
    "no change, named port, local": (named_port_local, {"ns1/ep1:p11": [("10.1.1.1:11", True)]}),
    "no change, multiple subsets": ([subset1, subset2], {
        "ns1/ep1:p11": [("10.1.1.1:11", False)], "ns1/ep1:p12": [("10.1.1.2:12", False)]}),
    "no change, multiple subsets, multiple ports, local": (multiple_subsets_multiple_ports_local, {
        "ns1/ep1:p11": [("10.1.1.1:11", True)], "ns1/ep1:p12": [("10.1.1.1:12", True)],
        "ns1/ep1:p13": [("10.1.1.3:13", False)]}),
    "no change, multiple endpoints, subsets, IPs, and ports": (multiple_subsets_ips_ports, {
        "ns1/ep1:p11": [("10.1.1.1:11", False), ("10.1.1.2:11", True)],
        "ns1/ep1:p12": [("10.1.1.1:12", False), ("10.1.1.2:12", True)],
        "ns1/ep1:p13": [("10.1.1.3:13", False), ("10.1.1.4:13", True)],
        "ns1/ep1:p14": [("10.1.1.3:14", False), ("10.1.1.4:14", True)],
        "ns2/ep2:p21": [("10.2.2.1:21", False), ("10.2.2.2:21", True)],
        "ns2/ep2:p22": [("10.2.2.1:22", False), ("10.2.2.2:22", True)]}),
    "add an IP and port": (named_ports_local_no_local, {
        "ns1/ep1:p11": [("10.1.1.1:11", False), ("10.1.1.2:11", True)],
        "ns1/ep1:p12": [("10.1.1.1:12", False), ("10.1.1.2:12", True)]}),
    "remove an IP and port": ([subset1], {"ns1/ep1:p11": [("10.1.1.1:11", False)]}),
    "add a subset": (multiple_subsets_with_local, {
        "ns1/ep1:p11": [("10.1.1.1:11", False)], "ns1/ep1:p12": [("10.1.1.2:12", True)]}),
    "rename a port": (named_port_renamed, {"ns1/ep1:p11-2": [("10.1.1.1:11", False)]}),
    "renumber a port": (named_port_renumbered, {"ns1/ep1:p11": [("10.1.1.1:22", False)]}),
    "complex add and remove": (complex_after, {
        # Sorted as strings: "10.1.1.11:11" < "10.1.1.1:11" because '1' < ':'.
        "ns1/ep1:p11": [("10.1.1.11:11", False), ("10.1.1.1:11", False)],
        "ns1/ep1:p12": [("10.1.1.2:12", False)],
        "ns1/ep1:p122": [("10.1.1.2:122", False)],
        "ns3/ep3:p33": [("10.3.3.3:33", False)],
        "ns4/ep4:p44": [("10.4.4.4:44", True)]}),
}


@pytest.mark.parametrize("name", list(UPDATE_CASES))
def test_update_endpoints_map(name):
    # TestUpdateEndpointsMap (expectedResult)
    slices, expected = UPDATE_CASES[name]
    result = endpoints_map(slices, 4, TEST_NODE_NAME, [])
    assert all(key.protocol == "UDP" for key in result)
    assert {str(key): [(str(e), e.is_local) for e in eps] for key, eps in result.items()} == expected


def test_duplicate_endpoint_prefers_the_non_terminating_one():
    # endpointslicecache.go addEndpoints: a reused pod IP keeps the running pod, not the terminating one.
    running = endpoint("10.0.1.1", "node-a", ready=True)
    terminating = endpoint("10.0.1.1", "node-b", ready=False, serving=True, terminating=True)
    for order in ([running, terminating], [terminating, running]):
        slices = [make_endpoint_slice("ns", "svc", i, [e], [endpoint_port("", 80)]) for i, e in enumerate(order)]
        [[found]] = endpoints_map(slices, 4, "node-a", []).values()
        assert found.ready and found.is_local


def test_skipped_objects_are_noted_as_kube_proxy_logs_them():
    unnamed = make_endpoint_slice("ns", "svc", 1, [endpoint("10.0.1.1")], [endpoint_port(None, 80)])
    no_number = make_endpoint_slice("ns", "svc", 2, [endpoint("10.0.1.1")], [endpoint_port("http", 0)])
    no_address = make_endpoint_slice("ns", "svc", 3, [Endpoint(addresses=())], [endpoint_port("http", 80)])
    unlabelled = EndpointSlice(name="orphan", service="", address_type="IPv4", endpoints=(), ports=())
    fqdn = EndpointSlice(name="names", service="svc", address_type="FQDN", endpoints=(), ports=())
    ignored = []
    assert endpoints_map([unnamed, no_number, no_address, unlabelled, fqdn], 4, "node-a", ignored) == {}
    assert [i.upstream for i in ignored] == [
        "Ignoring port with nil name",
        "Ignoring invalid endpoint port",
        "Ignoring invalid endpoint port with empty address",
        "no kubernetes.io/service-name label set on endpoint slice: orphan",
        "EndpointSlice address type not supported",
    ]
    assert str(ignored[0]) == ("EndpointSlice ns/svc-1: 'ports[0].name' is unset (write \"\" for an unnamed port) "
                               "(got None) [Ignoring port with nil name]")


def test_address_of_the_wrong_family_is_an_error():
    bad = make_endpoint_slice("ns", "svc", 1, [endpoint("fd00::1")], [endpoint_port("", 80)])
    with pytest.raises(InvalidValue, match=r"EndpointSlice ns/svc-1: 'endpoints\[0\].addresses\[0\]' must be an IPv4"):
        endpoints_map([bad], 4, "node-a", [])


def test_only_slices_of_the_family_count():
    v4 = make_endpoint_slice("ns", "svc", 1, [endpoint("10.0.0.1")], [endpoint_port("", 80)])
    v6 = make_endpoint_slice("ns", "svc", 2, [endpoint("fd00::1")], [endpoint_port("", 80)], address_type="IPv6")
    assert [str(e) for [e] in endpoints_map([v4, v6], 6, "n", []).values()] == ["[fd00::1]:80"]
    assert [str(e) for [e] in endpoints_map([v4, v6], 4, "n", []).values()] == ["10.0.0.1:80"]
