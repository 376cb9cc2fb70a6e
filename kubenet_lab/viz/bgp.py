"""Pictures and tables of a routed cluster's BGP (chapter 03).

They read a :class:`~kubenet_lab.bgp.fabric.Fabric` and the
:class:`~kubenet_lab.bgp.fabric.Convergence` records its events return, and
compute no routing of their own:

* :func:`draw_sessions`: every router and every configured session, iBGP
  solid and eBGP dashed, green when Established and red when down, with route
  reflectors and their clients marked (optionally the path each router chose
  for one prefix);
* :func:`draw_convergence`: one event as a timeline, UPDATEs delivered per
  step (by sender) and Loc-RIB changes per step;
* :func:`sessions_vs_size` / :func:`draw_sessions_vs_size`: sessions and
  UPDATE messages against cluster size, full mesh against two route
  reflectors, measured by building and converging real fabrics;
* :func:`decision_table`, :func:`timeline_table`: a router's Loc-RIB with the
  decision step behind each best path, and an event's timeline, as tables;
* :func:`failure_model` / :func:`failure_explorer`: fail a link, a session or
  a node and watch the fabric reconverge; the widget only wires a dropdown to
  the pure :func:`failure_model`.

Calico's full mesh of three nodes: three sessions, each node sends its podCIDR to
the other two.

>>> from kubenet_lab import Cluster
>>> from kubenet_lab.bgp.fabric import Fabric
>>> c = Cluster(cni="calico-bgp", bgp_design="full-mesh")
>>> for i in (1, 2, 3):
...     _ = c.add_node(f"node-{i}")
>>> fabric = Fabric.from_cluster(c)
>>> counts = convergence_counts(fabric.converge())
>>> counts.updates, counts.by_sender
((0, 6), {'node-1': (0, 2), 'node-2': (0, 2), 'node-3': (0, 2)})
>>> [(p.nodes, p.mesh_sessions, p.rr_sessions) for p in sessions_vs_size((4, 10))]
[(4, 6, 5), (10, 45, 17)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..tables import Table
from .style import COLORS, PALETTE, new_axes
from .topology import topology_layout

if TYPE_CHECKING:
    from ..bgp.fabric import Convergence, Fabric
    from ..cluster import Cluster

__all__ = ["SESSION_UP", "SESSION_DOWN", "session_layout", "draw_sessions", "ConvergenceCounts",
           "convergence_counts", "draw_convergence", "ScalePoint", "sessions_vs_size", "scale_table",
           "draw_sessions_vs_size", "decision_table", "timeline_table", "failure_events", "failure_model",
           "failure_explorer"]

#: An Established session.
SESSION_UP = PALETTE[2]  # bluish green
#: A session that is configured but not Established (down on purpose, or its link failed).
SESSION_DOWN = COLORS["highlight"]
#: Sizes the chapter's scale figure measures.
DEFAULT_SIZES = (4, 8, 16, 24, 32, 48, 64)
_CIRCLE_SPACING = 3.2   # arc length between neighbouring nodes on the full-mesh circle


# -- sessions on the topology ---------------------------------------------------------------

def _kind(fabric: Fabric, cluster: Cluster, name: str) -> str:
    if name in {n.name for n in cluster.nodes}:
        return "node"
    if name == "spine":
        return "spine"
    if name in {r.tor for r in cluster.network.racks}:
        return "tor"
    return "external"


def session_layout(fabric: Fabric, cluster: Cluster) -> dict[str, tuple[float, float]]:
    """Positions of every router of the fabric.

    With racks: nodes where :func:`~kubenet_lab.viz.topology.topology_layout` puts
    them, ToRs above their nodes, the spine on top. Without racks: the nodes on a
    circle (in router-ID order), so the chords of a full mesh stay apart.
    External peers go to the top right.

    >>> from kubenet_lab import Cluster
    >>> from kubenet_lab.bgp.fabric import Fabric
    >>> c = Cluster(cni="calico-bgp", bgp_design="full-mesh")
    >>> for i in (1, 2, 3, 4):
    ...     _ = c.add_node(f"node-{i}")
    >>> {k: (round(x, 2), round(y, 2)) for k, (x, y) in session_layout(Fabric.from_cluster(c), c).items()}
    {'node-1': (0.0, 2.04), 'node-2': (2.04, 0.0), 'node-3': (0.0, -2.04), 'node-4': (-2.04, 0.0)}
    """
    pos: dict[str, tuple[float, float]] = {}
    names = list(fabric.speakers)
    racks = cluster.network.racks
    if racks:
        base = topology_layout(cluster)
        for node in cluster.nodes:
            if node.name in fabric.speakers:
                pos[node.name] = base[f"node:{node.name}"]
        for rack in racks:
            if rack.tor in fabric.speakers:
                pos[rack.tor] = base[f"tor:{rack.name}"]
        if "spine" in fabric.speakers:
            pos["spine"] = base["fabric"]
        top = base["fabric"][1]
    else:
        nodes = [n for n in names if _kind(fabric, cluster, n) == "node"]
        radius = max(1.0, len(nodes) * _CIRCLE_SPACING / (2 * math.pi))
        for i, name in enumerate(nodes):
            angle = math.pi / 2 - 2 * math.pi * i / max(len(nodes), 1)
            pos[name] = (round(radius * math.cos(angle), 9) + 0.0, round(radius * math.sin(angle), 9) + 0.0)
        top = radius + 1.5
    externals = [n for n in names if n not in pos]
    right = max((x for x, _ in pos.values()), default=0.0)
    for i, name in enumerate(externals):
        pos[name] = (right + 3.0 * (i + 1), top)
    return pos


def draw_sessions(fabric: Fabric, cluster: Cluster, ax=None, *, prefix: object = None, title: str | None = None):
    """Draw every router and session of ``fabric``; return the Axes.

    iBGP sessions are solid, eBGP dashed; green when Established, red and
    crossed when down. A route reflector's box is drawn thick and labelled
    "RR"; its sessions to clients end in an arrow at the client (the direction
    it reflects). With ``prefix``, each router's label also says which next hop
    and which decision step it chose for that prefix.
    """
    from ipaddress import ip_network

    from matplotlib.lines import Line2D

    ax = new_axes(ax, figsize=(9.0, 5.5))
    pos = session_layout(fabric, cluster)
    sessions = fabric.sessions()
    reflectors = {s.reflector for s in sessions if s.reflector}
    wanted = None if prefix is None else ip_network(str(prefix))
    circle = not cluster.network.racks
    for s in sessions:
        (xa, ya), (xb, yb) = pos[s.a], pos[s.b]
        colour = SESSION_UP if s.established else SESSION_DOWN
        style = "-" if s.kind == "iBGP" else "--"
        bend = 0.0 if circle or abs(ya - yb) > 1e-9 else 0.25
        ax.annotate("", xy=(xb, yb), xytext=(xa, ya), zorder=2,
                    arrowprops=dict(arrowstyle="-", color=colour, lw=1.6, ls=style, shrinkA=0, shrinkB=0,
                                    connectionstyle=f"arc3,rad={bend}"))
        if s.reflector:      # an arrowhead part-way along, pointing at the client
            (xr, yr), (xc, yc) = pos[s.reflector], pos[s.b if s.reflector == s.a else s.a]
            ax.annotate("", xy=(xr + 0.68 * (xc - xr), yr + 0.68 * (yc - yr)),
                        xytext=(xr + 0.5 * (xc - xr), yr + 0.5 * (yc - yr)), zorder=3,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=0, mutation_scale=18,
                                        shrinkA=0, shrinkB=0))
        if not s.established:
            ax.plot([(xa + xb) / 2], [(ya + yb) / 2 + (0.25 * abs(xb - xa) / 2 if bend else 0)], marker="x",
                    color=SESSION_DOWN, ms=11, mew=2.5, zorder=4)
    edge = {"node": COLORS["node"], "tor": COLORS["tor"], "spine": COLORS["underlay"], "external": COLORS["service"]}
    fill = {"node": COLORS["podcidr"], "tor": "white", "spine": "white", "external": "white"}
    for name, (x, y) in pos.items():
        speaker = fabric.speaker(name)
        kind = _kind(fabric, cluster, name)
        lines = [f"{name}{'  (RR)' if name in reflectors else ''}", f"AS {speaker.asn}", str(speaker.router_id)]
        if wanted is not None:
            decision = speaker.loc_rib.get(wanted)
            if decision is None:
                lines.append("no route")
            elif str(decision.best.next_hop) == "0.0.0.0":
                lines.append("originates it")
            else:
                lines.append(f"via {decision.best.next_hop}")
                lines.append(f"({decision.step.value})")
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=7.5, zorder=5,
                bbox=dict(boxstyle="round,pad=0.35", fc=fill[kind], ec=edge[kind],
                          lw=3.2 if name in reflectors else 1.4))
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 1.8, max(xs) + 1.8)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.set_aspect("equal" if circle else "auto")
    ax.set_axis_off()
    kinds = {s.kind for s in sessions}
    handles = [Line2D([], [], color=SESSION_UP, lw=2, ls="-" if kind == "iBGP" else "--",
                      label=f"{kind} session, Established") for kind in ("iBGP", "eBGP") if kind in kinds]
    if not all(s.established for s in sessions):
        handles.append(Line2D([], [], color=SESSION_DOWN, lw=2, marker="x", label="session down"))
    if reflectors:
        handles.append(Line2D([], [], color=SESSION_UP, lw=2, marker=">",
                              label="route reflector → client (thick box: reflector)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles))
    up = sum(s.established for s in sessions)
    ax.set_title(title or f"BGP sessions: {len(sessions)} configured, {up} Established")
    return ax


# -- convergence ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvergenceCounts:
    """Per step of one event: UPDATEs delivered (one per session crossed), by sender, and
    Loc-RIB changes. Index ``s`` is step ``s``; step 0 holds the decisions taken before any
    UPDATE was delivered (and has no UPDATEs)."""

    event: str
    updates: tuple[int, ...]
    by_sender: Mapping[str, tuple[int, ...]]
    changes: tuple[int, ...]


def convergence_counts(convergence: Convergence) -> ConvergenceCounts:
    """Count an event's UPDATEs and Loc-RIB changes per step (read off the record)."""
    steps = convergence.steps
    updates = [0] * (steps + 1)
    by_sender: dict[str, list[int]] = {}
    for sent in convergence.sent:
        updates[sent.step] += len(sent.receivers)
        by_sender.setdefault(sent.sender, [0] * (steps + 1))[sent.step] += len(sent.receivers)
    changes = [0] * (steps + 1)
    for step, _, _, _ in convergence.changes:
        changes[step] += 1
    return ConvergenceCounts(convergence.event, tuple(updates), {k: tuple(v) for k, v in by_sender.items()},
                             tuple(changes))


