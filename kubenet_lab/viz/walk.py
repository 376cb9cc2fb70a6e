"""Tunnels and packet walks drawn over the cluster's topology.

Two pictures on top of :func:`~kubenet_lab.viz.topology.draw_topology`:

* :func:`draw_tunnels`: the VTEP-to-VTEP tunnels, one curved dashed line per
  pair of nodes that encapsulate to each other, read from what the agents
  programmed (``bridge fdb`` for VXLAN, the ``tunl0`` routes for IP-in-IP,
  Cilium's tunnel map), plus, with flannel's ``DirectRouting`` or Calico's
  ``CrossSubnet``, the pairs routed directly instead;
* :func:`draw_trace`: a :class:`~kubenet_lab.datapath.trace.Trace` as arrows
  from namespace to namespace, numbered by the hop that put the packet on
  the link, a different line for each kind of link.

Both read the model and the trace; the pure functions :func:`tunnels` and
:func:`trace_legs` say what is drawn, so tests and curious readers can ask
them directly. A walk from (or to) the client outside the cluster, namespace
``external``, draws it as one more box: beside the L3 fabric when there are
racks, at the end of the shared segment otherwise (:func:`external_position`).

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> [(t.a, t.b, t.kind) for t in tunnels(c)]
[('node-1', 'node-2', 'tunnel'), ('node-1', 'node-3', 'tunnel'), ('node-2', 'node-3', 'tunnel')]
>>> [(leg.hop, leg.src, leg.dst, leg.kind) for leg in trace_legs(c.trace("web-1", "web-3"), c)]
[(3, 'pod:default/web-1', 'node:node-1', 'veth'), (9, 'node:node-1', 'node:node-3', 'tunnel'), (14, 'node:node-3', 'pod:default/web-3', 'veth')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..overlay.topology import EXTERNAL, UNDERLAY_DEV
from .style import COLORS, new_axes
from .topology import draw_topology, topology_graph, topology_layout

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..datapath.trace import Trace

__all__ = ["Tunnel", "Leg", "tunnels", "trace_legs", "external_position", "draw_tunnels", "draw_trace",
           "LEG_STYLES"]

ENCAPSULATION_NAMES = {"vxlan": "VXLAN", "geneve": "Geneve", "ipip": "IP-in-IP"}
# How each kind of link is drawn in a walk, and what the legend calls it.
LEG_STYLES = {
    "veth": dict(color=COLORS["pod"], ls="-", lw=2.0, label="pod ↔ node (veth / bridge)"),
    "underlay": dict(color=COLORS["underlay"], ls="-", lw=2.2, label="underlay, routed natively (inner packet as sent)"),
    "tunnel": dict(color=COLORS["highlight"], ls="--", lw=2.2, label="underlay, encapsulated (outer headers added)"),
}
TUNNEL_STYLE = dict(color=COLORS["node"], ls="--", lw=1.6)
DIRECT_STYLE = dict(color=COLORS["underlay"], ls="-", lw=1.2)


@dataclass(frozen=True)
class Tunnel:
    """A pair of nodes and how their pods' traffic crosses between them.

    ``kind`` is ``tunnel`` (encapsulated, VTEP to VTEP through ``device``) or
    ``direct`` (routed natively between the node addresses, DirectRouting /
    CrossSubnet). ``label`` is what the drawing writes on it.
    """

    a: str
    b: str
    kind: str
    device: str | None
    label: str


@dataclass(frozen=True)
class Leg:
    """One link a walk crosses: the hop that put the packet on it, the two vertices, its kind.

    Vertices are :func:`~kubenet_lab.viz.topology.topology_graph` names
    (``node:node-1``, ``pod:default/web-1``, ``tor:rack-1``, ``fabric``);
    ``kind`` is a key of :data:`LEG_STYLES`.
    """

    hop: int
    src: str
    dst: str
    kind: str


def _tunnel_label(cluster: Cluster) -> str:
    mode = cluster.network.datapath
    if mode.encapsulation == "ipip":
        return f"{mode.device} · IP proto 4"
    vni = "identity" if mode.flow_based else str(mode.vni)
    return f"{mode.device} · VNI {vni}"


def tunnels(cluster: Cluster) -> tuple[Tunnel, ...]:
    """Every pair of nodes whose pods' traffic is encapsulated (or, with DirectRouting, routed directly).

    Read from each node's tables, as its agent programmed them: a VXLAN FDB
    entry's ``dst``, Cilium's tunnel map endpoint, an IP-in-IP route's onlink
    next hop, or a route to a remote pod prefix ``via`` the remote node's
    address on ``eth0``. Natively routed modes have no tunnels: an empty tuple.
    """
    mode = cluster.network.datapath
    if mode.encapsulation is None:
        return ()
    owner = {ip: node.name for node in cluster.nodes for ip in node.ips}
    order = {node.name: i for i, node in enumerate(cluster.nodes)}
    found: dict[tuple[str, str], Tunnel] = {}
    label = _tunnel_label(cluster)

    def add(a: str, b: str | None, kind: str, device: str | None) -> None:
        if b is None or a == b:
            return
        key = tuple(sorted((a, b), key=order.__getitem__))
        found.setdefault(key, Tunnel(key[0], key[1], kind, device, label if kind == "tunnel" else f"direct via {device}"))

    for node in cluster.nodes:
        host = cluster.host(node.name)
        for entry in host.fdb:
            add(node.name, owner.get(entry.dst), "tunnel", entry.dev)
        for entry in host.tunnel_map:
            add(node.name, owner.get(entry.endpoint), "tunnel", mode.device)
        for route in host.routes:
            if route.dst == "default" or route.via is None:
                continue
            if route.dev == mode.device and mode.encapsulation == "ipip":
                add(node.name, owner.get(route.via), "tunnel", route.dev)
            elif route.dev == UNDERLAY_DEV and route.via in owner:
                add(node.name, owner[route.via], "direct", UNDERLAY_DEV)
    return tuple(sorted(found.values(), key=lambda t: (order[t.a], order[t.b])))


def _vertex(cluster: Cluster, namespace: str) -> str | None:
    """The topology-graph vertex of a namespace of the walk."""
    if namespace.startswith("pod:"):
        return namespace
    if any(n.name == namespace for n in cluster.nodes):
        return f"node:{namespace}"
    if namespace == "spine":
        return "fabric"
    if namespace == EXTERNAL:
        return EXTERNAL
    rack = next((r for r in cluster.network.racks if r.tor == namespace), None)
    return f"tor:{rack.name}" if rack else None


def trace_legs(trace: Trace, cluster: Cluster) -> tuple[Leg, ...]:
    """The links a walk crosses, in order: one per ``transmit`` hop whose packet reached another namespace."""
    legs = []
    hops = trace.hops
    for i, hop in enumerate(hops[:-1]):
        if not hop.on_wire:
            continue
        src, dst = _vertex(cluster, hop.namespace), _vertex(cluster, hops[i + 1].namespace)
        if src is None or dst is None or src == dst:
            continue
        if src.startswith("pod:") or dst.startswith("pod:"):
            kind = "veth"
        elif hop.state.outer is not None:
            kind = "tunnel"
        else:
            kind = "underlay"
        legs.append(Leg(hop.index, src, dst, kind))
    return tuple(legs)


def external_position(cluster: Cluster) -> tuple[float, float]:
    """Where the external client goes on :func:`~kubenet_lab.viz.topology.topology_layout`'s
    drawing: right of the L3 fabric (it hangs off the spine), or at the right end of the segment."""
    pos = topology_layout(cluster)
    if cluster.network.racks:
        x, y = pos["fabric"]
        right = max(p[0] for p in pos.values())
        return max(x + 3.5, right + 1.0), y
    xs = [pos[f"node:{n.name}"][0] for n in cluster.nodes] or [0.0]
    return max(xs) + 2.5, pos["segment:underlay"][1]


def _draw_external(cluster: Cluster, ax, pos: dict) -> None:
    """The external client's box (edged as visited) and its link to the fabric or segment."""
    x, y = pos[EXTERNAL]
    address = cluster.topology().external_address
    anchor = pos["fabric"] if cluster.network.racks else (x - 1.0, y)
    ax.plot([anchor[0], x], [anchor[1], y], color=COLORS["underlay"], lw=1.5, zorder=1)
    ax.text(x, y, f"external client\n{address}", ha="center", va="center", fontsize=8, zorder=6,
            bbox=dict(boxstyle="round,pad=0.35", fc="white", ec=COLORS["highlight"], lw=2.5))
    left, right = ax.get_xlim()
    ax.set_xlim(left, max(right, x + 2.0))


