"""MTU budgets drawn, and the model behind chapter 07's MTU explorer.

Every tunnel spends part of the underlay's IP MTU on its own headers; the
numbers come from :data:`kubenet_lab.overlay.mtu.ENCAPSULATIONS` and nowhere
else:

* :func:`draw_mtu_budget`: one bar per encapsulation, pod MTU + overhead =
  the underlay's MTU;
* :func:`draw_pod_mtu_vs_underlay`: the pod MTU against the underlay MTU for
  the main encapsulations, with the smallest MTUs IPv4 and IPv6 allow;
* :func:`mtu_explorer_model`: what happens to one packet of a given size on a
  two-node cluster of a given CNI and underlay MTU, told by the packet walk
  (:func:`kubenet_lab.datapath.trace.trace`); :func:`mtu_explorer` wires it to
  ipywidgets controls and nothing more, :func:`mtu_explorer_table` puts
  several answers side by side.

>>> v = mtu_explorer_model(1500, "flannel-vxlan", size=1450)
>>> v.verdict, v.pod_mtu, v.tunnel_mtu, v.largest
('delivered', 1450, 1450, 1500)
>>> mtu_explorer_model(1500, "flannel-vxlan", size=1451).verdict
'EMSGSIZE'
>>> v = mtu_explorer_model(1500, "flannel-vxlan", pod_mtu_override=1500, size=1500)
>>> v.verdict, v.where, v.next_hop_mtu
('frag-needed', 'node-1 flannel.1', 1450)

Introduced in chapter 07.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..overlay.modes import IPV4_MIN_MTU, IPV6_MIN_MTU, MODES
from ..overlay.mtu import ENCAPSULATIONS, pod_mtu
from ..overlay.topology import UNDERLAY_DEV
from ..tables import Table
from .style import COLORS, PALETTE, new_axes

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..datapath.trace import Trace

__all__ = ["draw_mtu_budget", "draw_pod_mtu_vs_underlay", "budget_rows", "MtuVerdict", "VERDICTS",
           "mtu_explorer_model", "mtu_explorer_table", "mtu_explorer", "EXPLORER_CLIENT", "EXPLORER_SERVER"]

# The lines of draw_pod_mtu_vs_underlay: (name in ENCAPSULATIONS, underlay IP version).
MAIN_ENCAPSULATIONS = (
    ("none: routed natively (BGP, host-gw)", 4),
    ("IP-in-IP (Calico tunl0)", 4),
    ("VXLAN (flannel, Calico, Cilium)", 4),
    ("VXLAN (flannel, Calico, Cilium)", 6),
    ("WireGuard (Cilium, flannel)", 4),
    ("WireGuard + VXLAN (Cilium)", 4),
)
_LINE_COLORS = (COLORS["underlay"], PALETTE[1], PALETTE[0], PALETTE[5], PALETTE[4], PALETTE[3])
_LINE_STYLES = ("-", "-", "-", "--", "-", "-")

# What the explorer's verdicts mean.
VERDICTS = {
    "delivered": "delivered whole",
    "fragmented": "delivered in fragments (DF clear)",
    "EMSGSIZE": "refused by the sender's own stack (DF set): ping -M do says 'message too long'",
    "frag-needed": "dropped by a forwarding node, which sends back ICMP type 3 code 4 'fragmentation needed'",
    "dropped": "dropped for another reason (see the trace)",
}
# The explorer's two-node cluster: one pod on each node, so every packet crosses the underlay.
EXPLORER_CLIENT = ("client", "node-1")
EXPLORER_SERVER = ("server", "node-2")


def _overheads() -> dict[tuple[str, int], int]:
    table: dict[tuple[str, int], int] = {}
    for name, v4, v6 in ENCAPSULATIONS:
        table[(name, 4)] = v4
        if v6 is not None:
            table[(name, 6)] = v6
    return table


def budget_rows(underlay_mtu: int = 1500, underlay_version: int = 4) -> list[tuple[str, int, int]]:
    """(encapsulation, pod MTU, overhead) for every encapsulation that exists over this underlay family.

    >>> budget_rows(1500)[0]
    ('VXLAN (flannel, Calico, Cilium)', 1450, 50)
    >>> [name for name, _, _ in budget_rows(1500, 6)].count("IP-in-IP (Calico tunl0)")
    0
    """
    if underlay_version not in (4, 6):
        from ..errors import InvalidValue

        raise InvalidValue("draw_mtu_budget", "underlay_version", underlay_version, "must be 4 or 6")
    rows = []
    for name, v4, v6 in ENCAPSULATIONS:
        overhead = v4 if underlay_version == 4 else v6
        if overhead is not None:
            rows.append((name, pod_mtu(underlay_mtu, overhead), overhead))
    return rows


def draw_mtu_budget(underlay_mtu: int = 1500, ax=None, *, underlay_version: int = 4, title: str | None = None):
    """One horizontal bar per encapsulation: the pod MTU plus the overhead fill the underlay's MTU.

    The first bar container holds the pod MTUs, the second the overheads
    (``ax.containers``), in the order of :data:`~kubenet_lab.overlay.mtu.ENCAPSULATIONS`,
    top to bottom. Encapsulations with no IPv6 form are left out of an IPv6 budget.
    """
    ax = new_axes(ax)
    rows = budget_rows(underlay_mtu, underlay_version)
    y = list(range(len(rows)))
    pods = [r[1] for r in rows]
    overheads = [r[2] for r in rows]
    ax.barh(y, pods, color=COLORS["pod"], height=0.62, label="pod MTU (what the pods may send)")
    ax.barh(y, overheads, left=pods, color=COLORS["highlight"], height=0.62,
            label="encapsulation overhead (outer headers)")
    for row, pod, overhead in zip(y, pods, overheads):
        ax.text(pod - underlay_mtu * 0.01, row, f"{pod}", ha="right", va="center", color="white",
                fontsize=9, fontweight="bold")
        ax.text(underlay_mtu * 1.01, row, f"+ {overhead} = {underlay_mtu}", ha="left", va="center",
                color=COLORS["highlight"] if overhead else COLORS["underlay"], fontsize=9)
    ax.axvline(underlay_mtu, color=COLORS["underlay"], linestyle="--", linewidth=1,
               label=f"underlay MTU ({underlay_mtu} bytes)")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, underlay_mtu * 1.2)
    ax.set_xlabel(f"bytes of the underlay's IPv{underlay_version} MTU")
    ax.set_ylabel("encapsulation")
    ax.set_title(title or f"MTU budget on a {underlay_mtu}-byte IPv{underlay_version} underlay: "
                          f"pod MTU + overhead = {underlay_mtu}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    return ax


def draw_pod_mtu_vs_underlay(ax=None, underlay_range: tuple[int, int] = (1280, 9216), *, title: str | None = None):
    """The pod MTU against the underlay MTU for the main encapsulations, with the IPv4 and IPv6 minimums.

    Each line is ``pod MTU = underlay MTU - overhead``: parallel lines, a
    constant number of bytes apart, so the share the tunnel takes shrinks on a
    jumbo-frame underlay. An inset magnifies the bottom of the range, where a
    pod MTU can fall under IPv6's 1280 bytes.
    """
    ax = new_axes(ax)
    low, high = underlay_range
    if not IPV4_MIN_MTU <= low < high:
        from ..errors import InvalidValue

        raise InvalidValue("draw_pod_mtu_vs_underlay", "underlay_range", underlay_range,
                           f"must be (low, high) with {IPV4_MIN_MTU} <= low < high")
    overheads = _overheads()
    zoom_high = min(high, low + 300)
    inset = ax.inset_axes([0.56, 0.09, 0.41, 0.42])
    for target in (ax, inset):
        for mtu in (1500, 9000):
            if low <= mtu <= high:
                target.axvline(mtu, color=COLORS["free"], linewidth=6, zorder=0)
        for (name, version), color, style in zip(MAIN_ENCAPSULATIONS, _LINE_COLORS, _LINE_STYLES):
            overhead = overheads[(name, version)]
            cost = f"- {overhead} bytes" if overhead else "no overhead"
            target.plot([low, high], [low - overhead, high - overhead], color=color, linestyle=style,
                        linewidth=1.6, label=f"{name} over IPv{version}: {cost}")
        target.axhline(IPV6_MIN_MTU, color=COLORS["underlay"], linestyle=":", linewidth=1.2,
                       label=f"IPv6 minimum MTU ({IPV6_MIN_MTU}, RFC 8200)")
        target.axhline(IPV4_MIN_MTU, color=COLORS["underlay"], linestyle="-.", linewidth=1.2,
                       label=f"IPv4 minimum MTU ({IPV4_MIN_MTU}, RFC 791)")
    ticks = [t for t in (1500, 3000, 4500, 6000, 7500, 9000) if low <= t <= high]
    if len(ticks) >= 3:  # the two underlays everyone runs, standard and jumbo, as ticks of their own
        ax.set_xticks(ticks)
    ax.set_xlim(low, high)
    ax.set_ylim(0, high)
    inset.set_xlim(low, zoom_high)
    inset.set_ylim(low - 150, zoom_high)
    inset.tick_params(labelsize=7)
    inset.set_title(f"zoom: underlay {low}-{zoom_high}", fontsize=8, fontweight="normal")
    ax.indicate_inset_zoom(inset, edgecolor=COLORS["underlay"])
    ax.set_xlabel("underlay MTU (bytes)")
    ax.set_ylabel("pod MTU (bytes)")
    ax.set_title(title or "Pod MTU against underlay MTU: each tunnel costs a fixed number of bytes")
    ax.legend(loc="upper left")
    return ax


# -- the explorer ----------------------------------------------------------------------


@dataclass(frozen=True)
class MtuVerdict:
    """What happened to one packet in the explorer's two-node cluster.

    ``pod_mtu`` is what limits the sending pod (its route's MTU if the route
    has one, as with Cilium, else its ``eth0``); ``tunnel_mtu`` the tunnel
    device's MTU on node-1 (``None`` when routed natively); ``verdict`` one of
    :data:`VERDICTS`; ``where`` the namespace and interface that decided;
    ``fragments`` and ``largest`` count the IP packets that crossed the
    underlay and the size of the largest (0 when nothing got there);
    ``trace`` is the whole walk.
    """

    cni: str
    underlay_mtu: int
    pod_mtu: int
    tunnel_mtu: int | None
    size: int
    df: bool
    verdict: str
    where: str
    next_hop_mtu: int | None
    fragments: int
    largest: int
    trace: Trace = field(compare=False, repr=False)

    @property
    def setup(self) -> str:
        device = MODES[self.cni].device
        tunnel = f", {device} MTU {self.tunnel_mtu}" if device else ""
        return f"{self.cni} on a {self.underlay_mtu}-byte underlay: pod MTU {self.pod_mtu}{tunnel}"

    @property
    def outcome(self) -> str:
        """The verdict as a sentence."""
        packet = f"a {self.size}-byte packet, DF {'set' if self.df else 'clear'}"
        if self.verdict == "delivered":
            return f"{packet}: delivered whole, {self.largest} bytes on the underlay"
        if self.verdict == "fragmented":
            return (f"{packet}: delivered in fragments, split at {self.where}; "
                    f"{self.fragments} IP packets on the underlay, the largest {self.largest} bytes")
        if self.verdict == "EMSGSIZE":
            return f"{packet}: refused at {self.where} (EMSGSIZE, 'message too long')"
        if self.verdict == "frag-needed":
            return (f"{packet}: dropped at {self.where}, which sends the sender ICMP fragmentation needed "
                    f"(type 3 code 4), next-hop MTU {self.next_hop_mtu}")
        return f"{packet}: dropped ({self.trace.reason})"

    def __str__(self) -> str:
        return f"{self.setup}\n{self.outcome}"


def _explorer_cluster(underlay_mtu: int, cni: str, pod_mtu_override: int | None,
                      tunnel_mtu_override: int | None) -> Cluster:
    from ..cluster import Cluster

    cluster = Cluster(cni=cni, ipam="calico" if cni.startswith("calico") else "host-local", mtu=underlay_mtu,
                      veth_mtu=pod_mtu_override, tunnel_mtu=tunnel_mtu_override)
    for pod, node in (EXPLORER_CLIENT, EXPLORER_SERVER):
        cluster.add_node(node)
        cluster.add_pod(pod, node=node)
    return cluster


def mtu_explorer_model(underlay_mtu: int = 1500, cni: str = "flannel-vxlan", pod_mtu_override: int | None = None,
                       size: int = 1450, df: bool = True, *, tunnel_mtu_override: int | None = None,
                       proto: str = "icmp", dport: int | None = None) -> MtuVerdict:
    """Send one ``size``-byte IP packet from a pod on node-1 to a pod on node-2, and say what happens.

    ``pod_mtu_override`` is the pods' MTU set by hand (Calico's ``veth_mtu``,
    ``overlay.vethMTU``); ``tunnel_mtu_override`` the tunnel device's
    (``overlay.tunnelMTU``, e.g. 1500 for a VXLAN device created without
    ``dev``). Everything is decided by the packet walk; this function only
    reads the verdict off its hops.
    """
    cluster = _explorer_cluster(underlay_mtu, cni, pod_mtu_override, tunnel_mtu_override)
    trace = cluster.trace(EXPLORER_CLIENT[0], EXPLORER_SERVER[0], proto=proto, dport=dport, size=size, df=df)
    topology = cluster.topology()
    sender = topology[trace.hops[0].namespace]
    route = max((r for r in sender.routes if r.matches(trace.dst)), key=lambda r: r.prefixlen)
    limit = route.mtu if route.mtu is not None else sender.interfaces[route.dev].mtu
    device = cluster.network.datapath.device
    tunnel_mtu = topology[EXPLORER_CLIENT[1]].interfaces[device].mtu if device else None
    underlay = next((h for h in trace.wire_hops
                     if h.namespace == EXPLORER_CLIENT[1] and h.interface == UNDERLAY_DEV), None)
    last = trace.hops[-1]
    fragment = next((h for h in trace.hops if h.action == "fragment"), None)
    next_hop_mtu = None
    if trace.outcome == "delivered":
        verdict = "fragmented" if fragment else "delivered"
        where = f"{fragment.namespace} {fragment.interface}" if fragment else last.namespace
    elif last.action == "icmp":
        verdict, where, next_hop_mtu = "frag-needed", f"{last.namespace} {last.interface}", last.state.inner.next_hop_mtu
    elif "EMSGSIZE" in trace.reason:
        verdict, where = "EMSGSIZE", f"{last.namespace} {last.interface}"
    else:
        verdict, where = "dropped", last.namespace
    return MtuVerdict(cni, underlay_mtu, limit, tunnel_mtu, size, df, verdict, where, next_hop_mtu,
                      underlay.state.fragments if underlay else 0, underlay.state.length if underlay else 0, trace)


def mtu_explorer_table(cases, title: str = "What happens to one packet, pod on node-1 to pod on node-2") -> Table:
    """One row per case: each case is a dict of :func:`mtu_explorer_model`'s arguments."""
    rows = []
    for case in cases:
        v = mtu_explorer_model(**case)
        rows.append((v.cni, str(v.underlay_mtu), str(v.pod_mtu), "-" if v.tunnel_mtu is None else str(v.tunnel_mtu),
                     str(v.size), "set" if v.df else "clear", v.verdict,
                     v.where if v.verdict != "delivered" else "-",
                     "-" if v.next_hop_mtu is None else str(v.next_hop_mtu),
                     f"{v.fragments} x, largest {v.largest}" if v.fragments else "nothing"))
    headers = ("CNI", "UNDERLAY MTU", "POD MTU", "TUNNEL MTU", "SIZE", "DF", "VERDICT", "DECIDED AT",
               "NEXT-HOP MTU", "ON THE UNDERLAY")
    return Table(title, headers, tuple(rows))


