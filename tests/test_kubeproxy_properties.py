"""Random Services and EndpointSlices: the ruleset is consistent, picks the right pool, and loads.

For any mix of Service types, traffic policies, affinity, external IPs, LB IPs
with source ranges, protocols and endpoint conditions:

* every jump goes to a declared, non-empty chain and no declared chain is unused
  (upstream's ``checkIPTablesRuleJumps``);
* a pod's connection to each ClusterIP:port reaches exactly the endpoints an
  independent reading of the EndpointSlice rules says it should (ready ones,
  else serving-and-terminating ones; only this node's for
  ``internalTrafficPolicy: Local``), or is REJECTed / DROPped, as upstream's
  packet tracer finds it;
* each pool's ``--probability`` chain gives every endpoint 1/n;
* as root, ``iptables-restore`` loads it into a fresh network namespace.
"""

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubenet_lab.kubeproxy import iptables_restore
from kubeproxy_upstream import (
    TEST_NODE_NAME,
    check_iptables_rule_jumps,
    endpoint,
    endpoint_port,
    fake_proxier_settings,
    make_endpoint_slice,
    make_service,
    port,
    trace_packet,
)

NODES = (TEST_NODE_NAME, "node-2", None)
CONDITIONS = (  # (ready, serving, terminating) as the EndpointSlice controller writes them
    (True, True, False),
    (False, False, False),
    (False, True, True),
    (False, False, True),
)


@st.composite
def clusters(draw):
    services, slices, health = [], [], {}
    next_node_port = 30000
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
        ports = []
        for j in range(draw(st.integers(1, 3))):
            node_port = None
            if kind != "ClusterIP" and draw(st.booleans()):
                node_port, next_node_port = next_node_port, next_node_port + 1
            ports.append(port(f"p{j}", 80 + j, draw(st.sampled_from(["TCP", "UDP", "SCTP"])), node_port))
        external_ips = [f"192.168.99.{i * 4 + k}" for k in range(draw(st.integers(0, 2)))]
        lb_ips = [f"5.6.{i}.{k}" for k in range(draw(st.integers(0, 2)))] if kind == "LoadBalancer" else []
        ranges = draw(st.lists(st.sampled_from(["203.0.113.0/25", "192.168.0.0/24", "198.51.100.0/24"]),
                               max_size=2, unique=True)) if lb_ips else []
        external_policy = draw(st.sampled_from(["Cluster", "Local"])) if kind != "ClusterIP" or external_ips else "Cluster"
        svc = make_service("ns", f"svc{i}", f"172.30.0.{i + 1}", ports, type=kind,
                           external_traffic_policy=external_policy,
                           internal_traffic_policy=draw(st.sampled_from(["Cluster", "Local"])),
                           external_ips=external_ips, load_balancer_ips=lb_ips, load_balancer_source_ranges=ranges,
                           session_affinity_timeout=draw(st.sampled_from([None, 10800, 60])))
        services.append(svc)
        if kind == "LoadBalancer" and external_policy == "Local":
            health[svc.key] = 32000 + i
        endpoints = []
        for k in range(draw(st.integers(0, 4))):
            ready, serving, terminating = draw(st.sampled_from(CONDITIONS))
            endpoints.append(endpoint(f"10.1.{i}.{k + 1}", draw(st.sampled_from(NODES)), ready=ready, serving=serving,
                                      terminating=terminating))
        slices.append(make_endpoint_slice("ns", f"svc{i}", 1, endpoints,
                                          [endpoint_port(p.name, 8080 + n, p.protocol) for n, p in enumerate(ports)]))
    return services, slices, health


def expected_from_a_pod(service, endpoints, port_index: int) -> str:
    """What a pod reaching ``service``'s ClusterIP:port gets: endpoints, REJECT or DROP."""
    usable = [e for e in endpoints if e.ready] or [e for e in endpoints if e.serving and e.terminating]
    if not usable:
        return "REJECT"
    if service.internal_traffic_policy == "Local":
        local = [e for e in endpoints if e.ready and e.node_name == TEST_NODE_NAME] or [
            e for e in endpoints if e.serving and e.terminating and e.node_name == TEST_NODE_NAME]
        if not local:
            return "DROP"
        usable = local
    return ", ".join(sorted(f"{e.address}:{8080 + port_index}" for e in usable))


def _uniform(rules: str) -> None:
    chains: dict[str, list[float]] = {}
    for line in rules.splitlines():
        if line.startswith(("-A KUBE-SVC-", "-A KUBE-SVL-")) and "-j KUBE-SEP-" in line and "--rcheck" not in line:
            words = line.split()
            p = float(words[words.index("--probability") + 1]) if "--probability" in words else 1.0
            chains.setdefault(words[1], []).append(p)
    for chain, probabilities in chains.items():
        assert probabilities[-1] == 1.0, chain
        remaining, shares = 1.0, []
        for p in probabilities:
            shares.append(remaining * p)
            remaining *= 1 - p
        assert shares == pytest.approx([1 / len(shares)] * len(shares), abs=1e-9), chain


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.booleans())
def test_random_clusters_give_consistent_rules_and_the_right_pool(cluster, masquerade_all):
    services, slices, health = cluster
    rules = iptables_restore(services, slices, fake_proxier_settings(masquerade_all=masquerade_all),
                             health_check_node_ports=health)
    check_iptables_rule_jumps(rules)
    _uniform(rules)
    for service, endpoint_slice in zip(services, slices):
        for index, service_port in enumerate(service.ports):
            _, output, masq = trace_packet(rules, "10.0.0.2", service_port.protocol.lower(), str(service.cluster_ip),
                                           str(service_port.port), [])
            assert output == expected_from_a_pod(service, endpoint_slice.endpoints, index)
            assert masq == (masquerade_all and output not in ("REJECT", "DROP"))


def _can_load() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "iptables-restore"))


@pytest.mark.skipif(not _can_load(), reason="needs root, ip and iptables-restore to load rules into a namespace")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_random_clusters_load_in_the_kernel(cluster):
    from test_kubeproxy_kernel import check_loads

    services, slices, health = cluster
    check_loads(iptables_restore(services, slices, fake_proxier_settings(nfacct=False), health_check_node_ports=health))
