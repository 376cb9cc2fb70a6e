"""The explorers of chapters 01, 02 and 04, driven as a learner would: set a control, read what is redrawn.

Outside a kernel ipywidgets still runs ``observe`` callbacks on every change (course.md
§2.5). Each redraw renders one matplotlib figure into the explorer's ``Image`` widget
(its ``savefig`` is watched, so the test reads the very figure behind the PNG), and the
text beside it lands in the ``HTML`` widget. Expected values come from the systems the
chapters teach, not from the explorers:

* kube-controller-manager numbers the ``--node-cidr-mask-size`` slots of the cluster
  CIDR from 0 (slot i of /26s in 10.244.0.0/16 starts at 10.244.0.0 + 64 i), and the CNI
  host-local plugin gives a node's pods .2, .3, ... of its podCIDR (chapter 01);
* kube-proxy's iptables proxier writes ``--probability`` 1/(n − i) with Go's ``%0.10f``
  on every pool rule but the last (proxier.go ``probability``; chapter 04), and a
  Service without endpoints gets only a filter-table REJECT ("has no endpoints").
"""

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from kubenet_lab import Cluster
from kubenet_lab.errors import InvalidValue
from kubenet_lab.viz.explorers import (endpoints_cluster, endpoints_explorer, podcidr_cluster, podcidr_explorer,
                                       walk_explorer)

widgets = pytest.importorskip("ipywidgets")

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


RENDERED: list[Figure] = []


