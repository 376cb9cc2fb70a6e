"""Chapter 06's helpers and checkers.

Expected values come from the scenario's layout (scenarios/metallb-bgp.yaml: node
addresses, where the web pods run, the container port), from the rules the real
systems document, and from the kernel's ECMP arithmetic, not from the helpers:

* KEP-3668 / kubernetes ``pkg/registry/core/service/portallocator`` ``calculateRangeOffset``:
  the static band is min(max(16, size // 32), 128) ports at the bottom of the range;
* MetalLB ``speaker/bgp_controller.go`` ``ShouldAnnounce``: under Cluster every node announces a
  Service with a ready endpoint, under Local only the nodes with a ready local endpoint;
* kube-proxy ``KUBE-EXT-…`` under Cluster masquerades external traffic (kube-proxy.md §5 step 8),
  MASQUERADE writing the egress interface's address, the node's InternalIP on eth0;
* Linux ``fib_select_multipath`` (hash-threshold, RFC 2992): with n equal next hops, next hop i
  takes the hashes up to round((i + 1) * 2**31 / n) - 1;
* kube-proxy ``pkg/proxy/healthcheck/service_health.go``: 200 with local endpoints, 503 without.
"""

import ipaddress

import pytest

from kubenet_lab.errors import InvalidValue
from kubenet_lab.exercises import ch06
from kubenet_lab.overlay.entries import multipath_hash

NODE_IP = {"node-1": "192.168.1.11", "node-2": "192.168.1.12", "node-3": "192.168.2.11", "node-4": "192.168.2.12"}
EXTERNAL_CLIENT = "172.31.255.255"   # overlay/topology.py: the last /31 of the fabric subnet


@pytest.fixture(scope="module")
def cluster():
    return ch06.chapter_cluster()


def test_static_band_of_a_1000_port_range():
    # 1000 // 32 = 31 ports, between the 16 minimum and the 128 maximum.
    ch06.check_static_band((30000, 30030))
    with pytest.raises(AssertionError, match="default range"):
        ch06.check_static_band((30000, 30085))
    with pytest.raises(AssertionError, match="min\\(max\\(16, 1000 // 32\\), 128\\)"):
        ch06.check_static_band((30000, 30031))
    with pytest.raises(AssertionError, match="pair of port numbers"):
        ch06.check_static_band("30000-30030")


def test_nodeport_flow_is_dnatted_to_the_pod_and_masqueraded_to_the_node(cluster):
    pod = f"{cluster.pod('web-1').ip}:8080"          # containerPort http: 8080 in the scenario
    ch06.check_nodeport_flow({"dnat": pod, "source seen by web-1": NODE_IP["node-4"]})
    with pytest.raises(AssertionError, match="masquerade"):
        ch06.check_nodeport_flow({"dnat": pod, "source seen by web-1": EXTERNAL_CLIENT})
    with pytest.raises(AssertionError, match="targetPort"):
        ch06.check_nodeport_flow({"dnat": f"{cluster.pod('web-1').ip}:30080",
                                  "source seen by web-1": NODE_IP["node-4"]})
    with pytest.raises(AssertionError, match="keys"):
        ch06.check_nodeport_flow({"dnat": pod})


def test_local_next_hops_follow_the_pods():
    # web-1 on node-1, web-2 moved to node-4: one announcer per rack.
    ch06.check_tor_next_hops({"tor-1": {NODE_IP["node-1"]}, "tor-2": [NODE_IP["node-4"]]})
    with pytest.raises(AssertionError, match="withdraws"):
        ch06.check_tor_next_hops({"tor-1": {NODE_IP["node-1"]}, "tor-2": {NODE_IP["node-3"], NODE_IP["node-4"]}})
    with pytest.raises(AssertionError, match="spine"):
        ch06.check_tor_next_hops({"tor-1": {NODE_IP["node-1"], "172.31.255.0"}, "tor-2": {NODE_IP["node-4"]}})
    with pytest.raises(AssertionError, match="set of IP addresses"):
        ch06.check_tor_next_hops({"tor-1": "192.168.1.11", "tor-2": {NODE_IP["node-4"]}})


