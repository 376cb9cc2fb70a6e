"""The cluster as a network diagram, and the pod CIDR as an address map.

Two pictures a network engineer draws on a whiteboard:

* :func:`draw_topology`: the underlay (one L2 segment, or a ToR per rack),
  the nodes on it with their podCIDRs, and the pods inside each node. Without
  racks it shows the "one big VLAN" view of a flat pod network; with racks it
  shows a subnet per top-of-rack switch.
* :func:`draw_address_map`: the cluster CIDR cut into node-sized slots (or
  Calico blocks), coloured by the node that holds each.

>>> from kubenet_lab import Cluster
>>> c = Cluster()
>>> _ = c.add_node("node-1", ip="192.168.0.11"); _ = c.add_pod("web-1", node="node-1")
>>> g = topology_graph(c)
>>> sorted(g.nodes(data="kind"))
[('node:node-1', 'node'), ('pod:default/web-1', 'pod'), ('segment:underlay', 'segment')]
>>> topology_layout(c)["node:node-1"]
(0.0, 0.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipaddress

import networkx as nx

from ..network import DEFAULT_NODE_SUBNET
from .style import COLORS, PALETTE, new_axes

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["topology_graph", "topology_layout", "draw_topology", "draw_address_map"]

NODE_SPACING = 4.0  # at least; widened when nodes hold many pods
POD_SPACING = 1.6


def topology_graph(cluster: Cluster) -> nx.Graph:
    """Underlay, nodes and pods as a graph; each vertex has a ``kind`` and a ``label``."""
    g = nx.Graph()
    racks = cluster.network.racks
    if racks:
        g.add_node("fabric", kind="fabric", label="L3 fabric")
        for rack in racks:
            g.add_node(f"tor:{rack.name}", kind="tor", label=f"{rack.tor}\n{rack.subnet}")
            g.add_edge("fabric", f"tor:{rack.name}")
    else:
        g.add_node("segment:underlay", kind="segment", label=f"L2 segment {_segment_subnet(cluster) or ''}".strip())
    for node in cluster.nodes:
        cidrs = ", ".join(str(c) for c in node.pod_cidrs) or "Calico blocks"
        g.add_node(f"node:{node.name}", kind="node", label=f"{node.name}\n{node.ip}\npods {cidrs}")
        g.add_edge(f"node:{node.name}", f"tor:{node.rack}" if node.rack else "segment:underlay")
        for pod in cluster.pods_on(node.name):
            g.add_node(f"pod:{pod.key}", kind="pod", label=f"{pod.name}\n{pod.ip or 'pending'}")
            g.add_edge(f"pod:{pod.key}", f"node:{node.name}")
    return g


def _segment_subnet(cluster: Cluster):
    """The shared segment's subnet: as configured, or the default one when every node is on it."""
    if cluster.network.node_subnet is not None:
        return cluster.network.node_subnet
    default = ipaddress.ip_network(DEFAULT_NODE_SUBNET)
    inside = [ip in default for n in cluster.nodes for ip in n.ips if ip.version == 4]
    return default if inside and all(inside) else None


def topology_layout(cluster: Cluster) -> dict[str, tuple[float, float]]:
    """Positions: nodes in a row at y=0, the underlay above them, each node's pods below it."""
    pos: dict[str, tuple[float, float]] = {}
    nodes = cluster.nodes
    most_pods = max((len(cluster.pods_on(n.name)) for n in nodes), default=0)
    spacing = max(NODE_SPACING, most_pods * POD_SPACING + 0.8)
    for i, node in enumerate(nodes):
        x = i * spacing
        pos[f"node:{node.name}"] = (x, 0.0)
        pods = cluster.pods_on(node.name)
        for j, pod in enumerate(pods):
            pos[f"pod:{pod.key}"] = (x + (j - (len(pods) - 1) / 2) * POD_SPACING, -2.0 - 0.35 * (j % 2))
    middle = (len(nodes) - 1) * spacing / 2 if nodes else 0.0
    if cluster.network.racks:
        for rack in cluster.network.racks:
            xs = [pos[f"node:{n}"][0] for n in rack.nodes if f"node:{n}" in pos]
            pos[f"tor:{rack.name}"] = (sum(xs) / len(xs) if xs else middle, 2.0)
        pos["fabric"] = (middle, 3.6)
    else:
        pos["segment:underlay"] = (middle, 2.0)
    return pos