@pytest.fixture(autouse=True)
def watch_rendering(monkeypatch):
    """Record every figure rendered to an image, and close them all afterwards."""
    render = Figure.savefig

    def savefig(self, *args, **kwargs):
        RENDERED.append(self)
        return render(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    RENDERED.clear()
    yield
    RENDERED.clear()
    plt.close("all")


def image(box) -> bytes:
    return bytes(next(w for w in box.children if isinstance(w, widgets.Image)).value)


def shown_text(box) -> str:
    return next(w for w in box.children if isinstance(w, widgets.HTML)).value


def redrawn(change, box=None):
    """Call ``change`` and return the one figure it rendered into the explorer's image; fail if
    it rendered none or several, or if the image did not change."""
    before = len(RENDERED), box and image(box)
    change()
    new = RENDERED[before[0]:]
    assert len(new) == 1, f"expected one redrawn figure, got {len(new)}"
    if box is not None:
        assert image(box) != before[1] and image(box).startswith(b"\x89PNG")
    return new[0]


def built(make):
    """Build an explorer with ``make()``; return it and the figure it drew at once, for its starting values."""
    made = []
    figure = redrawn(lambda: made.append(make()))
    assert image(made[0]).startswith(b"\x89PNG")
    return made[0], figure


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def controls(box) -> dict:
    """The explorer's controls by their description."""
    return {w.description: w for row in box.children if isinstance(row, widgets.HBox) for w in row.children}


def shown_rules(box) -> list[str]:
    text = shown_text(box)
    assert text.startswith("<pre>") and text.endswith("</pre>")
    return html.unescape(text[len("<pre>"):-len("</pre>")]).splitlines()


def probabilities(rules: list[str]) -> list[str | None]:
    return [r.split("--probability ")[1].split()[0] if "--probability" in r else None
            for r in rules if "KUBE-SEP-" in r]


# -- chapter 01: nodes and node mask --------------------------------------------------------------


def test_podcidr_explorer_redraws_topology_and_address_map():
    box, first = built(podcidr_explorer)
    top, bottom = first.axes
    assert "node-3\n192.168.0.13\npods 10.244.2.0/24" in texts(top)  # slot 2 of the /24s
    assert "web-3\n10.244.2.2" in texts(top)

    controls_ = controls(box)
    figure = redrawn(lambda: setattr(controls_["nodes"], "value", 5), box)
    assert "node-5\n192.168.0.15\npods 10.244.4.0/24" in texts(figure.axes[0])

    figure = redrawn(lambda: setattr(controls_["node mask"], "value", 26), box)
    top, bottom = figure.axes
    assert "node-5\n192.168.0.15\npods 10.244.1.0/26" in texts(top)  # slot 4 x 64 addresses = 10.244.1.0
    assert "(1024 slots in all" in bottom.get_xlabel()               # 2 ** (26 - 16)
    assert "/26" in top.get_title()

    figure = redrawn(lambda: setattr(controls_["pods/node"], "value", 2), box)
    pods = texts(figure.axes[0])
    assert "web-6\n10.244.0.3" in pods and "web-10\n10.244.1.3" in pods  # each node's second pod: .3


def test_podcidr_explorer_offers_the_chapter_masks():
    options = [value for _, value in controls(podcidr_explorer())["node mask"].options]
    assert 24 in options and 26 in options  # kube-controller-manager's default, and chapter 01's /26 blocks


def test_podcidr_cluster_rejects_counts_the_drawing_cannot_show():
    with pytest.raises(InvalidValue, match="nodes"):
        podcidr_cluster(nodes=0)
    with pytest.raises(InvalidValue, match="pods_per_node"):
        podcidr_cluster(pods_per_node=9)


# -- chapter 02: any pod to any pod -------------------------------------------------------------


def test_walk_explorer_redraws_the_walk_for_each_pair():
    c = Cluster.load(SCENARIOS / "three-node-vxlan.yaml")
    box, first = built(lambda: walk_explorer(c, "web-1", "web-3"))
    assert first.axes[0].get_title() == "web-1 → 10.244.2.2 (icmp, flannel-vxlan): delivered"
    assert "flannel.1" in shown_text(box)  # the hop table: node-1 routes into its VTEP

    pick = controls(box)
    assert list(pick["to"].options) == ["web-1", "client", "web-2", "db-1", "web-3", "node-1", "node-2", "node-3"]
    figure = redrawn(lambda: setattr(pick["to"], "value", "db-1"), box)
    assert figure.axes[0].get_title() == "web-1 → 10.244.1.3 (icmp, flannel-vxlan): delivered"  # node-2's second pod

    # client and web-1 share node-1 and its podCIDR: one L2 segment behind cni0, no routing, no tunnel
    figure = redrawn(lambda: setattr(pick["from"], "value", "client"), box)
    assert figure.axes[0].get_title() == "client → 10.244.1.3 (icmp, flannel-vxlan): delivered"
    figure = redrawn(lambda: setattr(pick["to"], "value", "web-1"), box)
    assert figure.axes[0].get_title() == "client → 10.244.0.2 (icmp, flannel-vxlan): delivered"
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert not any("encapsulated" in text for text in legend)
    table = shown_text(box)
    assert "client → 10.244.0.2" in table
    assert "flannel.1" not in table and "node-1" not in table  # bridged on cni0: the node never routes it


def test_walk_explorer_needs_a_pod_to_send_from():
    c = Cluster()
    c.add_node("node-1")
    with pytest.raises(InvalidValue, match="pods"):
        walk_explorer(c)


# -- chapter 04: endpoints and probabilities ----------------------------------------------------


def test_endpoints_explorer_redraws_the_pool_as_endpoints_change():
    box, first = built(endpoints_explorer)
    assert probabilities(shown_rules(box)) == ["0.3333333333", "0.5000000000", None]
    assert sum(t.startswith("KUBE-SEP-") for t in texts(first.axes[0])) == 3

    slider = controls(box)["endpoints"]
    figure = redrawn(lambda: setattr(slider, "value", 4), box)
    rules = shown_rules(box)
    assert probabilities(rules) == ["0.2500000000", "0.3333333333", "0.5000000000", None]
    assert all(r.startswith("-A KUBE-SVC-") for r in rules)
    assert sum(t.startswith("KUBE-SEP-") for t in texts(figure.axes[0])) == 4
    assert figure.axes[0].get_title().endswith("4 ready endpoints")

    redrawn(lambda: setattr(slider, "value", 1), box)
    assert probabilities(shown_rules(box)) == [None]  # one endpoint: no random draw at all

    figure = redrawn(lambda: setattr(slider, "value", 0), box)
    rules = shown_rules(box)
    assert len(rules) == 1 and "has no endpoints" in rules[0] and rules[0].endswith("-j REJECT")
    assert "REJECT" in texts(figure.axes[0])
    assert not any(t.startswith("KUBE-SEP-") for t in texts(figure.axes[0]))


def test_endpoints_cluster_with_three_is_chapter_04s_pool():
    c = endpoints_cluster(3)
    assert [(p.name, p.node, str(p.ip)) for p in c.pods] == [
        ("web-1", "node-1", "10.244.0.2"), ("client", "node-1", "10.244.0.3"),
        ("web-2", "node-2", "10.244.1.2"), ("web-3", "node-3", "10.244.2.2")]
    with pytest.raises(InvalidValue, match="endpoints"):
        endpoints_cluster(-1)