def _box_height(ax) -> float:
    """Half the height of a node's box in data units (three lines of 8-point text and padding)."""
    fig = ax.figure
    y0, y1 = ax.get_ylim()
    axes_points = fig.get_figheight() * ax.get_position().height * 72
    return 24 / axes_points * (y1 - y0)


def _arc(ax, start, end, height: float, *, gid: str, **style):
    """A quadratic curve from ``start`` to ``end`` whose middle rises ``height`` data units; return its apex."""
    from matplotlib.patches import FancyArrowPatch, PathPatch
    from matplotlib.path import Path

    (xa, ya), (xb, yb) = start, end
    control = ((xa + xb) / 2, max(ya, yb) + 2 * height)
    arrow = style.pop("arrow", False)
    if arrow:
        patch = FancyArrowPatch(path=Path([start, control, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3]),
                                arrowstyle="-|>", mutation_scale=14, gid=gid, zorder=4, **style)
    else:
        patch = PathPatch(Path([start, control, end], [Path.MOVETO, Path.CURVE3, Path.CURVE3]), fill=False,
                          gid=gid, zorder=2, **style)
    ax.add_patch(patch)
    return (xa + xb) / 2, (ya + yb) / 4 + control[1] / 2


def draw_tunnels(cluster: Cluster, ax=None, *, title: str | None = None, labels: bool | None = None):
    """Draw the topology with a curved dashed line for every VTEP-to-VTEP tunnel; return the Axes.

    Each line is labelled with the tunnel device and VNI (flannel ``flannel.1
    · VNI 1``; Cilium's flow-based devices carry the source's security
    identity, ``VNI identity``; IP-in-IP has no VNI, ``tunl0 · IP proto 4``).
    Node pairs routed directly (DirectRouting / CrossSubnet) get a thin solid
    line; a natively routed cluster gets none. ``labels`` defaults to
    labelling each line when there are at most six.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from kubenet_lab import Cluster
    >>> ax = draw_tunnels(Cluster.load("scenarios/three-node-vxlan.yaml"))
    >>> len([p for p in ax.patches if p.get_gid() == "tunnel"])
    3
    """
    from matplotlib.lines import Line2D

    mode = cluster.network.datapath
    ax = new_axes(ax, figsize=(10.0, 5.5))
    found = tunnels(cluster)
    encap = ENCAPSULATION_NAMES.get(mode.encapsulation)
    if title is None:
        count = sum(t.kind == "tunnel" for t in found)
        if encap is None:
            title = f"{cluster.network.cni}: routed natively, no tunnels"
        else:
            title = f"{cluster.network.cni}: {count} {encap} tunnel{'s' if count != 1 else ''} between VTEPs"
            direct = len(found) - count
            if direct:
                title += f", {direct} node pair{'s' if direct != 1 else ''} routed directly"
    draw_topology(cluster, ax=ax, title=title)
    if not found:
        return ax
    pos = topology_layout(cluster)
    lift = _box_height(ax)
    order = {node.name: i for i, node in enumerate(cluster.nodes)}
    labels = len(found) <= 6 if labels is None else labels
    for tunnel in found:
        (xa, ya), (xb, yb) = pos[f"node:{tunnel.a}"], pos[f"node:{tunnel.b}"]
        apart = abs(order[tunnel.b] - order[tunnel.a])
        height = 0.4 + 0.45 * (apart - 1)
        # nearer pairs leave a node's top further out, so the arcs nest instead of crossing
        nudge = max(0.6 - 0.3 * (apart - 1), 0.0) * (1 if xb > xa else -1)
        style = TUNNEL_STYLE if tunnel.kind == "tunnel" else DIRECT_STYLE
        apex = _arc(ax, (xa + nudge, ya + lift), (xb - nudge, yb + lift), height, gid=tunnel.kind, **style)
        if labels:
            ax.text(*apex, tunnel.label, ha="center", va="center", fontsize=7, color=style["color"], zorder=5,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
    handles = []
    kinds = {t.kind for t in found}
    if "tunnel" in kinds:
        port = f", UDP {mode.udp_port}" if mode.udp_port else ""
        handles.append(Line2D([], [], label=f"{encap} tunnel, VTEP to VTEP ({_tunnel_label(cluster)}{port})",
                              **TUNNEL_STYLE))
    if "direct" in kinds:
        handles.append(Line2D([], [], label="same subnet: routed directly, no encapsulation", **DIRECT_STYLE))
    legend = ax.get_legend()
    old = list(legend.legend_handles) if legend is not None else []
    ax.legend(handles=old + handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    return ax


def _highlight(cluster: Cluster, ax, vertices: list[str]) -> None:
    """Redraw the boxes of the vertices a walk visits, edged in the highlight colour."""
    g = topology_graph(cluster)
    pos = topology_layout(cluster)
    sizes = {"node": 8, "pod": 7, "tor": 8, "fabric": 8}
    fills = {"node": COLORS["podcidr"]}
    for vertex in vertices:
        data = g.nodes[vertex]
        if data["kind"] not in sizes:
            continue
        ax.text(*pos[vertex], data["label"], ha="center", va="center", fontsize=sizes[data["kind"]], zorder=6,
                bbox=dict(boxstyle="round,pad=0.35", fc=fills.get(data["kind"], "white"), ec=COLORS["highlight"],
                          lw=2.5))


def draw_trace(trace: Trace, cluster: Cluster, ax=None, *, title: str | None = None):
    """Draw a packet walk over the topology: one numbered arrow per link, in hop order; return the Axes.

    The number on an arrow is the hop (in the trace's table) that put the
    packet on that link. Links between pod and node, natively routed
    underlay links and links carrying an encapsulated packet are drawn
    differently (:data:`LEG_STYLES`); the namespaces the packet visits are
    edged in red, and a drop is marked where it happened. The title gives the
    outcome.

    >>> import matplotlib; matplotlib.use("Agg")
    >>> from kubenet_lab import Cluster
    >>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
    >>> ax = draw_trace(c.trace("web-1", "web-3"), c)
    >>> len([p for p in ax.patches if p.get_gid() == "leg"]), ax.get_title()
    (3, 'web-1 → 10.244.2.2 (icmp, flannel-vxlan): delivered')
    """
    from matplotlib.lines import Line2D

    ax = new_axes(ax, figsize=(10.0, 5.5))
    if title is None:
        title = f"{trace.src} → {trace.dst} ({trace.proto}, {trace.mode}): {trace.outcome}"
    draw_topology(cluster, ax=ax, title=title)
    pos = topology_layout(cluster)
    legs = trace_legs(trace, cluster)
    visited: list[str] = []
    for hop in trace.hops:
        vertex = _vertex(cluster, hop.namespace)
        if vertex is not None and vertex not in visited:
            visited.append(vertex)
    g = topology_graph(cluster)
    sizes = {"node": 8, "pod": 7, "tor": 8, "fabric": 8}
    boxes = {v: _half_box(d["label"], sizes.get(d["kind"], 8)) for v, d in g.nodes(data=True)}
    if EXTERNAL in visited:
        pos[EXTERNAL] = external_position(cluster)
        boxes[EXTERNAL] = _half_box(f"external client\n{cluster.topology().external_address}", 8)
        _draw_external(cluster, ax, pos)
        visited.remove(EXTERNAL)
    _highlight(cluster, ax, visited)
    lift = _box_height(ax)
    for leg in legs:
        style = {k: v for k, v in LEG_STYLES[leg.kind].items() if k != "label"}
        (xa, ya), (xb, yb) = pos[leg.src], pos[leg.dst]
        both_nodes = leg.src.startswith("node:") and leg.dst.startswith("node:")
        both_pods = leg.src.startswith("pod:") and leg.dst.startswith("pod:")
        if both_nodes:  # across the shared L2 segment: up toward it and down again
            nudge = 0.3 * (1 if xb > xa else -1)
            apex = _arc(ax, (xa + nudge, ya + lift), (xb - nudge, yb + lift), 0.55, gid="leg", arrow=True, **style)
        elif both_pods:  # bridged by their node's cni0: up toward the node and down again
            top = max(ya, yb) + lift * 0.6
            node_bottom = -lift
            apex = _arc(ax, (xa, ya + lift * 0.6), (xb, yb + lift * 0.6), (node_bottom - top) / 2 - 0.1, gid="leg",
                        arrow=True, **style)
        else:
            apex = _straight(ax, (xa, ya), (xb, yb), style, (boxes[leg.src], boxes[leg.dst]))
        ax.text(*apex, str(leg.hop), ha="center", va="center", fontsize=8, fontweight="bold", zorder=7,
                color="white", bbox=dict(boxstyle="circle,pad=0.25", fc=style["color"], ec="white", lw=1))
    if trace.outcome == "dropped" and trace.hops:
        vertex = _vertex(cluster, trace.hops[-1].namespace)
        if vertex in pos:
            x, y = pos[vertex]
            ax.plot([x], [y - 0.75], marker="X", ms=16, color=COLORS["highlight"], mec="white", zorder=8, gid="drop")
    handles = [Line2D([], [], **LEG_STYLES[k]) for k in LEG_STYLES if any(leg.kind == k for leg in legs)]
    handles.append(Line2D([], [], marker="o", ls="", mfc=COLORS["underlay"], mec="white", ms=11,
                          label="n = hop that put the packet on the link"))
    if trace.outcome == "dropped":
        handles.append(Line2D([], [], marker="X", ls="", color=COLORS["highlight"], ms=11, label="dropped here"))
    legend = ax.get_legend()
    old = list(legend.legend_handles) if legend is not None else []
    ax.legend(handles=old + handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2)
    return ax


def _half_box(label: str, fontsize: float) -> tuple[float, float]:
    """Half width and half height, in points, of a vertex's box as draw_topology draws it (pad 0.35)."""
    lines = label.split("\n")
    pad = 0.35 * fontsize + 2
    return max(len(line) for line in lines) * fontsize * 0.3 + pad, len(lines) * fontsize * 0.6 + pad


def _shrink(ax, start, end, box: tuple[float, float]) -> float:
    """Points from a box's centre to its edge, along the line from ``start`` to ``end``."""
    (xa, ya), (xb, yb) = ax.transData.transform([start, end])
    dx, dy = abs(xb - xa), abs(yb - ya)
    length = math.hypot(dx, dy) or 1.0
    cos, sin = dx / length, dy / length
    half_w, half_h = box
    return min(half_w / cos if cos > 1e-9 else math.inf, half_h / sin if sin > 1e-9 else math.inf) + 3


def _straight(ax, start, end, style, boxes):
    """An arrow along a topology edge, offset a little to its side so the edge stays visible; its midpoint."""
    from matplotlib.patches import FancyArrowPatch

    (xa, ya), (xb, yb) = start, end
    length = math.hypot(xb - xa, yb - ya) or 1.0
    ox, oy = (yb - ya) / length * 0.18, -(xb - xa) / length * 0.18
    patch = FancyArrowPatch((xa + ox, ya + oy), (xb + ox, yb + oy), arrowstyle="-|>", mutation_scale=14,
                            shrinkA=_shrink(ax, start, end, boxes[0]), shrinkB=_shrink(ax, end, start, boxes[1]),
                            gid="leg", zorder=4, **style)
    ax.add_patch(patch)
    return (xa + xb) / 2 + ox, (ya + yb) / 2 + oy