def draw_convergence(convergence: Convergence, ax=None, *, title: str | None = None):
    """One event as a timeline: stacked bars of the UPDATEs delivered in each step, by
    sender, and a line of the Loc-RIB changes after each step. Return the Axes."""

    ax = new_axes(ax, figsize=(9.0, 4.2))
    counts = convergence_counts(convergence)
    steps = list(range(len(counts.updates)))
    senders = PALETTE[:-1]  # the palette without black, which the Loc-RIB line uses
    bottom = [0] * len(steps)
    for i, (sender, values) in enumerate(counts.by_sender.items()):
        ax.bar(steps, values, bottom=bottom, width=0.6, color=senders[i % len(senders)], label=f"UPDATEs from {sender}",
               zorder=2)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.plot(steps, counts.changes, color="black", marker="o", lw=1.5, label="Loc-RIB changes", zorder=3)
    ax.set_xticks(steps)
    ax.set_xlabel("step (each step delivers the UPDATEs sent in the one before)")
    ax.set_ylabel("count")
    ax.grid(axis="y", color="#dddddd", zorder=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or f"{convergence.event}: {convergence.messages} UPDATEs in {convergence.steps} steps")
    return ax


# -- scale --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalePoint:
    """Sessions and UPDATEs to converge for one cluster size, full mesh and two route reflectors."""

    nodes: int
    mesh_sessions: int
    mesh_updates: int
    rr_sessions: int
    rr_updates: int
    reflectors: int = 2


