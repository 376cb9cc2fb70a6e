"""The Cluster model: addresses from the real allocators' rules, slices from the controller's rules.

Expected values are reasoned from the real components, not read off this code:
kube-controller-manager gives the first node slot 0 of --cluster-cidr (it skips
nothing); host-local starts at rangeStart = .1, skips the gateway .1, so the first
pod gets .2; kube-apiserver gives default/kubernetes network+1 and puts automatic
ClusterIPs in the dynamic (upper) band first (KEP-3070).
"""

import copy
import ipaddress

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import AlreadyExists, Exhausted, InvalidValue, NotFound, Overlap

ip = ipaddress.ip_address
net = ipaddress.ip_network


def three_nodes(**kwargs) -> Cluster:
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", **kwargs)
    for i in range(1, 4):
        c.add_node(f"node-{i}", ip=f"192.168.0.{10 + i}")
    return c


def state(c: Cluster):
    """Everything observable about a cluster, to prove a failed call changed nothing."""
    probe = copy.deepcopy(c)
    return (c.to_objects(), [str(probe.add_node(f"probe-{i}").pod_cidr) for i in range(2)],
            str(probe.add_pod("probe", node="node-1").ip))


def test_node_podcidrs_follow_kube_controller_manager():
    c = three_nodes()
    assert [n.pod_cidr for n in c.nodes] == [net("10.244.0.0/24"), net("10.244.1.0/24"), net("10.244.2.0/24")]


def test_deleted_node_slot_is_not_reused_at_once():
    # cidrset is next-fit: after node-2 (slot 1) leaves, node-4 gets slot 3, not slot 1.
    c = three_nodes()
    c.remove_node("node-2")
    assert c.add_node("node-4", ip="192.168.0.14").pod_cidr == net("10.244.3.0/24")


def test_pod_ips_follow_host_local():
    c = three_nodes()
    pods = [c.add_pod(f"p{i}", node="node-2") for i in range(3)]
    assert [p.ip for p in pods] == [ip("10.244.1.2"), ip("10.244.1.3"), ip("10.244.1.4")]
    # host-local is round-robin from last_reserved_ip: a freed .2 is not handed out next.
    c.remove_pod("p0")
    assert c.add_pod("p3", node="node-2").ip == ip("10.244.1.5")


def test_calico_ipam_gives_block_addresses_from_dot_zero():
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", ipam="calico")
    c.add_node("node-1", ip="192.168.0.11")
    first = c.add_pod("a", node="node-1").ip
    block = c.blocks("node-1")[0]
    assert block.prefixlen == 26 and first == block.network_address
    assert c.node("node-1").pod_cidrs == ()


def test_kubernetes_service_gets_first_address_and_others_the_dynamic_band():
    c = three_nodes()
    kubernetes = c.add_service("kubernetes", port=443, target_port=6443)
    web = c.add_service("web", selector={"app": "web"}, port=80)
    assert kubernetes.cluster_ip == ip("10.96.0.1")
    # /12: offset min(max(16, 2**20 / 16), 256) = 256 -> static band .0.1-.1.0, dynamic from 10.96.1.1.
    assert ip("10.96.1.1") <= web.cluster_ip <= ip("10.111.255.254")


def test_requested_cluster_ip_and_node_port():
    c = three_nodes()
    svc = c.add_service("dns", port=53, protocol="UDP", cluster_ip="10.96.0.10")
    assert svc.cluster_ip == ip("10.96.0.10")
    np = c.add_service("web", type="NodePort", port=80, node_port=30080)
    assert np.ports[0].node_port == 30080
    auto = c.add_service("web2", type="NodePort", port=80)
    # KEP-3668: 30000-32767 has a static band of 2768 // 32 = 86 ports; automatic ports come from above it.
    assert 30086 <= auto.ports[0].node_port <= 32767


