"""Every public figure of kubenet_lab.viz, rendered to PNG and held to the course's figure style.

The gallery below draws each ``draw_*``/``plot*`` function of every viz module's ``__all__`` on
chapter 02-04's three-node flannel cluster or chapter 03's two-rack BGP fabric. The functions are
discovered, not listed, so a new figure without a gallery entry fails
``test_every_public_figure_has_a_gallery_entry``. For each figure:

* it renders to a PNG that is fully opaque on the style's white face (a transparent PNG shows black
  text on JupyterLab's dark theme: jupyterlab #4172);
* every Axes has a title; an axis that shows tick labels has a label;
* an Axes with two or more labelled series (lines, bars, patches, collections) has a legend;
* every coloured (not grey) artist takes its colour from viz/style.py: a :data:`COLORS` concept,
  a :data:`PALETTE` colour, or a tint of one (mixed with white, as packet layers are shaded).

The palette itself is checked to be colour-blind safe: the concept colours are simulated for full
protanopia, deuteranopia and tritanopia with Machado, Oliveira and Fernandes (2009, IEEE TVCG
15(6), severity 1.0 matrices, applied in linear RGB) and must stay apart by CIELAB ΔE*76 ≥ 10.
"""

from __future__ import annotations

import colorsys
import importlib
import itertools
import pkgutil
from collections import Counter
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import Collection  # noqa: E402
from matplotlib.colors import to_rgb, to_rgba_array  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

import kubenet_lab.viz  # noqa: E402
from kubenet_lab import Cluster  # noqa: E402
from kubenet_lab.bgp.fabric import Fabric  # noqa: E402
from kubenet_lab.exercises.ch03 import two_rack_cluster  # noqa: E402
from kubenet_lab.kubeproxy import Flow, Ruleset  # noqa: E402
from kubenet_lab.viz.style import COLORS, PALETTE, RC  # noqa: E402

SCENARIO = "scenarios/three-node-vxlan.yaml"


def figure_functions() -> dict[str, object]:
    """``name -> function`` for every draw_*/plot* name in a viz module's __all__."""
    found = {}
    for module in pkgutil.iter_modules(kubenet_lab.viz.__path__):
        mod = importlib.import_module(f"kubenet_lab.viz.{module.name}")
        for name in getattr(mod, "__all__", ()):
            if name.startswith(("draw_", "plot")) and callable(getattr(mod, name)):
                found[name] = getattr(mod, name)
    return found


@lru_cache
def flannel() -> Cluster:
    from pathlib import Path

    return Cluster.load(Path(__file__).resolve().parent.parent / SCENARIO)


@lru_cache
def fabric() -> tuple[Fabric, Cluster]:
    cluster = two_rack_cluster()
    f = Fabric.from_cluster(cluster)
    f.converge()
    return f, cluster


def _restore() -> str:
    return flannel().kube_proxy("node-1").iptables_restore()


def _web_flow() -> Flow:
    c = flannel()
    return Flow(c.pod("client").ips[0], c.service("web").cluster_ips[0], "tcp", 80, in_interface="cni0")


def _load_balancing(draw):
    from kubenet_lab.viz.services import simulate_connections

    walk = Ruleset.parse(_restore()).walk(_web_flow(), local=["192.168.0.11"])
    return draw(simulate_connections(_restore(), _web_flow(), n=2000, seed=0, local=["192.168.0.11"]),
                walk.probabilities)


def _rules_per_packet_row():
    from kubenet_lab.viz.services import rules_per_packet

    return rules_per_packet((1000,))[0]


def _underlay_hop():
    trace = flannel().trace("web-1", "web-3")
    return next(h for h in trace.wire_hops if h.state.outer is not None)


def _chain_graph():
    from kubenet_lab.viz.services import chain_graph

    return chain_graph(_restore(), "default/web")


def _endpoints_graph():
    from kubenet_lab.viz.explorers import endpoints_cluster, endpoints_graph

    return endpoints_graph(endpoints_cluster(3))