def _flat_cluster(nodes: int, design: str) -> Cluster:
    from ..cluster import Cluster

    cluster = Cluster(cni="calico-bgp", bgp_design=design)
    for i in range(1, nodes + 1):
        cluster.add_node(f"node-{i}")
    return cluster


def sessions_vs_size(sizes: Iterable[int] = DEFAULT_SIZES, *, reflectors: int = 2) -> tuple[ScalePoint, ...]:
    """For each size, build a Calico cluster of that many nodes (one podCIDR each), once as a
    full mesh and once with ``reflectors`` route reflectors (nodes 1..r), converge both and
    count the sessions and the UPDATEs exchanged."""
    from ..bgp.fabric import Fabric

    points = []
    for n in sizes:
        mesh = Fabric.from_cluster(_flat_cluster(n, "full-mesh"))
        mesh_result = mesh.converge()
        rr_cluster = _flat_cluster(n, "route-reflectors")
        rr = Fabric.from_cluster(rr_cluster, route_reflectors=[f"node-{i}" for i in range(1, reflectors + 1)])
        rr_result = rr.converge()
        points.append(ScalePoint(n, mesh.session_count, mesh_result.messages, rr.session_count, rr_result.messages,
                                  reflectors))
    return tuple(points)


def scale_table(points: Iterable[ScalePoint]) -> Table:
    """The points of :func:`sessions_vs_size` as a table."""
    points = tuple(points)
    r = points[0].reflectors if points else 2
    rows = tuple((str(p.nodes), f"{p.mesh_sessions:,}", f"{p.mesh_updates:,}", f"{p.rr_sessions:,}",
                  f"{p.rr_updates:,}") for p in points)
    return Table("Sessions, and UPDATEs until converged, by cluster size",
                 ("NODES", "FULL MESH SESSIONS", "FULL MESH UPDATES", f"{r} RRs SESSIONS", f"{r} RRs UPDATES"), rows)


