"""Service ports, settings, the KubeProxy front door, scenarios, and bad input.

Service-map cases port ``TestBuildServiceMapAddRemove``, ``TestBuildServiceMapServiceHeadless``
and ``TestBuildServiceMapServiceTypeExternalName`` (``pkg/proxy/iptables/proxier_test.go``).
"""

import ipaddress
from dataclasses import replace
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.errors import InvalidValue, NotFound
from kubenet_lab.kubeproxy import KubeProxy, ProxierSettings, ProxyState, iptables_restore
from kubenet_lab.objects import Service, ServicePort
from kubeproxy_upstream import (
    check_iptables_rule_jumps,
    endpoint,
    endpoint_port,
    fake_proxier_settings,
    make_endpoint_slice,
    make_service,
    port,
)

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


def _ports(*specs):
    # addTestPort(array, name, protocol, port, nodeport, targetPort)
    return [ServicePort(port=p, target_port=t or p, protocol=proto, name=name, node_port=np) for name, proto, p, np, t in specs]


def test_build_service_map_add_remove():
    # TestBuildServiceMapAddRemove: 10 service ports; only the eTP=Local LoadBalancer has a health check.
    services = [
        make_service("somewhere-else", "cluster-ip", "172.30.55.4", _ports(
            ("something", "UDP", 1234, 4321, 0), ("somethingelse", "UDP", 1235, 5321, 0), ("sctpport", "SCTP", 1236, 6321, 0))),
        make_service("somewhere-else", "node-port", "172.30.55.10", _ports(
            ("blahblah", "UDP", 345, 678, 0), ("moreblahblah", "TCP", 344, 677, 0), ("muchmoreblah", "SCTP", 343, 676, 0)),
            type="NodePort"),
        make_service("somewhere", "load-balancer", "172.30.55.11", _ports(
            ("foobar", "UDP", 8675, 30061, 7000), ("baz", "UDP", 8676, 30062, 7001)),
            type="LoadBalancer", load_balancer_ips=["1.2.3.4"]),
        make_service("somewhere", "only-local-load-balancer", "172.30.55.12", _ports(
            ("foobar2", "UDP", 8677, 30063, 7002), ("baz", "UDP", 8678, 30064, 7003)),
            type="LoadBalancer", load_balancer_ips=["5.6.7.8"], external_traffic_policy="Local"),
    ]
    state = ProxyState.build(services, [], fake_proxier_settings(), 4,
                             health_check_node_ports={"somewhere/only-local-load-balancer": 345})
    assert len(state.service_ports) == 10
    health = {f"{sp.name.namespace}/{sp.name.name}": sp.health_check_node_port
              for sp in state.service_ports if sp.health_check_node_port}
    assert health == {"somewhere/only-local-load-balancer": 345}
    # "Remove some stuff": only services[0] without its first port left.
    one = replace(services[0], ports=services[0].ports[1:2])
    assert len(ProxyState.build([one], [], fake_proxier_settings(), 4).service_ports) == 1


def test_build_service_map_headless_and_external_name():
    # TestBuildServiceMapServiceHeadless, TestBuildServiceMapServiceTypeExternalName
    headless = Service(name="headless", namespace="somewhere-else", ports=tuple(_ports(("rpc", "UDP", 1234, None, 0))),
                       headless=True)
    without_port = Service(name="headless-without-port", namespace="somewhere-else", ports=(), headless=True)
    external = Service(name="external-name", namespace="somewhere-else", type="ExternalName",
                       ports=tuple(_ports(("blah", "UDP", 1235, 5321, 0))), cluster_ips=(ipaddress.ip_address("172.30.55.4"),))
    assert ProxyState.build([headless, without_port, external], [], fake_proxier_settings(), 4).service_ports == ()


def test_node_port_on_a_cluster_ip_service_is_programmed():
    # kube-proxy reads nodePort regardless of spec.type (TestBuildServiceMapAddRemove's first Service has them).
    svc = make_service("ns", "svc", "172.30.0.1", _ports(("p", "TCP", 80, 30080, 0)))
    eps = make_endpoint_slice("ns", "svc", 1, [endpoint("10.0.0.5")], [endpoint_port("p", 80)])
    assert "-A KUBE-NODEPORTS -m comment --comment ns/svc:p -m tcp -p tcp --dport 30080 -j KUBE-EXT-" in \
        iptables_restore([svc], [eps], fake_proxier_settings(nfacct=False))


# -- settings ---------------------------------------------------------------------------------