def test_endpoint_slices_resolve_named_target_ports_per_pod():
    c = three_nodes()
    c.add_pod("web-1", node="node-1", labels={"app": "web"}, ports={"http": 8080})
    c.add_pod("web-2", node="node-2", labels={"app": "web"}, ports={"http": 9090})
    c.add_pod("web-3", node="node-3", labels={"app": "web"})  # lacks the named port
    c.add_pod("other", node="node-3", labels={"app": "db"})
    svc = c.add_service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    slices = c.endpoint_slices(svc)
    by_port = {tuple(p.port for p in s.ports): [e.target_pod for e in s.endpoints] for s in slices}
    assert by_port == {(8080,): ["web-1"], (9090,): ["web-2"], (): ["web-3"]}
    assert all(s.address_type == "IPv4" and s.name.startswith("web-") for s in slices)


def test_endpoint_conditions_follow_the_controller():
    c = three_nodes()
    c.add_pod("ready", node="node-1", labels={"app": "web"})
    c.add_pod("unready", node="node-1", labels={"app": "web"}, ready=False)
    c.add_pod("leaving", node="node-2", labels={"app": "web"}, terminating=True)
    c.add_pod("done", node="node-2", labels={"app": "web"}, phase="Succeeded")
    c.add_pod("pending", node=None, labels={"app": "web"})
    svc = c.add_service("web", selector={"app": "web"}, port=80)
    conditions = {e.target_pod: (e.ready, e.serving, e.terminating)
                  for s in c.endpoint_slices(svc) for e in s.endpoints}
    assert conditions == {"ready": (True, True, False), "unready": (False, False, False),
                          "leaving": (False, True, True)}


def test_service_without_endpoints_has_one_empty_slice():
    c = three_nodes()
    svc = c.add_service("nothing", selector={"app": "none"}, port=80)
    (only,) = c.endpoint_slices(svc)
    assert only.endpoints == () and only.ports == ()


def test_host_network_pod_uses_node_address_and_no_ipam():
    c = three_nodes()
    p = c.add_pod("kube-proxy-1", node="node-1", host_network=True)
    assert p.ips == (ip("192.168.0.11"),)
    assert c.add_pod("next", node="node-1").ip == ip("10.244.0.2")


def test_dual_stack_everything_gets_two_families():
    c = Cluster(pod_cidr="10.244.0.0/16,fd00:10:244::/56", service_cidr=["10.96.0.0/16", "fd00:10:96::/112"])
    node = c.add_node("node-1", ip=["192.168.0.11", "fd00:192:168::11"])
    assert node.pod_cidrs == (net("10.244.0.0/24"), net("fd00:10:244::/64"))
    pod = c.add_pod("web-1", node="node-1", labels={"app": "web"})
    # host-local: IPv4 skips network and gateway (.2); IPv6 likewise skips ::0 and the gateway ::1.
    assert pod.ips == (ip("10.244.0.2"), ip("fd00:10:244::2"))
    svc = c.add_service("web", selector={"app": "web"}, port=80, ip_family_policy="PreferDualStack")
    assert [a.version for a in svc.cluster_ips] == [4, 6]
    assert sorted(s.address_type for s in c.endpoint_slices(svc)) == ["IPv4", "IPv6"]
    v6 = c.add_service("web-v6", selector={"app": "web"}, port=80, ip_families=["IPv6"])
    assert v6.cluster_ip.version == 6 and v6.ip_families == ("IPv6",)


def test_auto_node_addresses_start_at_eleven():
    c = Cluster()
    assert [c.add_node(f"n{i}").ip for i in range(2)] == [ip("192.168.0.11"), ip("192.168.0.12")]


def test_racks_place_nodes_on_their_subnet():
    c = Cluster(racks=[{"name": "rack-1", "subnet": "192.168.1.0/24", "tor": {"name": "tor-1", "asn": 65001}}])
    node = c.add_node("node-1", rack="rack-1")
    assert node.ip == ip("192.168.1.11") and node.rack == "rack-1"
    assert c.network.rack_of("node-1").name == "rack-1"
    with pytest.raises(InvalidValue, match="rack-1's subnet 192.168.1.0/24"):
        c.add_node("node-2", ip="192.168.9.11", rack="rack-1")


