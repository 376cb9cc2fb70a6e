"""Packet walks through Services: kube-proxy's DNAT, masquerade and REJECT/DROP inside ``trace``.

Expected values are read off the rules kube-proxy writes (kube-proxy.md §5-§8)
for the scenario: ``web`` (port 80, targetPort ``http`` = containerPort 8080)
has endpoints 10.244.0.2 (web-1, node-1), 10.244.1.2 (web-2, node-2) and
10.244.2.2 (web-3, node-3), sorted as kube-proxy sorts them; its SVC chain
draws 0.3333333333 then 0.5000000000. Masquerade takes the egress device's
address: cni0 is .1 of the node's podCIDR, flannel.1 is .0.
"""

import ipaddress
from fractions import Fraction

import pytest

from kubenet_lab import Cluster
from kubenet_lab.datapath.trace import kube_proxy_rules, trace
from kubenet_lab.errors import InvalidValue

ip = ipaddress.ip_address
SCENARIO = "scenarios/three-node-vxlan.yaml"
WEB = {"web-1": "10.244.0.2", "web-2": "10.244.1.2", "web-3": "10.244.2.2"}


@pytest.fixture(scope="module")
def c():
    return Cluster.load(SCENARIO)


def hops(t, action):
    return [h for h in t.hops if h.action == action]


def test_pod_to_cluster_ip_is_dnated_to_a_web_endpoint_on_8080(c):
    vip = c.service("web").cluster_ips[0]
    t = c.trace("client", str(vip), proto="tcp", dport=80)
    assert t.outcome == "delivered" and t.dst == vip
    (dnat,) = hops(t, "dnat")
    assert dnat.namespace == "node-1" and dnat.interface == "cni0"
    assert dnat.decided_by.startswith("-A KUBE-SEP-") and "-j DNAT --to-destination 10.244." in dnat.decided_by
    delivered = t.hops[-1]
    assert delivered.namespace in {f"pod:default/{name}" for name in WEB}
    assert str(delivered.state.inner.dst) in WEB.values() and delivered.state.inner.dport == 8080
    assert delivered.state.inner.src == c.pod("client").ips[0]  # pod traffic to a ClusterIP is not masqueraded
    assert not hops(t, "masquerade")


def test_the_default_choice_is_a_seeded_draw(c):
    first = [trace(c, "client", "web", proto="tcp", dport=80, seed=s).service_choice.chosen for s in range(40)]
    again = [trace(c, "client", "web", proto="tcp", dport=80, seed=s).service_choice.chosen for s in range(40)]
    assert first == again and set(first) == {f"{a}:8080" for a in WEB.values()}


@pytest.mark.parametrize("pod", sorted(WEB))
def test_forced_endpoint_and_exact_odds(c, pod):
    t = trace(c, "client", "web", proto="tcp", dport=80, endpoint=pod)
    assert t.hops[-1].namespace == f"pod:default/{pod}"
    choice = t.service_choice
    assert choice.node == "node-1" and choice.chosen == f"{WEB[pod]}:8080"
    assert choice.frontend == f"{c.service('web').cluster_ips[0]}:80"
    # 0.3333333333 for the first; 0.6666666667 x 0.5 for each of the other two
    assert choice.probabilities == {"10.244.0.2:8080": Fraction("0.3333333333"),
                                    "10.244.1.2:8080": Fraction("0.33333333335"),
                                    "10.244.2.2:8080": Fraction("0.33333333335")}
    k = Fraction(715827883, 2**31)
    assert list(choice.kernel_probabilities.values()) == [k, (1 - k) / 2, (1 - k) / 2]


def test_remote_endpoint_crosses_the_overlay_after_dnat(c):
    t = trace(c, "client", "web", proto="tcp", dport=80, endpoint="web-3")
    actions = [h.action for h in t.hops]
    assert actions.index("dnat") < actions.index("encapsulate") < actions.index("decapsulate")
    underlay = next(h for h in t.wire_hops if h.state.outer is not None)
    assert str(underlay.state.outer.dst) == "192.168.0.13" and str(underlay.state.inner.dst) == "10.244.2.2"
    assert [node for node, _ in t.netfilter] == ["node-1", "node-3"]  # node-3 walks the decapsulated packet too
    assert t.netfilter[1][1].dnat is None
    assert any("un-DNAT" in n and "10.244.2.2:8080" in n for n in t.notes)