def test_real_kube_proxy_defaults():
    s = ProxierSettings("node-1")
    assert (s.mark, s.masquerade_bit, s.masquerade_all, s.localhost_nodeports, s.nfacct, s.random_fully,
            s.conntrack_tcp_be_liberal, s.detect_local_mode) == (
        "0x00004000", 14, False, True, False, True, False, "ClusterCIDR")
    rules = iptables_restore([], [], s)
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in rules
    assert "-j MASQUERADE --random-fully" in rules
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in rules
    assert ":KUBE-FIREWALL - [0:0]" in rules
    assert rules.splitlines()[-2].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


@pytest.mark.parametrize("bit, mark", [(0, "0x00000001"), (14, "0x00004000"), (31, "0x80000000")])
def test_mark_is_printed_like_go_percent_hash_08x(bit, mark):
    assert ProxierSettings("n", masquerade_bit=bit).mark == mark


@pytest.mark.parametrize("field, value, message", [
    ("masquerade_bit", 32, "must be within the range [0, 31]"),
    ("masquerade_bit", True, "must be within the range [0, 31]"),
    ("masquerade_mark", "0x8000", "must be 1 << masquerade_bit in hex"),
    ("detect_local_mode", "LocalCIDR", "must be one of ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix"),
    ("node_ips", ["192.168.0.1", "192.168.0.2"], "must hold at most one value per IP family"),
    ("node_ips", "192.168.0.300", "must be an IPv4 or IPv6 address"),
    ("cluster_cidrs", "10.0.0.0/33", "must be a CIDR"),
    ("nodeport_addresses", ["primary", "10.0.0.0/8"], "must be CIDRs, or 'primary' alone"),
    ("nodeport_addresses", ["10.0.0.1"], "must be a CIDR"),
    ("masquerade_all", "yes", "must be True or False"),
    ("pod_bridge_interface", "a bridge", "must be a Linux interface name"),
])
def test_invalid_settings_name_field_and_value(field, value, message):
    with pytest.raises(InvalidValue) as raised:
        ProxierSettings("node-1", **{field: value})
    assert raised.value.obj == "ProxierSettings" and raised.value.field == field and message in str(raised.value)


def test_detect_local_modes():
    s = ProxierSettings("n", detect_local_mode="BridgeInterface", pod_bridge_interface="cni0")
    assert s.local_detector(4).if_local == ("-i", "cni0") and s.local_detector(6).if_not_local == ("!", "-i", "cni0")
    s = ProxierSettings("n", detect_local_mode="InterfaceNamePrefix", pod_interface_name_prefix="veth")
    assert s.local_detector(4).if_not_local == ("!", "-i", "veth+")
    s = ProxierSettings("n", detect_local_mode="NodeCIDR", pod_cidrs="10.244.1.0/24", cluster_cidrs="10.244.0.0/16")
    assert s.local_detector(4).if_not_local == ("!", "-s", "10.244.1.0/24")
    with pytest.raises(InvalidValue, match="pod_bridge_interface' must be set when detect_local_mode is BridgeInterface"):
        ProxierSettings("n", detect_local_mode="BridgeInterface")


def test_local_detector_in_rules():
    svc = make_service("ns", "svc", "172.30.0.1", [port("p", 80)])
    eps = make_endpoint_slice("ns", "svc", 1, [endpoint("10.0.0.5")], [endpoint_port("p", 80)])
    rules = iptables_restore([svc], [eps], ProxierSettings("n", detect_local_mode="InterfaceNamePrefix",
                                                           pod_interface_name_prefix="cali"))
    assert "--dport 80 ! -i cali+ -j KUBE-MARK-MASQ" in rules
    assert "KUBE-MARK-MASQ" not in "".join(l for l in iptables_restore([svc], [eps], ProxierSettings("n")).splitlines()
                                           if l.startswith("-A KUBE-SVC-") and "cluster IP" in l)