def draw_sessions_vs_size(points: Iterable[ScalePoint] | None = None, ax=None, *, title: str | None = None):
    """Sessions (solid) and UPDATEs to converge (dashed) against cluster size, full mesh
    and two route reflectors, on log axes. ``points`` from :func:`sessions_vs_size`."""
    points = tuple(sessions_vs_size() if points is None else points)
    ax = new_axes(ax, figsize=(9.0, 5.0))
    n = [p.nodes for p in points]
    ax.plot(n, [p.mesh_sessions for p in points], marker="o", color=COLORS["highlight"],
            label="full mesh: sessions = n(n−1)/2")
    ax.plot(n, [p.mesh_updates for p in points], marker="o", ls="--", color=COLORS["highlight"],
            label="full mesh: UPDATEs to converge")
    r = points[0].reflectors if points else 2
    formula = "2n − 3" if r == 2 else "r(n − r) + r(r − 1)/2"
    ax.plot(n, [p.rr_sessions for p in points], marker="s", color=COLORS["node"],
            label=f"{r} route reflectors: sessions = {formula}")
    ax.plot(n, [p.rr_updates for p in points], marker="s", ls="--", color=COLORS["node"],
            label=f"{r} route reflectors: UPDATEs to converge")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n)
    ax.set_xticklabels([str(x) for x in n])
    ax.set_xlabel("nodes in the cluster")
    ax.set_ylabel("count (log scale)")
    ax.grid(color="#dddddd", which="major")
    ax.legend(loc="upper left")
    ax.set_title(title or "Full mesh vs route reflectors: sessions and UPDATEs, measured")
    return ax


# -- tables ---------------------------------------------------------------------------------------