def test_udp_cluster_ip():
    c = Cluster()
    c.add_node("node-1")
    c.add_node("node-2")
    c.add_pod("dns", node="node-2", labels={"app": "dns"})
    c.add_pod("client", node="node-1")
    c.add_service("dns", selector={"app": "dns"}, port=53, target_port=5353, protocol="UDP")
    t = c.trace("client", str(c.service("dns").cluster_ips[0]), proto="udp", dport=53)
    assert t.outcome == "delivered" and t.hops[-1].state.inner.dport == 5353
    assert "-m udp -p udp -j DNAT --to-destination 10.244.1.2:5353" in hops(t, "dnat")[0].decided_by
    assert t.service_choice.probabilities == {"10.244.1.2:5353": 1}
    # TCP to the same port matches no rule: no DNAT, the packet follows node-1's default route out
    tcp = c.trace("client", str(c.service("dns").cluster_ips[0]), proto="tcp", dport=53)
    assert not hops(tcp, "dnat") and tcp.outcome == "exited"


def test_node_to_cluster_ip_is_masqueraded_to_the_egress_device(c):
    remote = trace(c, "node-1", "web", proto="tcp", dport=80, endpoint="web-2")
    (masq,) = hops(remote, "masquerade")
    assert masq.namespace == "node-1" and masq.interface == "flannel.1"
    assert masq.detail.startswith("source 192.168.0.11 -> 10.244.0.0")
    assert "KUBE-SVC-" in masq.detail  # marked by the SVC chain's ! -s 10.244.0.0/16 rule
    assert masq.decided_by.startswith('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic '
                                      'requiring SNAT" -j MASQUERADE')
    assert str(remote.hops[-1].state.inner.src) == "10.244.0.0"
    local = trace(c, "node-1", "web", proto="tcp", dport=80, endpoint="web-1")
    assert hops(local, "masquerade")[0].interface == "cni0" and str(local.hops[-1].state.inner.src) == "10.244.0.1"


def test_nodeport_to_another_node_is_masqueraded_there(c):
    t = trace(c, "node-1", "192.168.0.12", proto="tcp", dport=30080, endpoint="web-3")
    assert t.outcome == "delivered" and t.hops[-1].namespace == "pod:default/web-3"
    (dnat,) = hops(t, "dnat")
    assert dnat.namespace == "node-2" and dnat.interface == "eth0"
    assert dnat.detail.startswith("192.168.0.12:30080 -> 10.244.2.2:8080")
    (masq,) = hops(t, "masquerade")
    assert masq.namespace == "node-2" and masq.detail.startswith("source 192.168.0.11 -> 10.244.1.0")
    assert "KUBE-EXT-" in masq.detail  # "masquerade traffic for ... external destinations"
    assert str(t.hops[-1].state.inner.src) == "10.244.1.0"
    local = trace(c, "node-1", "192.168.0.12", proto="tcp", dport=30080, endpoint="web-2")
    assert str(local.hops[-1].state.inner.src) == "10.244.1.1"  # out of cni0 on node-2
    assert len(local.notes) == 3 and "un-SNAT" in local.notes[1] and "un-DNAT" in local.notes[2]


def test_pod_to_its_own_nodes_nodeport(c):
    t = trace(c, "client", "192.168.0.11", proto="tcp", dport=30080, endpoint="web-1")
    assert hops(t, "dnat")[0].namespace == "node-1" and t.hops[-1].namespace == "pod:default/web-1"
    assert hops(t, "masquerade")  # eTP Cluster: KUBE-EXT marks all external-destination traffic


def local_policy_cluster() -> Cluster:
    c = Cluster()
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
    c.add_pod("web-1", node="node-1", labels={"app": "web"})
    c.add_service("web-local", selector={"app": "web"}, port=80, type="NodePort", node_port=30090,
                  external_traffic_policy="Local")
    c.add_service("web-lb", selector={"app": "web"}, port=80, type="LoadBalancer", node_port=30091,
                  load_balancer_ips=["203.0.113.10"], external_traffic_policy="Local")
    return c


def test_local_policy_nodeport_without_local_endpoint_is_dropped():
    c = local_policy_cluster()
    t = c.trace("node-1", "192.168.0.12", proto="tcp", dport=30090)
    assert t.outcome == "dropped" and "has no local endpoints" in t.reason
    drop = t.hops[-1]
    assert drop.namespace == "node-2" and drop.action == "drop"
    assert drop.decided_by == ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web-local has no local '
                               'endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30090 -j DROP')


def test_local_policy_nodeport_keeps_the_client_source():
    c = local_policy_cluster()
    t = c.trace("node-2", "192.168.0.11", proto="tcp", dport=30090)
    assert t.outcome == "delivered" and t.hops[-1].namespace == "pod:default/web-1"
    assert not hops(t, "masquerade") and str(t.hops[-1].state.inner.src) == "192.168.0.12"
    assert "KUBE-SVL-" in " ".join(s.rule.chain for s in t.netfilter[-1][1].steps)  # the local-endpoints chain