def draw_topology(cluster: Cluster, ax=None, *, title: str | None = None):
    """Draw underlay, nodes (with podCIDRs) and pods; return the Axes."""
    from matplotlib.lines import Line2D

    ax = new_axes(ax)
    g = topology_graph(cluster)
    pos = topology_layout(cluster)
    if not cluster.network.racks and cluster.nodes:
        # One big VLAN: draw the shared segment as a bus across all nodes.
        xs = [pos[f"node:{n.name}"][0] for n in cluster.nodes]
        y = pos["segment:underlay"][1]
        ax.plot([min(xs) - 1.5, max(xs) + 1.5], [y, y], color=COLORS["underlay"], lw=4, zorder=1)
        ax.text(min(xs) - 1.5, y + 0.3, g.nodes["segment:underlay"]["label"], fontsize=9, color=COLORS["underlay"])
        for x in xs:
            ax.plot([x, x], [0.0, y], color=COLORS["underlay"], lw=1.5, zorder=1)
    else:
        for a, b in g.edges():
            if g.nodes[a]["kind"] != "pod" and g.nodes[b]["kind"] != "pod":
                (xa, ya), (xb, yb) = pos[a], pos[b]
                ax.plot([xa, xb], [ya, yb], color=COLORS["underlay"], lw=1.5, zorder=1)
    for a, b in g.edges():
        if "pod" in (g.nodes[a]["kind"], g.nodes[b]["kind"]):
            (xa, ya), (xb, yb) = pos[a], pos[b]
            ax.plot([xa, xb], [ya, yb], color=COLORS["pod"], lw=1, ls=":", zorder=1)
    style = {
        "node": dict(fc=COLORS["podcidr"], ec=COLORS["node"], fontsize=8),
        "pod": dict(fc="white", ec=COLORS["pod"], fontsize=7),
        "tor": dict(fc="white", ec=COLORS["tor"], fontsize=8),
        "fabric": dict(fc="white", ec=COLORS["underlay"], fontsize=8),
    }
    for vertex, data in g.nodes(data=True):
        if data["kind"] == "segment":
            continue
        s = style[data["kind"]]
        x, y = pos[vertex]
        ax.text(x, y, data["label"], ha="center", va="center", fontsize=s["fontsize"], zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", fc=s["fc"], ec=s["ec"], lw=1.5))
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 2.2, max(xs) + 2.2)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_axis_off()
    handles = [
        Line2D([], [], marker="s", ls="", mec=COLORS["node"], mfc=COLORS["podcidr"], ms=10, label="node and its podCIDR"),
        Line2D([], [], marker="o", ls="", mec=COLORS["pod"], mfc="white", ms=8, label="pod (its own IP)"),
        Line2D([], [], color=COLORS["underlay"], lw=3, label="underlay (physical network)"),
    ]
    if cluster.network.racks:
        handles.append(Line2D([], [], marker="s", ls="", mec=COLORS["tor"], mfc="white", ms=10, label="top-of-rack router"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=len(handles))
    ax.set_title(title or f"{cluster.network.name}: {len(cluster.nodes)} nodes on the underlay, pods inside")
    return ax


def draw_address_map(cluster: Cluster, ax=None, *, version: int | None = None, slots: int | None = None,
                     title: str | None = None):
    """Draw the cluster CIDR of one family as a strip of node-sized slots, coloured by owner.

    With host-local IPAM a slot is one node podCIDR (``nodeCIDRMaskSize``);
    with Calico IPAM it is one block. ``slots`` limits how many are shown
    (default: up to a few past the highest one in use).
    """
    from matplotlib.patches import Patch

    ax = new_axes(ax, figsize=(9.0, 2.6))
    version = version or cluster.network.families[0]
    cidr = cluster.network.pod_cidr(version)
    owners: dict[int, str] = {}
    if cluster.block_ipam:
        ipam = cluster.block_ipam[version]
        size = ipam.block_size
        for node in cluster.nodes:
            for block in ipam.blocks(node.name):
                owners[(int(block.network_address) - int(cidr.network_address)) >> (cidr.max_prefixlen - size)] = node.name
        unit = f"Calico block (/{size})"
    else:
        size = cluster.network.node_mask(version)
        for node in cluster.nodes:
            for pod_cidr in node.pod_cidrs:
                if pod_cidr.version == version:
                    owners[(int(pod_cidr.network_address) - int(cidr.network_address)) >> (cidr.max_prefixlen - size)] = node.name
        unit = f"node podCIDR (/{size})"
    total = 1 << (size - cidr.prefixlen)
    shown = min(total, slots if slots is not None else max(owners, default=-1) + 5)
    names = [n.name for n in cluster.nodes]
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    # On a long strip a single slot is thinner than a pixel: draw owned slots at least this wide.
    owned_width = max(1.0, shown / 250)
    labelled = shown <= 16
    for index in range(shown):
        owner = owners.get(index)
        ax.barh(0, owned_width if owner else 1, left=index, color=colour[owner] if owner else COLORS["free"],
                edgecolor="white" if shown <= 64 else "none", height=0.8, zorder=2 if owner else 1)
        if labelled:
            first = cidr.network_address + (index << (cidr.max_prefixlen - size))
            ax.text(index + 0.5, 0, f"{first}/{size}\n{owner or 'free'}", ha="center", va="center", fontsize=7)
    ax.set_xlim(0, shown)
    ax.set_yticks([])
    ax.set_xlabel(f"slot index within {cidr}: one {unit} per slot ({total} slots in all, first {shown} shown)")
    legend = [Patch(color=colour[n], label=n) for n in names if n in owners.values()]
    legend.append(Patch(color=COLORS["free"], label="free"))
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=min(len(legend), 6))
    ax.set_title(title or f"Who holds which part of {cidr}")
    return ax