@pytest.mark.parametrize("policy, web_nodes, expected", [
    ("Cluster", ("node-1", "node-3"), ["node-1", "node-2", "node-3", "node-4"]),
    ("Local", ("node-1", "node-3"), ["node-1", "node-3"]),
    ("Local", ("node-2", "node-2"), ["node-2"]),
    ("Local", (), []),                              # no endpoint anywhere: nobody announces
    ("Cluster", (), []),
])
def test_announcers_follow_metallb_should_announce(policy, web_nodes, expected):
    assert ch06.announcers(ch06.chapter_cluster(policy=policy, web_nodes=web_nodes)) == expected


def test_tor_ecmp_sets_under_cluster(cluster):
    assert ch06.next_hops(cluster, "tor-1") == {NODE_IP["node-1"], NODE_IP["node-2"]}
    assert ch06.next_hops(cluster, "tor-2") == {NODE_IP["node-3"], NODE_IP["node-4"]}


def test_ecmp_choices_are_hash_threshold_slices():
    vip = ipaddress.ip_address("192.168.100.1")
    assert set(ch06.ecmp_choices(["192.168.1.11"], vip).values()) == {"192.168.1.11"}
    two = ch06.ecmp_choices(["192.168.1.12", "192.168.1.11"], vip)     # order of the route: sorted
    for client, hop in two.items():
        upper = multipath_hash(client, vip) > round(2**31 / 2) - 1
        assert hop == ("192.168.1.12" if upper else "192.168.1.11")
    with pytest.raises(InvalidValue, match="nexthops"):
        ch06.ecmp_choices([], vip)


def test_rehashed_count_is_the_upper_half_of_the_hash_space():
    vip = ipaddress.ip_address("192.168.100.1")      # the pool's first address (avoidBuggyIPs skips .0)
    # One next hop (node-1) becomes two (node-1, node-2): every hash above the first half moves.
    expected = sum(multipath_hash(client, vip) >= 2**30 for client in ch06.CLIENTS)
    assert 0 < expected < len(ch06.CLIENTS)
    ch06.check_rehashed(expected)
    with pytest.raises(AssertionError, match="hash space"):
        ch06.check_rehashed(0)
    with pytest.raises(AssertionError, match="client by client"):
        ch06.check_rehashed(expected + 1)


def test_health_check_answers_only_where_the_pods_are():
    local = ch06.chapter_cluster(policy="Local")
    rows = {row[0]: row for row in ch06.health_checks(local).rows}
    port = local.service("web").health_check_node_port
    assert rows["node-1"][1:] == (f"{NODE_IP['node-1']}:{port}", "1", "200 OK")
    assert rows["node-2"][2:] == ("0", "503 Service Unavailable")
    assert rows["node-3"][3] == "200 OK" and rows["node-4"][3] == "503 Service Unavailable"


def test_health_checks_need_a_local_load_balancer(cluster):
    with pytest.raises(InvalidValue, match="healthCheckNodePort"):
        ch06.health_checks(cluster)


def test_chapter_cluster_rejects_an_unknown_policy():
    with pytest.raises(InvalidValue, match="policy"):
        ch06.chapter_cluster(policy="Nearest")


def test_edge_view_tables_announcers_and_routes():
    view = ch06.edge_view("Local", ["node-1", "node-2"])
    rows = {row[0]: row[2] for row in view.table.rows}
    assert rows["node-1"] == rows["node-2"] == "announces /32"
    assert rows["node-3"] == rows["node-4"] == "-"
    assert rows["tor-1"] == f"{NODE_IP['node-1']}, {NODE_IP['node-2']}"
    # tor-2 learns the VIP only through the spine; the spine only from tor-1 (each ToR's .1 of its /31).
    assert rows["tor-2"].startswith("172.31.255.") and rows["spine"].startswith("172.31.255.")


def test_edge_explorer_redraws_when_a_pod_moves():
    pytest.importorskip("ipywidgets")
    box = ch06.edge_explorer("Local", ["node-1", "node-3"])
    (policy, web_1), (web_2, web_3) = (row.children for row in box.children[:2])
    table, image = box.children[2], box.children[3]
    assert "node-3" in table.value and bytes(image.value).startswith(b"\x89PNG")
    before, picture = table.value, bytes(image.value)
    web_2.value = "none"  # node-3 loses its only web pod: under Local it stops announcing the VIP
    assert table.value == ch06.edge_view("Local", ["node-1"]).table.html() != before
    assert bytes(image.value) != picture