def test_local_policy_load_balancer_without_local_endpoint_is_dropped_by_the_rules():
    from kubenet_lab.kubeproxy.netfilter import Flow

    c = local_policy_cluster()
    rules = kube_proxy_rules(c, c.topology(), "node-2")
    external = rules.walk(Flow("198.51.100.7", "203.0.113.10", "tcp", 80, in_interface="eth0"),
                          local=c.topology()["node-2"].local_addresses())
    assert external.verdict == "DROP" and external.dnat is None
    assert external.verdict_rule.text == ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web-lb has no '
                                          'local endpoints" -m tcp -p tcp -d 203.0.113.10 --dport 80 -j DROP')
    # on node-1, which has the endpoint, the same packet goes to it through KUBE-SVL, unmasqueraded
    here = kube_proxy_rules(c, c.topology(), "node-1").walk(
        Flow("198.51.100.7", "203.0.113.10", "tcp", 80, in_interface="eth0"),
        local=c.topology()["node-1"].local_addresses())
    assert here.dnat == "10.244.0.2:80" and not here.masquerade


def test_service_without_endpoints_is_rejected():
    c = Cluster()
    c.add_node("node-1")
    c.add_pod("client", node="node-1")
    c.add_service("empty", selector={"app": "nothing"}, port=80)
    t = c.trace("client", str(c.service("empty").cluster_ips[0]), proto="tcp", dport=80)
    assert t.outcome == "dropped" and "ICMP port unreachable" in t.reason
    drop = t.hops[-1]
    assert drop.action == "drop" and drop.namespace == "node-1"
    assert drop.decided_by == (f'-A KUBE-SERVICES -m comment --comment "default/empty has no endpoints" -m tcp -p tcp '
                               f"-d {c.service('empty').cluster_ips[0]} --dport 80 -j REJECT")
    assert t.service_choice is None and not hops(t, "dnat")


def test_hairpin_is_masqueraded_like_kube_proxy_does(c):
    t = trace(c, "web-1", "web", proto="tcp", dport=80, endpoint="web-1")
    assert t.outcome == "delivered" and t.hops[-1].namespace == "pod:default/web-1"
    (masq,) = hops(t, "masquerade")
    assert masq.interface == "cni0" and masq.detail.startswith("source 10.244.0.2 -> 10.244.0.1")
    walk = t.netfilter[0][1]
    marked = [s.rule.text for s in walk.steps if s.rule.target == "KUBE-MARK-MASQ"]
    assert len(marked) == 1 and marked[0].startswith("-A KUBE-SEP-") and "-s 10.244.0.2 -j KUBE-MARK-MASQ" in marked[0]
    assert str(t.hops[-1].state.inner.src) == "10.244.0.1"
    # the same pod reaching another endpoint is not hairpin traffic: not masqueraded
    assert not hops(trace(c, "web-1", "web", proto="tcp", dport=80, endpoint="web-2"), "masquerade")


def test_ping_to_a_cluster_ip_is_not_load_balanced(c):
    t = c.trace("client", "web")
    assert not hops(t, "dnat") and t.outcome == "exited"  # kube-proxy's rules are per protocol and port


def test_rulesets_are_parsed_once_per_cluster_state():
    c = local_policy_cluster()
    first = kube_proxy_rules(c, c.topology(), "node-1")
    assert kube_proxy_rules(c, c.topology(), "node-1") is first
    c.add_service("more", selector={"app": "web"}, port=81)
    assert kube_proxy_rules(c, c.topology(), "node-1") is not first
    assert c.trace("node-1", "more", proto="tcp", dport=81).service_choice.probabilities == {"10.244.0.2:81": 1}


def test_refusals(c):
    with pytest.raises(InvalidValue, match="'endpoint' must be one of"):
        trace(c, "client", "web", proto="tcp", dport=80, endpoint="db-1")
    with pytest.raises(InvalidValue, match="no Service has this ClusterIP"):
        c.trace("client", "10.96.0.99", proto="tcp", dport=80)
    ipvs = Cluster(kube_proxy_mode="ipvs")
    ipvs.add_node("node-1")
    ipvs.add_pod("a", node="node-1", labels={"app": "a"})
    ipvs.add_service("a", selector={"app": "a"}, port=80)
    with pytest.raises(InvalidValue, match="ipvs mode"):
        ipvs.trace("a", str(ipvs.service("a").cluster_ips[0]), proto="tcp", dport=80)
    assert ipvs.trace("a", "a", proto="tcp", dport=80).hops[-1].namespace == "pod:default/a"  # a pod name wins
    cilium = Cluster(cni="cilium-vxlan")
    cilium.add_node("node-1")
    cilium.add_pod("a", node="node-1", labels={"app": "a"})
    cilium.add_service("a", selector={"app": "a"}, port=80, type="NodePort", node_port=30001)
    with pytest.raises(InvalidValue, match="Cilium"):
        cilium.trace("node-1", str(cilium.node("node-1").ip), proto="tcp", dport=30001)
    assert cilium.trace("a", "node-1").outcome == "delivered"  # non-Service walks are unchanged