# -- bad input: the error names object, field and value, and nothing changes ----------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"pod_cidr": "10.244.0.0/33"}, InvalidValue, "'podCIDRs'"),
        ({"pod_cidr": "10.244.0.1/16"}, InvalidValue, "host bits"),
        ({"pod_cidr": "banana"}, InvalidValue, "banana"),
        ({"service_cidr": "10.244.128.0/20"}, Overlap, "serviceCIDRs"),
        ({"pod_cidr": "10.244.0.0/16,10.245.0.0/16"}, InvalidValue, "one CIDR per family"),
        ({"node_mask": 12}, InvalidValue, "nodeCIDRMaskSize"),
        ({"cni": "weave"}, InvalidValue, "'cni' must be one of"),
        ({"node_subnet": "10.244.3.0/24"}, Overlap, "underlay.subnet"),
        ({"mtu": 100}, InvalidValue, "underlay.mtu"),
    ],
)
def test_bad_cluster_settings(kwargs, error, words):
    with pytest.raises(error, match=words) as info:
        Cluster(**kwargs)
    assert info.value.field and info.value.value is not None


def test_ipv6_node_mask_more_than_16_bits_longer_is_refused():
    # kube-controller-manager: clusterSubnetMaxDiff = 16 for IPv6 (ErrCIDRSetSubNetTooBig).
    with pytest.raises(InvalidValue):
        Cluster(pod_cidr="10.244.0.0/16,fd00::/40", service_cidr="10.96.0.0/12,fd01::/112")
    Cluster(pod_cidr="10.244.0.0/16,fd00::/48", service_cidr="10.96.0.0/12,fd01::/112")


