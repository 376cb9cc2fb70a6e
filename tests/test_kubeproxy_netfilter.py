"""The netfilter walk of kube-proxy's rules: verdicts, DNAT, masquerade, exact probabilities, rule counts.

Expected values come from the rules themselves (kube-proxy.md §4-§8) and from
kube-proxy's own packet-flow expectations: every flow test ported from
``proxier_test.go`` is run again here with our walk beside upstream's tracer
(``kubeproxy_upstream.trace_packet``), and both must give upstream's answer.
"""

import ipaddress
import statistics
import time
from fractions import Fraction

import pytest

import test_kubeproxy_harness
import test_kubeproxy_iptables
from kubenet_lab import Cluster
from kubenet_lab.errors import InvalidValue
from kubenet_lab.kubeproxy import iptables_restore
from kubenet_lab.kubeproxy.netfilter import Flow, Ruleset, kernel_probability
from kubeproxy_upstream import (
    TEST_NODE_IP,
    TEST_NODE_IPS,
    endpoint,
    endpoint_port,
    fake_proxier_settings,
    make_endpoint_slice,
    make_service,
    port,
    trace_packet,
)

ip = ipaddress.ip_address


# -- the same answers as kube-proxy's own tracer, on kube-proxy's own cases -----------------------


def upstream_form(result) -> tuple[str, bool]:
    """Our result in ``tracePacket``'s terms: the DNAT destinations of all branches (in rule order), or
    DROP/REJECT, or ACCEPT when a rule accepted; and whether any branch was marked for masquerade."""
    dnats = list(dict.fromkeys(b.dnat for b in result.branches if b.dnat))
    if result.verdict in ("DROP", "REJECT"):
        output = result.verdict
    elif dnats:
        output = ", ".join(dnats)
    else:
        output = "ACCEPT" if result.verdict_rule is not None else ""
    return output, any(b.masquerade for b in result.branches)


CHECKED = []


def both_tracers(rule_data, flows, node_ips=TEST_NODE_IPS):
    """Replaces ``run_packet_flow_tests``: upstream's tracer and ours must both give the expected answer."""
    rules = Ruleset.parse(rule_data)
    for flow in flows:
        _, output, masq = trace_packet(rule_data, flow.source, flow.protocol.lower(), flow.dest, str(flow.dport),
                                       node_ips)
        assert (output, masq) == (flow.output, flow.masq), f"upstream tracer: {flow.name}"
        source = ip(flow.source)
        ours = rules.walk(Flow(flow.source, flow.dest, flow.protocol, flow.dport,
                               locally_generated=flow.source in node_ips or source.is_loopback), local=node_ips)
        assert upstream_form(ours) == (flow.output, flow.masq), f"{flow.name}:\n{ours}"
        CHECKED.append(flow.name)


UPSTREAM_FLOW_TESTS = [
    (test_kubeproxy_harness, "test_trace_packet", ()),
    (test_kubeproxy_iptables, "test_no_endpoints_reject", ()),
    (test_kubeproxy_iptables, "test_cluster_ip_general", ()),
    (test_kubeproxy_iptables, "test_load_balancer", ()),
    (test_kubeproxy_iptables, "test_health_check_node_port", ()),
    (test_kubeproxy_iptables, "test_external_traffic_policy_local", ()),
    (test_kubeproxy_iptables, "test_external_traffic_policy_cluster", ()),
    *[(test_kubeproxy_iptables, "test_node_ports", (name,)) for name in test_kubeproxy_iptables.NODE_PORT_CASES],
]


@pytest.mark.parametrize("module, test, args", UPSTREAM_FLOW_TESTS,
                         ids=[f"{t}{'-' + a[0] if a else ''}" for _, t, a in UPSTREAM_FLOW_TESTS])
def test_same_answers_as_kube_proxys_tracer(monkeypatch, module, test, args):
    monkeypatch.setattr(module, "run_packet_flow_tests", both_tracers)
    before = len(CHECKED)
    getattr(module, test)(*args)
    assert len(CHECKED) > before


# -- exact probabilities --------------------------------------------------------------------------


def one_service(n: int, **service) -> str:
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)], **service)
    eps = make_endpoint_slice("ns1", "svc1", 1, [endpoint(f"10.180.0.{i}") for i in range(1, n + 1)],
                              [endpoint_port("p80", 80)])
    return iptables_restore([svc], [eps], fake_proxier_settings())