def decision_table(fabric: Fabric, router: str, prefixes: Iterable[object] | None = None) -> Table:
    """The router's Loc-RIB: per prefix the best path, its reflection attributes, the step
    that chose it and the paths it beat (with the step that removed each)."""
    from ipaddress import ip_network

    loc = fabric.speaker(router).loc_rib
    keys = list(loc) if prefixes is None else [ip_network(str(p)) for p in prefixes]
    rows = []
    for prefix in keys:
        decision = loc.get(prefix)
        if decision is None:
            rows.append((str(prefix), "-", "-", "-", "-", "-", "no route", "-"))
            continue
        best = decision.best
        local = str(best.next_hop) == "0.0.0.0"
        beaten = "; ".join(f"from {p.peer_address} ({step.value})" for p, step in decision.eliminated) or "-"
        rows.append((str(prefix), "local" if local else str(best.next_hop), "-" if local else str(best.peer_address),
                     str(best.as_path) or "(empty)", str(best.originator_id or "-"),
                     " ".join(map(str, best.cluster_list)) or "-", decision.step.value, beaten))
    return Table(f"Loc-RIB of {router}: the best path per prefix, and why",
                 ("PREFIX", "NEXT_HOP", "FROM PEER", "AS_PATH", "ORIGINATOR_ID", "CLUSTER_LIST", "CHOSEN BY",
                  "BEAT"), tuple(rows))


def timeline_table(convergence: Convergence, router: str | None = None) -> Table:
    """The event's timeline (:meth:`Convergence.timeline`) as a table."""
    rows = tuple((str(e.step), e.router, e.what) for e in convergence.timeline(router))
    return Table(str(convergence), ("STEP", "ROUTER", "WHAT"), rows)


# -- failures -------------------------------------------------------------------------------------

def failure_events(fabric: Fabric, cluster: Cluster) -> dict[str, tuple]:
    """The events the explorer offers for this fabric, label -> event: every ToR uplink
    failing, every node leaving, every node withdrawing its first prefix, every session
    going down."""
    events: dict[str, tuple] = {}
    for rack in cluster.network.racks:
        if rack.tor in fabric.speakers and "spine" in fabric.speakers:
            events[f"link {rack.tor} - spine down"] = ("link_down", rack.tor)
    for node in cluster.nodes:
        if node.name in fabric.speakers:
            events[f"{node.name} leaves"] = ("leave", node.name)
    for node in cluster.nodes:
        if node.name in fabric.speakers and fabric.speaker(node.name).originated:
            prefix = fabric.speaker(node.name).originated[0]
            events[f"{node.name} withdraws {prefix}"] = ("withdraw", node.name, prefix)
    for s in fabric.sessions():
        events[f"session {s.a} - {s.b} down"] = ("session_down", s.a, s.b)
    return events


def failure_model(cluster: Cluster, event: tuple, **options) -> tuple[Fabric, Convergence]:
    """Build the cluster's fabric (``options`` as for :meth:`Fabric.from_cluster`), converge
    it, then apply ``event`` (``("link_down", tor)``, ``("session_down", a, b)``,
    ``("leave", node)`` or ``("withdraw", node, prefix)``); return the fabric and the event's
    record. Each call starts from a fresh fabric, so calls do not interfere."""
    from ..bgp.fabric import Fabric
    from ..errors import InvalidValue

    fabric = Fabric.from_cluster(cluster, **options)
    fabric.converge()
    actions = {"link_down": fabric.link_down, "session_down": fabric.session_down, "leave": fabric.leave,
               "withdraw": fabric.withdraw}
    if not event or event[0] not in actions:
        raise InvalidValue("failure_model", "event", event, "must start with one of " + ", ".join(actions))
    return fabric, actions[event[0]](*event[1:])


def failure_explorer(cluster: Cluster, routers: Iterable[str] = (), **options):
    """An ipywidgets box: a dropdown of :func:`failure_events`, wired to :func:`failure_model`;
    the text area below shows the event's timeline and the FIBs of ``routers``."""
    import ipywidgets as widgets

    from ..bgp.fabric import Fabric
    from .explorers import text_explorer

    base = Fabric.from_cluster(cluster, **options)
    events = failure_events(base, cluster)
    choice = widgets.Dropdown(options=list(events), description="fail", layout=widgets.Layout(width="60%"))

    def show(label):
        fabric, result = failure_model(cluster, events[label], **options)
        return timeline_table(result).text() + "".join(
            f"\n\n$ ip route (BGP) on {router}\n" + "\n".join(fabric.routes(router))
            for router in routers if router in fabric.speakers)

    return text_explorer(show, {"label": choice}, [["label"]])