def test_nodeport_addresses_primary():
    # --nodeport-addresses=primary: the node's primary IP per family, as /32 and /128.
    s = ProxierSettings("n", node_ips="192.168.0.11,fd00::11", nodeport_addresses="primary",
                        interface_addresses=["127.0.0.1", "192.168.0.11", "10.9.9.9", "fd00::11"])
    v4, v6 = iptables_restore([], [], s, 4).splitlines(), iptables_restore([], [], s, 6).splitlines()
    assert [l for l in v4 if "KUBE-NODEPORTS" in l and l.startswith("-A KUBE-SERVICES")] == [
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -d 192.168.0.11 -j KUBE-NODEPORTS']
    assert any(l.endswith("-d fd00::11 -j KUBE-NODEPORTS") for l in v6)
    # No 127.0.0.0/8 among the addresses: no localhost NodePorts, so no anti-martian rule either.
    assert not s.localhost_nodeports_for(4) and ":KUBE-FIREWALL - [0:0]" not in v4


# -- the front door ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_every_scenario_gives_a_consistent_ruleset_on_every_node(scenario):
    cluster = Cluster.load(scenario)
    for node in cluster.nodes:
        proxy = KubeProxy(cluster, node.name)
        for family in (4, 6):
            rules = proxy.iptables_restore(family)
            check_iptables_rule_jumps(rules)
            assert rules.startswith("*filter\n") and rules.endswith("COMMIT\n")


def test_kube_proxy_reads_node_and_cluster():
    cluster = Cluster.load(next(p for p in SCENARIOS if p.name == "three-node-vxlan.yaml"))
    node = cluster.nodes[0]
    proxy = KubeProxy(cluster, node.name, masquerade_all=True)
    assert proxy.settings.node_ips == node.ips and proxy.settings.cluster_cidrs == cluster.network.pod_cidrs
    assert proxy.settings.pod_cidrs == node.pod_cidrs and proxy.settings.masquerade_all
    before = proxy.iptables_restore()
    pod = cluster.add_pod("extra-backend", node=node.name, labels={"app": "web"}, ports={"http": 8080})
    after = proxy.iptables_restore()
    # Both web Services (targetPort "http" and 8080) gain the new pod as an endpoint.
    assert after.count("-j DNAT") == before.count("-j DNAT") + 2
    assert after.count(f"--to-destination {pod.ip}:8080") == 2


def test_dual_stack_gives_one_ruleset_per_family():
    cluster = Cluster.load(next(p for p in SCENARIOS if p.name == "dual-stack.yaml"))
    proxy = KubeProxy(cluster, "node-1")
    v4, v6 = proxy.iptables_restore(4), proxy.iptables_restore(6)
    assert "! -s 10.244.0.0/16" in v4 and ":" not in v4.split("--to-destination ")[1].split()[0].split(":")[0]
    assert "! -s fd00:10:244::/56" in v6 and "--to-destination [" in v6
    assert proxy.iptables_restore() == v4  # the cluster's first family


def test_kube_proxy_bad_arguments():
    cluster = Cluster.load(SCENARIOS[0])
    with pytest.raises(NotFound):
        KubeProxy(cluster, "no-such-node")
    with pytest.raises(InvalidValue, match="'masquerade_everything' must name a ProxierSettings field"):
        KubeProxy(cluster, cluster.nodes[0].name, masquerade_everything=True)
    with pytest.raises(InvalidValue, match="'family' must be 4"):
        KubeProxy(cluster, cluster.nodes[0].name).iptables_restore(5)
    with pytest.raises(InvalidValue, match="'family' must be 4"):
        iptables_restore([], [], ProxierSettings("n"), family=True)


def test_invalid_objects_raise_with_object_field_and_value():
    good = make_service("ns", "svc", "172.30.0.1", [port("p", 80)])
    bad_protocol = replace(good, ports=(ServicePort(80, 80, protocol="tcp", name="p"),))
    with pytest.raises(InvalidValue, match=r"Service ns/svc: 'spec.ports\[0\].protocol' must be one of TCP, UDP, SCTP \(got 'tcp'\)"):
        iptables_restore([bad_protocol], [], ProxierSettings("n"))
    bad_port = replace(good, ports=(ServicePort(0, 80, name="p"),))
    with pytest.raises(InvalidValue, match=r"'spec.ports\[0\].port' must be a port number from 1 to 65535 \(got 0\)"):
        iptables_restore([bad_port], [], ProxierSettings("n"))
    duplicate = replace(good, ports=(ServicePort(80, 80, name="p"), ServicePort(81, 81, name="p")))
    with pytest.raises(InvalidValue, match=r"'spec.ports\[1\].name' must be unique"):
        iptables_restore([duplicate], [], ProxierSettings("n"))
    with pytest.raises(InvalidValue, match="'services' must name each Service once"):
        iptables_restore([good, good], [], ProxierSettings("n"))


def test_lb_local_without_health_check_port_is_noted():
    svc = make_service("ns", "svc", "172.30.0.1", [port("p", 80, node_port=30080)], type="LoadBalancer",
                       external_traffic_policy="Local")
    state = ProxyState.build([svc], [], ProxierSettings("n"), 4)
    assert [i.upstream for i in state.ignored] == ["Service has no healthcheck nodeport"]
    assert "health check node port" not in iptables_restore([svc], [], ProxierSettings("n"))


def test_public_names_exist():
    import importlib

    import kubenet_lab.kubeproxy as package

    modules = ["chains", "endpoints", "iptables", "localdetect", "nodeportaddresses", "proxy", "serviceport",
               "settings", "state"]
    for module in [package] + [importlib.import_module(f"kubenet_lab.kubeproxy.{m}") for m in modules]:
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