def walk(rules, src="10.0.0.2", dst="172.30.0.41", dport=80, **kwargs):
    return Ruleset.parse(rules).walk(Flow(src, dst, "tcp", dport), local=[TEST_NODE_IP], **kwargs)


@pytest.mark.parametrize("n", range(1, 7))
def test_every_endpoint_gets_one_nth(n):
    result = walk(one_service(n))
    probabilities = result.probabilities
    assert list(probabilities) == [f"10.180.0.{i}:80" for i in range(1, n + 1)]  # sorted by "ip:port"
    assert sum(probabilities.values()) == 1 and sum(result.kernel_probabilities.values()) == 1
    # ten printed decimals: each share within 1e-10 of 1/n; the kernel's 31-bit thresholds within n * 2**-31
    assert all(abs(p - Fraction(1, n)) < Fraction(1, 10**10) for p in probabilities.values())
    assert all(abs(d) < Fraction(1, 10**10) for d in result.deviations.values())
    assert (n in (1, 2)) == all(d == 0 for d in result.deviations.values())  # 1 and 0.5 print exactly
    assert all(abs(p - Fraction(1, n)) < Fraction(n, 2**31) for p in result.kernel_probabilities.values())
    assert len(result.branches) == n


def test_exact_shares_for_three_and_four_endpoints():
    # n=3: 0.3333333333, then 0.5000000000 of the remaining 0.6666666667
    three = walk(one_service(3)).probabilities
    assert list(three.values()) == [Fraction("0.3333333333"), Fraction("0.33333333335"), Fraction("0.33333333335")]
    # n=4: 0.25 exactly, then 0.75 x 0.3333333333, then 0.75 x 0.6666666667 / 2 twice
    four = walk(one_service(4)).probabilities
    assert list(four.values()) == [Fraction(1, 4), Fraction("0.249999999975"), Fraction("0.2500000000125"),
                                   Fraction("0.2500000000125")]
    # one and two endpoints come out exactly
    assert list(walk(one_service(1)).probabilities.values()) == [1]
    assert list(walk(one_service(2)).probabilities.values()) == [Fraction(1, 2), Fraction(1, 2)]


def test_kernel_thresholds():
    # lround(2**31 * p) / 2**31
    assert kernel_probability("0.5000000000") == Fraction(1, 2)
    assert kernel_probability("0.2500000000") == Fraction(1, 4)
    assert kernel_probability("0.3333333333") == Fraction(715827883, 2**31)  # 715827882.60 rounds up
    assert kernel_probability("0.1666666667") == Fraction(357913941, 2**31)  # 357913941.41 rounds down
    k = Fraction(715827883, 2**31)
    assert list(walk(one_service(3)).kernel_probabilities.values()) == [k, (1 - k) / 2, (1 - k) / 2]


def test_seeded_choice_and_forced_endpoint():
    rules = one_service(5)
    chosen = {walk(rules, seed=seed).dnat for seed in range(200)}
    assert chosen == {f"10.180.0.{i}:80" for i in range(1, 6)}  # every endpoint is drawn by some seed
    assert walk(rules, seed=7).dnat == walk(rules, seed=7).dnat
    forced = walk(rules, endpoint="10.180.0.3:80")
    assert forced.dnat == "10.180.0.3:80"
    assert forced.chosen.decisions == (False, False, True)  # 1/5 and 1/4 missed, 1/3 taken
    assert forced.chosen.probability == Fraction("0.8") * Fraction("0.75") * Fraction("0.3333333333")
    with pytest.raises(InvalidValue, match="'endpoint' must be one of"):
        walk(rules, endpoint="10.180.0.9:80")


# -- what matched, what was counted --------------------------------------------------------------


def test_hairpin_is_marked_and_masqueraded():
    result = walk(one_service(1), src="10.180.0.1")
    assert result.dnat == "10.180.0.1:80" and result.masquerade
    marks = [s.rule.text for s in result.steps if s.rule.target == "KUBE-MARK-MASQ"]
    assert marks == ["-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ"]
    assert result.masquerade_rule.text.startswith("-A KUBE-POSTROUTING -m comment --comment "
                                                  '"kubernetes service traffic requiring SNAT" -j MASQUERADE')
    assert result.mark == 0  # KUBE-POSTROUTING clears the bit (--xor-mark) before masquerading


def test_node_to_cluster_ip_enters_at_output_and_is_masqueraded():
    rules = Ruleset.parse(one_service(2))
    result = rules.walk(Flow(TEST_NODE_IP, "172.30.0.41", "tcp", 80, locally_generated=True), local=[TEST_NODE_IP])
    assert result.chains[:2] == ("nat OUTPUT", "nat KUBE-SERVICES")
    assert "filter OUTPUT" in result.chains and result.masquerade  # ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ


def test_no_endpoints_rejected_by_the_filter_rule():
    svc = make_service("ns1", "svc1", "172.30.0.41", [port("p80", 80)])
    result = walk(iptables_restore([svc], [], fake_proxier_settings()))
    assert result.verdict == "REJECT" and result.dnat is None
    assert result.verdict_rule.text == ('-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" '
                                        "-m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT")
    assert result.chains == ("nat PREROUTING", "nat KUBE-SERVICES", "filter FORWARD", "filter KUBE-PROXY-FIREWALL",
                             "filter KUBE-FORWARD", "filter KUBE-SERVICES")


def test_session_affinity_remembers_the_endpoint():
    rules = one_service(3, session_affinity_timeout=10800)
    first = walk(rules, endpoint="10.180.0.2:80")
    sep = first.dnat_rule.chain
    assert first.chosen.recent_set == (sep,)  # -m recent --name KUBE-SEP-... --set
    again = Ruleset.parse(rules).walk(Flow("10.0.0.2", "172.30.0.41", "tcp", 80, recent={sep}), local=[TEST_NODE_IP])
    assert again.probabilities == {"10.180.0.2:80": 1}  # --rcheck matches before any random rule


def services(n: int) -> str:
    svcs = [make_service("ns", f"svc{i}", str(ip("172.16.0.0") + i), [port("p80", 80)]) for i in range(n)]
    slices = [make_endpoint_slice("ns", f"svc{i}", 1, [endpoint(str(ip("10.128.0.0") + i))], [endpoint_port("p80", 80)])
              for i in range(n)]
    return iptables_restore(svcs, slices, fake_proxier_settings())


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_rules_evaluated_grow_with_services_like_iptables(n):
    rules = Ruleset.parse(services(n))
    # a miss compares the packet with every KUBE-SERVICES rule: nat PREROUTING 1, KUBE-SERVICES n + 1
    # (n Service rules, the NodePort tail call), filter FORWARD 4 + KUBE-FORWARD 3, nat POSTROUTING 1 + 1.
    miss = rules.walk(Flow("10.0.0.2", "10.0.0.3", "tcp", 80), local=[TEST_NODE_IP])
    assert miss.evaluated == n + 11 and miss.dnat is None
    # a hit on the Service written at position k of KUBE-SERVICES: k there, then SVC 2, SEP 2, and the rest
    text = services(n)
    service_lines = [line for line in text.splitlines() if line.startswith("-A KUBE-SERVICES ")]
    k, line = len(service_lines) - 1, service_lines[-2]
    target = line.split(" -d ")[1].split()[0]
    hit = rules.walk(Flow("10.0.0.2", target, "tcp", 80), local=[TEST_NODE_IP])
    assert hit.evaluated == 1 + k + 2 + 2 + 7 + 2 and hit.dnat is not None


def test_index_keeps_the_walk_time_flat():
    def median_walk(rules, target):
        flow = Flow("10.0.0.2", target, "tcp", 80)
        times = []
        for _ in range(101):
            start = time.perf_counter()
            rules.walk(flow, local=[TEST_NODE_IP])
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    small, large = Ruleset.parse(services(10)), Ruleset.parse(services(3000))
    assert median_walk(large, "172.16.11.0") < 4 * median_walk(small, "172.16.0.5")


def test_bad_rules_are_refused_with_the_line():
    with pytest.raises(InvalidValue, match="not an option kube-proxy writes"):
        Ruleset.parse("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES --frobnicate 1 -j ACCEPT\nCOMMIT\n")
    with pytest.raises(InvalidValue, match="undeclared chain"):
        Ruleset.parse("*nat\n-A KUBE-SERVICES -j ACCEPT\nCOMMIT\n")
    with pytest.raises(InvalidValue, match="must end every table"):
        Ruleset.parse("*nat\n:KUBE-SERVICES - [0:0]\n")


def test_scenario_ruleset_shape():
    c = Cluster.load("scenarios/three-node-vxlan.yaml")
    rules = Ruleset.parse(c.kube_proxy("node-1").iptables_restore())
    assert [r.text for r in rules["nat"]["PREROUTING"].rules] == [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    assert rules["filter"]["INPUT"].rules[-1].target == "KUBE-FIREWALL"
    assert len(rules["nat"]["KUBE-SERVICES"].rules) == 4  # web, web-nodeport, db, the NodePort tail call