# name -> how the course draws it. Each returns an Axes or a Figure.
GALLERY = {
    "draw_topology": lambda f: f(flannel()),
    "draw_address_map": lambda f: f(flannel()),
    "draw_tunnels": lambda f: f(flannel()),
    "draw_trace": lambda f: f(flannel().trace("web-1", "web-3"), flannel()),
    "draw_header_stack": lambda f: f(_underlay_hop()),
    "draw_mtu_budget": lambda f: f(1500),
    "draw_pod_mtu_vs_underlay": lambda f: f(),
    "draw_chain_graph": lambda f: f(_chain_graph(), flannel().trace("client", "web", proto="tcp", dport=80,
                                                                     endpoint="web-2")),
    "draw_load_balancing": _load_balancing,
    "draw_rules_per_packet": lambda f: f(),
    "draw_mode_costs": lambda f: f(_rules_per_packet_row()),
    "draw_sessions": lambda f: f(*fabric()),
    "draw_convergence": lambda f: f(Fabric.from_cluster(fabric()[1]).converge()),
    "draw_sessions_vs_size": lambda f: f(),
    "draw_podcidr_view": lambda f: f(flannel()),
    "draw_endpoints_view": lambda f: f(_endpoints_graph()),
}

FUNCTIONS = figure_functions()


@pytest.fixture(scope="module", params=sorted(set(FUNCTIONS) & set(GALLERY)))
def rendered(request, tmp_path_factory):
    """(name, Figure, path of its PNG) for one gallery entry, drawn once for all the checks."""
    drawn = GALLERY[request.param](FUNCTIONS[request.param])
    fig = drawn if isinstance(drawn, matplotlib.figure.Figure) else drawn.figure
    path = tmp_path_factory.mktemp("gallery") / f"{request.param}.png"
    fig.savefig(path)
    yield request.param, fig, path
    plt.close(fig)


def test_every_public_figure_has_a_gallery_entry():
    assert set(FUNCTIONS) == set(GALLERY), "add the new figure functions to GALLERY (or remove stale entries)"


def test_png_is_opaque_on_the_style_face(rendered):
    _, fig, path = rendered
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.shape[2] == 3 or pixels[..., 3].min() == 1.0, "transparent pixels: unreadable on a dark theme"
    assert to_rgb(fig.get_facecolor()) == to_rgb(RC["figure.facecolor"])
    assert tuple(pixels[0, 0, :3]) == pytest.approx(to_rgb(RC["savefig.facecolor"]), abs=1 / 255)