def mtu_explorer(underlay_mtu: int = 1500, cni: str = "flannel-vxlan", size: int = 1450, df: bool = True):
    """An ipywidgets box: underlay MTU, CNI, pod and tunnel MTU, packet size and DF, wired to
    :func:`mtu_explorer_model`; the text area below shows its verdict."""
    import ipywidgets as widgets

    from .explorers import text_explorer

    controls = {
        "underlay_mtu": widgets.IntSlider(value=underlay_mtu, min=1280, max=9216, step=1, description="underlay MTU",
                                          continuous_update=False),
        "cni": widgets.Dropdown(options=list(MODES), value=cni, description="CNI"),
        "pod_mtu": widgets.Dropdown(options=[("computed by the CNI", 0), ("1500 (set by hand)", 1500),
                                             ("9000 (set by hand)", 9000)], value=0, description="pod MTU"),
        "tunnel_mtu": widgets.Dropdown(options=[("computed by the CNI", 0), ("1500 (device made without dev)", 1500)],
                                       value=0, description="tunnel MTU"),
        "size": widgets.IntSlider(value=size, min=100, max=9216, step=1, description="packet bytes",
                                  continuous_update=False),
        "df": widgets.Checkbox(value=df, description="DF set (ping -M do)"),
    }

    def show(underlay_mtu, cni, pod_mtu, tunnel_mtu, size, df):
        return str(mtu_explorer_model(underlay_mtu, cni, pod_mtu or None, size, df,
                                      tunnel_mtu_override=tunnel_mtu or None))

    return text_explorer(show, controls, [["underlay_mtu", "cni"], ["pod_mtu", "tunnel_mtu"], ["size", "df"]])
