"""BGP views: sessions on the topology, convergence timelines, sessions and UPDATEs by size.

Expected values are the formulas and hand counts of datapath.md §2.7:
* full mesh: n(n−1)/2 sessions; each node sends its one prefix to n − 1 peers,
  so n(n−1) UPDATEs to converge;
* r = 2 route reflectors (meshed with each other): r(n−r) + r(r−1)/2 = 2n − 3
  sessions. UPDATEs, counted by hand: each reflector sends its own prefix to its
  n − 1 peers, 2(n−1); each client sends its prefix to both reflectors, 2(n−2);
  each reflector reflects the n − 2 client prefixes to the n − 3 other clients
  and the other reflector, 2(n−2)²; each reflector reflects the other reflector's
  prefix (learnt from a non-client) to its n − 2 clients, 2(n−2).
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from kubenet_lab import Cluster
from kubenet_lab.bgp.decision import Step
from kubenet_lab.bgp.fabric import Fabric
from kubenet_lab.errors import InvalidValue
from kubenet_lab.exercises.ch03 import four_node_cluster, two_rack_cluster
from kubenet_lab.viz.bgp import (SESSION_DOWN, SESSION_UP, convergence_counts, decision_table, draw_convergence,
                                 draw_sessions, draw_sessions_vs_size, failure_events, failure_explorer, failure_model,
                                 scale_table, session_layout, sessions_vs_size, timeline_table)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rr_updates(n: int) -> int:
    return 2 * (n - 1) + 2 * (n - 2) + 2 * (n - 2) ** 2 + 2 * (n - 2)


# -- scale ----------------------------------------------------------------------------------

def test_sessions_and_updates_by_size_match_the_formulas():
    sizes = (4, 5, 8, 13, 20, 32)
    points = sessions_vs_size(sizes)
    assert [p.nodes for p in points] == list(sizes)
    for p in points:
        n = p.nodes
        assert p.mesh_sessions == n * (n - 1) // 2
        assert p.mesh_updates == n * (n - 1)
        assert p.rr_sessions == 2 * (n - 2) + 1 == 2 * n - 3
        assert p.rr_updates == rr_updates(n)
        assert p.reflectors == 2


def test_known_values_from_datapath_reference():
    (p,) = sessions_vs_size((100,))
    assert (p.mesh_sessions, p.rr_sessions) == (4950, 197)


def test_three_reflectors_follow_the_general_formula():
    (p,) = sessions_vs_size((10,), reflectors=3)
    assert p.rr_sessions == 3 * (10 - 3) + 3 * 2 // 2


def test_scale_table_and_figure():
    points = sessions_vs_size((4, 8))
    table = scale_table(points)
    assert table.rows == (("4", "6", "12", "5", "22"), ("8", "28", "56", "13", "110"))
    ax = draw_sessions_vs_size(points)
    assert "Full mesh vs route reflectors" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    assert len(ax.get_lines()) == 4
    assert [list(line.get_ydata()) for line in ax.get_lines()] == [[6, 28], [12, 56], [5, 13], [22, 110]]
    assert len(ax.get_legend().get_texts()) == 4


# -- sessions -------------------------------------------------------------------------------

def test_draw_sessions_full_mesh_colours_the_down_session():
    c = four_node_cluster()
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    fabric.session_down("node-1", "node-3")
    ax = draw_sessions(fabric, c)
    assert ax.get_title() == "BGP sessions: 6 configured, 5 Established"
    lines = [a.arrow_patch for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    colours = sorted(matplotlib.colors.to_hex(p.get_edgecolor()) for p in lines)
    assert colours.count(matplotlib.colors.to_hex(SESSION_DOWN)) == 1
    assert colours.count(matplotlib.colors.to_hex(SESSION_UP)) == 5
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["iBGP session, Established", "session down"]


def test_draw_sessions_marks_reflectors_and_clients():
    c = four_node_cluster("route-reflectors")
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    block = c.blocks("node-3")[0]
    ax = draw_sessions(fabric, c, prefix=block)
    boxes = {t.get_text().split("\n")[0]: t for t in ax.texts if t.get_text()}
    assert set(boxes) == {"node-1  (RR)", "node-2  (RR)", "node-3", "node-4"}
    assert boxes["node-1  (RR)"].get_bbox_patch().get_linewidth() > boxes["node-3"].get_bbox_patch().get_linewidth()
    assert "lowest peer address" in boxes["node-4"].get_text()
    assert "originates it" in boxes["node-3"].get_text()
    arrowheads = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None
                  and a.arrow_patch.get_arrowstyle().__class__.__name__ == "CurveFilledB"]
    assert len(arrowheads) == 4         # one per reflector-client session
    assert any("route reflector" in t.get_text() for t in ax.get_legend().get_texts())


def test_draw_sessions_per_rack_ebgp():
    c = two_rack_cluster()
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    ax = draw_sessions(fabric, c)
    assert ax.get_title() == "BGP sessions: 6 configured, 6 Established"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["eBGP session, Established"]
    pos = session_layout(fabric, c)
    assert set(pos) == {"spine", "tor-1", "tor-2", "node-1", "node-2", "node-3", "node-4"}
    assert pos["spine"][1] > pos["tor-1"][1] > pos["node-1"][1]


def test_layout_without_racks_is_a_circle():
    c = four_node_cluster()
    pos = session_layout(Fabric.from_cluster(c), c)
    radii = {round((x * x + y * y) ** 0.5, 6) for x, y in pos.values()}
    assert len(radii) == 1


# -- convergence ----------------------------------------------------------------------------

def test_link_down_counts_by_hand():
    c = two_rack_cluster()
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    result = fabric.link_down("tor-1")
    counts = convergence_counts(result)
    # step 1: the spine withdraws rack 1's three prefixes from tor-2 (1 UPDATE), tor-1 withdraws
    # rack 2's from node-1 and node-2 (2); step 2: tor-2 passes the withdrawal to node-3, node-4 (2)
    assert counts.updates == (0, 3, 2)
    assert counts.by_sender == {"spine": (0, 1, 0), "tor-1": (0, 2, 0), "tor-2": (0, 0, 2)}
    assert sum(counts.updates) == result.messages == 5
    # 3 prefixes lost at tor-1 and the spine at once, then 3 at tor-2 and at each of the 4 nodes
    assert counts.changes == (6, 9, 6)
    ax = draw_convergence(result)
    assert ax.get_title() == "link tor-1 - spine down: 5 UPDATEs in 2 steps"
    assert ax.get_xlabel().startswith("step")
    heights = [round(bar.get_height()) for container in ax.containers for bar in container]
    assert sum(heights) == 5
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Loc-RIB changes", "UPDATEs from spine", "UPDATEs from tor-1", "UPDATEs from tor-2"]


def test_initial_full_mesh_convergence():
    c = four_node_cluster()
    counts = convergence_counts(Fabric.from_cluster(c).converge())
    assert counts.updates == (0, 12)
    assert counts.changes == (4, 12)


# -- tables -------------------------------------------------------------------------------------

def test_decision_table_names_the_step():
    c = four_node_cluster("route-reflectors")
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    rows = {row[0]: row for row in decision_table(fabric, "node-4").rows}
    reflected = rows[str(c.blocks("node-3")[0])]
    assert reflected[4] == "192.168.0.13"            # ORIGINATOR_ID: node-3
    assert reflected[5] == "192.168.0.11"            # CLUSTER_LIST: node-1's router ID
    assert reflected[6] == Step.PEER_ADDRESS.value
    direct = rows[str(c.blocks("node-1")[0])]
    assert direct[6] == Step.CLUSTER_LIST_LENGTH.value
    assert rows[str(c.blocks("node-4")[0])][1:3] == ("local", "-")
    only = decision_table(fabric, "node-4", [c.blocks("node-2")[0], "10.0.0.0/8"])
    assert [r[0] for r in only.rows] == [str(c.blocks("node-2")[0]), "10.0.0.0/8"]
    assert only.rows[1][6] == "no route"


def test_timeline_table():
    c = two_rack_cluster()
    fabric = Fabric.from_cluster(c)
    fabric.converge()
    result = fabric.link_down("tor-1")
    table = timeline_table(result)
    assert table.title == str(result)
    assert len(table.rows) == len(result.timeline())
    assert timeline_table(result, "tor-2").rows[-1][2].startswith("sends UPDATE withdraw")


# -- failures ---------------------------------------------------------------------------------------

def test_failure_events_and_model():
    c = two_rack_cluster()
    fabric = Fabric.from_cluster(c)
    events = failure_events(fabric, c)
    assert events["link tor-1 - spine down"] == ("link_down", "tor-1")
    assert events["node-4 leaves"] == ("leave", "node-4")
    assert ("session_down", "tor-2", "node-3") in events.values()
    _, result = failure_model(c, events["link tor-1 - spine down"])
    assert result.messages == 5
    again, same = failure_model(c, events["link tor-1 - spine down"])
    assert same.messages == 5 and again.session_count == 6   # each call starts afresh
    label = next(k for k in events if k.startswith("node-4 withdraws"))
    assert failure_model(c, events[label])[1].messages == 6
    with pytest.raises(InvalidValue):
        failure_model(c, ("reboot", "tor-1"))


def test_failure_explorer_builds_widgets():
    pytest.importorskip("ipywidgets")
    c = two_rack_cluster()
    box = failure_explorer(c, routers=("node-1",))
    dropdown, answer = box.children[0].children[0], box.children[1]
    assert dropdown.options[0] == "link tor-1 - spine down"
    assert "$ ip route (BGP) on node-1" in answer.value
    before = answer.value
    dropdown.value = dropdown.options[1]
    assert answer.value != before and "$ ip route (BGP) on node-1" in answer.value


def test_flat_cluster_without_racks_offers_no_link_events():
    c = Cluster(cni="calico-bgp", bgp_design="full-mesh")
    for i in (1, 2, 3):
        c.add_node(f"node-{i}")
    events = failure_events(Fabric.from_cluster(c), c)
    assert not any(v[0] == "link_down" for v in events.values())
    assert len([v for v in events.values() if v[0] == "session_down"]) == 3
