"""The Services views: chain graph, load-balancing simulation, rules per packet (kubenet_lab.viz.services)."""

from fractions import Fraction

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kubenet_lab import Cluster  # noqa: E402
from kubenet_lab.errors import NotFound  # noqa: E402
from kubenet_lab.kubeproxy import Flow, Ruleset  # noqa: E402
from kubenet_lab.viz.services import (  # noqa: E402
    chain_graph, draw_chain_graph, draw_load_balancing, draw_mode_costs, draw_rules_per_packet, path_edges,
    rules_per_packet, rules_per_packet_explorer, simulate_connections)


@pytest.fixture(scope="module")
def c():
    return Cluster.load("scenarios/three-node-vxlan.yaml")


@pytest.fixture(scope="module")
def text(c):
    return c.kube_proxy("node-1").iptables_restore()


def test_chain_graph_of_a_three_endpoint_service(c, text):
    g = chain_graph(text, "default/web")
    seps = [n for n in g if n.startswith("KUBE-SEP-")]
    assert len(seps) == 3
    (svc,) = [n for n in g if n.startswith("KUBE-SVC-")]
    assert g.has_edge("KUBE-SERVICES", svc) and "KUBE-MARK-MASQ" in g
    to_sep = [g.edges[e] for e in g.out_edges(svc) if e[1].startswith("KUBE-SEP-")]
    assert [e["printed"] for e in to_sep] == ["0.3333333333", "0.5000000000", None]
    assert [e["probability"] for e in to_sep] == [Fraction("0.3333333333"), Fraction(1, 2), 1]
    assert sorted(g.nodes[s]["dnat"] for s in seps) == ["10.244.0.2:8080", "10.244.1.2:8080", "10.244.2.2:8080"]
    assert all(g.has_edge(s, "KUBE-MARK-MASQ") for s in seps)  # hairpin
    assert chain_graph(Ruleset.parse(text), "default/web:http").nodes == g.nodes


def test_nodeport_graph_has_the_external_chains(text):
    g = chain_graph(text, "default/web-nodeport")
    assert any(n.startswith("KUBE-EXT-") for n in g) and g.has_edge("KUBE-SERVICES", "KUBE-NODEPORTS")


def test_unknown_service_and_no_endpoints():
    c = Cluster()
    c.add_node("node-1", ip="192.168.0.11")
    c.add_service("empty", selector={"app": "none"}, port=80)
    text = c.kube_proxy("node-1").iptables_restore()
    g = chain_graph(text, "default/empty")
    assert g.has_edge("filter KUBE-SERVICES", "REJECT")
    with pytest.raises(NotFound):
        chain_graph(text, "default/nothing")


def test_path_from_a_trace_and_a_walk(c, text):
    g = chain_graph(text, "default/web")
    t = c.trace("client", "web", proto="tcp", dport=80, endpoint="web-2")
    edges = path_edges(g, t)
    assert edges[0][0] == "KUBE-SERVICES" and edges[-1][1] == next(
        n for n in g if g.nodes[n].get("dnat") == "10.244.1.2:8080")
    assert path_edges(g, t.netfilter[0][1]) == edges


def test_simulation_is_seeded_and_near_one_third(c, text):
    flow = Flow("10.244.0.3", c.service("web").cluster_ips[0], "tcp", 80, in_interface="cni0")
    counts = simulate_connections(text, flow, n=10000, seed=0)
    assert sum(counts.values()) == 10000 and len(counts) == 3
    assert all(abs(n / 10000 - 1 / 3) < 0.02 for n in counts.values())
    assert simulate_connections(text, flow, n=10000, seed=0) == counts
    assert simulate_connections(text, flow, n=10000, seed=1) != counts


def test_rules_per_packet_grows_by_one_per_service():
    rows = rules_per_packet((10, 20, 40))
    for a, b in zip(rows, rows[1:]):
        assert b.to_last_service - a.to_last_service == b.services - a.services
        assert b.no_service - a.no_service == b.services - a.services
        assert b.rules > a.rules


def test_nftables_and_ipvs_cost_does_not_depend_on_the_number_of_services():
    """One verdict-map lookup (nftables), one ipset and one IPVS-table lookup (IPVS): flat lines."""
    rows = rules_per_packet((10, 200))
    assert rows[0].nftables == rows[1].nftables and rows[0].ipvs == rows[1].ipvs
    assert rows[1].nftables < rows[1].to_last_service and rows[1].ipvs < rows[1].to_last_service


def test_ipvs_count_is_the_glue_rules_on_the_path_plus_one_lookup():
    """Counted by hand from kube-proxy's IPVS glue for node-1 (no NodePorts, no local endpoints):
    nat PREROUTING 1 jump + KUBE-SERVICES 4 (127/8 RETURN, cluster-IP MASQ, addrtype LOCAL ->
    KUBE-NODE-PORT which is empty in nat, ACCEPT on KUBE-CLUSTER-IP); filter INPUT 3 jumps +
    KUBE-IPVS-FILTER 2 (RETURN on KUBE-LOAD-BALANCER, RETURN on KUBE-CLUSTER-IP) + KUBE-PROXY-FIREWALL 0
    + KUBE-NODE-PORT 1 (health check); the IPVS lookup 1; filter OUTPUT 1 jump; nat POSTROUTING 1 jump
    + KUBE-POSTROUTING 1 (unmarked: RETURN). Total 1+4+3+2+1+1+1+1+1 = 15."""
    assert rules_per_packet((10,))[0].ipvs == 15


def test_drawings_return_titled_axes(c, text):
    import matplotlib.pyplot as plt

    g = chain_graph(text, "default/web")
    t = c.trace("client", "web", proto="tcp", dport=80)
    for ax in (draw_chain_graph(g, t),
               draw_load_balancing({"a": 50, "b": 50}, {"a": Fraction(1, 2), "b": Fraction(1, 2)}),
               draw_rules_per_packet(rules_per_packet((10, 100)))):
        assert ax.get_title()
        plt.close(ax.figure)
    fig, ax = plt.subplots()
    assert draw_rules_per_packet(rules_per_packet((10,)), ax=ax) is ax
    assert ax.get_xscale() == "log" and ax.get_xlabel() and ax.get_ylabel()
    plt.close(fig)


def test_mode_costs_bars_and_explorer():
    import matplotlib.pyplot as plt

    row = rules_per_packet((10,))[0]
    ax = draw_mode_costs(row)
    assert [round(bar.get_height()) for bar in ax.patches] == [row.to_last_service, row.nftables, row.ipvs]
    assert "10 Services" in ax.get_title()
    plt.close(ax.figure)
    box = rules_per_packet_explorer(services=20)
    slider, image = box.children[0].children[0], box.children[1]
    assert slider.value == 20 and bytes(image.value).startswith(b"\x89PNG")
    before = image.value
    slider.value = 200  # the iptables bar grows with the Services: a different picture
    assert bytes(image.value).startswith(b"\x89PNG") and bytes(image.value) != bytes(before)