def test_bad_cluster_leaves_nothing_behind_and_errors_name_things():
    c = three_nodes()
    before = state(c)
    cases = [
        (lambda: c.add_node("node-1", ip="192.168.0.99"), AlreadyExists, "node-1"),
        (lambda: c.add_node("node-9", ip="192.168.0.11"), AlreadyExists, "192.168.0.11"),
        (lambda: c.add_node("node-9", ip="10.244.7.7"), Overlap, "10.244.7.7"),
        (lambda: c.add_node("node-9", ip="10.96.0.7"), Overlap, "serviceCIDRs"),
        (lambda: c.add_node("node-9", ip="192.168.0.300"), InvalidValue, "192.168.0.300"),
        (lambda: c.add_node("Node_9"), InvalidValue, "Node_9"),
        (lambda: c.add_node("node-9", pod_cidr="10.244.1.0/24"), AlreadyExists, "node-2"),
        (lambda: c.add_node("node-9", pod_cidr="10.250.0.0/24"), InvalidValue, "10.250.0.0/24"),
        (lambda: c.add_pod("p", node="node-7"), NotFound, "node-7"),
        (lambda: c.add_pod("p", node="node-1", ip="10.244.5.9"), InvalidValue, "10.244.5.9"),
        (lambda: c.add_pod("p", node="node-1", ports={"http": 70000}), InvalidValue, "70000"),
        (lambda: c.add_service("web", port=80, cluster_ip="10.96.0.1").__class__ and
         c.add_service("web2", port=80, cluster_ip="10.96.0.1"), AlreadyExists, "10.96.0.1"),
        (lambda: c.add_service("x", port=80, type="External"), InvalidValue, "spec.type"),
        (lambda: c.add_service("x", ports=[{"port": 80}, {"port": 81}]), InvalidValue, "name"),
        (lambda: c.add_service("x", port=80, external_traffic_policy="Local"), InvalidValue, "externalTrafficPolicy"),
        (lambda: c.add_service("x", port=80, ip_family_policy="RequireDualStack"), InvalidValue, "dual-stack"),
        (lambda: c.add_service("x", port=80, type="NodePort", node_port=80), InvalidValue, "30000-32767"),
        (lambda: c.remove_pod("ghost"), NotFound, "default/ghost"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words):
            call()
        c.remove_service("web") if "default/web" in {s.key for s in c.services} else None
        assert state(c) == before, words


def test_pod_ip_exhaustion_is_an_error_and_rolls_back():
    c = Cluster(pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12", node_mask=29)
    c.add_node("node-1", ip="192.168.0.11")
    pods = [c.add_pod(f"p{i}", node="node-1") for i in range(5)]  # /29: .2-.6, gateway .1 skipped
    assert pods[-1].ip == ip("10.244.0.6")
    with pytest.raises(Exhausted, match="10.244.0"):
        c.add_pod("p5", node="node-1")
    assert [p.name for p in c.pods] == [f"p{i}" for i in range(5)]


def test_node_cidr_exhaustion_is_an_error():
    c = Cluster(pod_cidr="10.244.0.0/23", service_cidr="10.96.0.0/12", node_mask=24)
    c.add_node("a"); c.add_node("b")
    with pytest.raises(Exhausted, match="no remaining CIDRs"):
        c.add_node("c")
    assert [n.name for n in c.nodes] == ["a", "b"]


def test_dual_stack_failure_in_second_family_releases_the_first():
    # IPv6 space is full while IPv4 has room: the IPv4 podCIDR taken first must be given back.
    c = Cluster(pod_cidr="10.244.0.0/16,fd00::/64", service_cidr="10.96.0.0/12,fd01::/112", node_mask_ipv6=64)
    c.add_node("a", ip="192.168.0.11")
    with pytest.raises(Exhausted):
        c.add_node("b", ip="192.168.0.12")
    c.remove_node("a")
    # next-fit: slot 1 was never kept by the failed call, so the next node gets it.
    assert c.add_node("b", ip="192.168.0.12").pod_cidrs[0] == net("10.244.1.0/24")


def test_failed_dual_stack_pod_restores_the_first_family_exactly():
    # The IPv6 address asked for is taken, after the IPv4 one was reserved: the IPv4 allocation
    # must be undone along with host-local's last_reserved_ip, so the next pod gets what it
    # would have got had nothing happened.
    c = Cluster(pod_cidr="10.244.0.0/16,fd00:10:244::/56", service_cidr="10.96.0.0/16,fd00:10:96::/112")
    c.add_node("node-1", ip=["192.168.0.11", "fd00:192:168::11"])
    c.add_pod("a", node="node-1", ip=["10.244.0.2", "fd00:10:244::9"])
    with pytest.raises(AlreadyExists, match="fd00:10:244::9"):
        c.add_pod("b", node="node-1", ip=["10.244.0.7", "fd00:10:244::9"])
    assert c.add_pod("c", node="node-1").ips == (ip("10.244.0.3"), ip("fd00:10:244::a"))


def test_calico_pool_needs_no_node_mask_and_errors_name_the_pod():
    # Calico carves the pool into /26 blocks; kube-controller-manager's node mask does not apply.
    c = Cluster(pod_cidr="10.244.0.0/26", service_cidr="10.96.0.0/12", ipam="calico")
    c.add_node("node-1", ip="192.168.0.11")
    for i in range(64):  # one block, every address usable, .0 and .63 included
        c.add_pod(f"p{i}", node="node-1")
    assert {p.ip for p in c.pods} == set(ipaddress.ip_network("10.244.0.0/26"))
    with pytest.raises(Exhausted, match="Pod default/p64: 'spec.nodeName'"):
        c.add_pod("p64", node="node-1")


def test_loadbalancer_with_local_policy_gets_a_health_check_node_port():
    # kube-apiserver allocates spec.healthCheckNodePort from the NodePort range for type LoadBalancer
    # with externalTrafficPolicy Local, and kube-proxy opens it in KUBE-NODEPORTS.
    c = three_nodes()
    lb = c.add_service("web", type="LoadBalancer", port=80, external_traffic_policy="Local")
    assert 30000 <= lb.health_check_node_port <= 32767 and lb.health_check_node_port != lb.ports[0].node_port
    rules = c.kube_proxy("node-1").iptables_restore()
    assert f"--dport {lb.health_check_node_port} -j ACCEPT" in rules
    with pytest.raises(InvalidValue, match="healthCheckNodePort"):
        c.add_service("other", port=80, health_check_node_port=31000)
    c.remove_service("web")
    assert c.node_port_allocator.free == 2768