def test_every_axes_is_titled_and_its_axes_labelled(rendered):
    name, fig, _ = rendered
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.get_title() or ax.get_title("left"), f"{name}: an Axes without a title"
        if not ax.axison:
            continue  # a diagram (graph, topology): no axes to label
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            ticks = [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            if axis.get_visible() and ticks:
                assert label, f"{name}: {axis.axis_name}-axis has tick labels {ticks[:3]} but no label"


def labelled_series(ax) -> list[str]:
    labels = [a.get_label() for a in [*ax.lines, *ax.collections] if not a.get_label().startswith("_")]
    labels += [c.get_label() for c in ax.containers if not c.get_label().startswith("_")]
    labels += [p.get_label() for p in ax.patches if not p.get_label().startswith("_")]
    return sorted(set(labels))


def test_several_labelled_series_have_a_legend(rendered):
    name, fig, _ = rendered
    for ax in fig.axes:
        if len(labelled_series(ax)) >= 2:
            assert ax.get_legend() is not None or fig.legends, f"{name}: {labelled_series(ax)} but no legend"


def _is_tint(colour, base, tolerance=0.02) -> bool:
    """``colour`` == ``base`` mixed with white: c = b + (1 - b)·w, one w in [0, 1] for all channels."""
    ws = [(c - b) / (1 - b) for c, b in zip(colour, base) if b < 0.98]
    fixed = all(abs(c - b) <= tolerance for c, b in zip(colour, base) if b >= 0.98)
    return fixed and bool(ws) and max(ws) - min(ws) <= tolerance and -tolerance <= min(ws) <= 1 + tolerance


def _is_grey(rgb) -> bool:
    return colorsys.rgb_to_hsv(*rgb)[1] < 0.15


def artist_colours(fig) -> Counter:
    """Every opaque-enough colour an artist of ``fig`` paints with (text colour aside)."""
    colours = []
    for ax in fig.axes:
        for artist in ax.get_children():
            if isinstance(artist, Line2D):
                colours += [artist.get_color(), artist.get_markerfacecolor(), artist.get_markeredgecolor()]
            elif isinstance(artist, Patch) and artist is not ax.patch:
                colours += [artist.get_facecolor(), artist.get_edgecolor()]
            elif isinstance(artist, Collection):
                colours += list(artist.get_facecolor()) + list(artist.get_edgecolor())
            else:  # text: its box, and an annotation's arrow (networkx edges, session lines)
                for patch in (getattr(artist, "get_bbox_patch", lambda: None)(), getattr(artist, "arrow_patch", None)):
                    if patch is not None:
                        colours += [patch.get_facecolor(), patch.get_edgecolor()]
    rgba = [tuple(c) for c in to_rgba_array([c for c in colours if c is not None and str(c) != "none"])]
    return Counter(tuple(round(v, 3) for v in c[:3]) for c in rgba if c[3] > 0.1)


def test_coloured_artists_use_the_course_palette(rendered):
    name, fig, _ = rendered
    palette = [to_rgb(c) for c in (*COLORS.values(), *PALETTE)]
    foreign = sorted({matplotlib.colors.to_hex(c) for c in artist_colours(fig)
                      if not _is_grey(c) and not any(_is_tint(c, p) for p in palette)})
    assert not foreign, f"{name} paints with colours outside viz/style.py: {foreign}"


# -- the palette itself ---------------------------------------------------------------------------

# Machado, Oliveira and Fernandes (2009), severity 1.0, for linear RGB.
DICHROMACY = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}
DISTINCT_DELTA_E = 10  # CIE76; tab10's pod green and ToR orange were 4.6 apart for a protanope


def _linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _lab(linear_rgb) -> tuple[float, float, float]:
    """CIELAB (D65) of a linear sRGB colour (IEC 61966-2-1 matrix)."""
    r, g, b = linear_rgb
    xyz = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b, 0.2126729 * r + 0.7151522 * g + 0.0721750 * b,
           0.0193339 * r + 0.1191920 * g + 0.9503041 * b)
    f = [t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116
         for t in (xyz[0] / 0.95047, xyz[1] / 1.0, xyz[2] / 1.08883)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def seen_by(hex_colour: str, matrix) -> tuple[float, float, float]:
    linear = [_linear(c) for c in to_rgb(hex_colour)]
    return _lab([min(1.0, max(0.0, sum(m * c for m, c in zip(row, linear)))) for row in matrix])


def test_simulation_keeps_greys_and_confuses_red_with_green():
    """The matrices' rows sum to 1 (greys are fixed points), and a deuteranope sees tab10's red
    and green nearly alike: the simulation shows what it should before it judges the palette."""
    for matrix in DICHROMACY.values():
        assert all(abs(sum(row) - 1) < 1e-3 for row in matrix)
    red, green = seen_by("#d62728", DICHROMACY["deuteranopia"]), seen_by("#2ca02c", DICHROMACY["deuteranopia"])
    assert sum((a - b) ** 2 for a, b in zip(red, green)) ** 0.5 < DISTINCT_DELTA_E


@pytest.mark.parametrize("vision", DICHROMACY)
def test_concept_colours_stay_apart_for_colour_blind_readers(vision):
    concepts = {k: v for k, v in COLORS.items() if k in ("underlay", "node", "pod", "service", "tor", "highlight")}
    close = []
    for (a, ca), (b, cb) in itertools.combinations(concepts.items(), 2):
        la, lb = seen_by(ca, DICHROMACY[vision]), seen_by(cb, DICHROMACY[vision])
        distance = sum((x - y) ** 2 for x, y in zip(la, lb)) ** 0.5
        if distance < DISTINCT_DELTA_E:
            close.append((a, b, round(distance, 1)))
    assert not close, f"{vision}: {close}"
