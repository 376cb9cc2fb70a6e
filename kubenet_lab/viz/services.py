"""Services drawn from kube-proxy's own rules: the chain graph, the load balancing, the cost per packet.

Three pictures for chapters 04 and 05, each computed by a pure function first:

* :func:`chain_graph` reads an ``iptables-restore`` input (or a parsed
  :class:`~kubenet_lab.kubeproxy.netfilter.Ruleset`) and returns the chains one
  Service goes through as a :class:`networkx.DiGraph`: ``KUBE-SERVICES`` (the
  VIP table) → ``KUBE-SVC-…`` (the pool) → ``KUBE-SEP-…`` (one real server each,
  with its DNAT), plus ``KUBE-MARK-MASQ``, ``KUBE-NODEPORTS``/``KUBE-EXT-…``/
  ``KUBE-FW-…`` when the Service has them, and the filter table's ``REJECT`` for
  a Service without endpoints. Every edge is one ``-j`` rule, labelled with what
  it matches and, in the pool, its ``--probability`` exactly as kube-proxy
  prints it. :func:`draw_chain_graph` draws it with one packet's path
  (:func:`path_edges`: from a Trace or a netfilter walk) highlighted.
* :func:`simulate_connections` opens ``n`` connections through the rules with
  seeded random draws; :func:`draw_load_balancing` puts their shares beside the
  exact probabilities.
* :func:`rules_per_packet` generates kube-proxy's rules for clusters of 10 to
  thousands of Services in its three modes (iptables, nftables, IPVS) and walks
  one packet through each, counting the rules the kernel tries;
  :func:`draw_rules_per_packet` plots the lines; :func:`draw_mode_costs` draws one
  cluster size as bars, and :func:`rules_per_packet_explorer` puts a Services slider
  in front of it (chapter 05).

>>> from kubenet_lab import Cluster
>>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
>>> g = chain_graph(c.kube_proxy("node-1").iptables_restore(), "default/web")
>>> [n for n in g if n.startswith("KUBE-SEP-")]
['KUBE-SEP-QA4PSDNF5R2OJOPA', 'KUBE-SEP-UIQK3OSOSTRHRPBX', 'KUBE-SEP-4EX2N4PG4ASNZOBF']
>>> [g.edges[e]["printed"] for e in g.out_edges("KUBE-SVC-CDGGSHYLG3RE2FKL") if e[1].startswith("KUBE-SEP-")]
['0.3333333333', '0.5000000000', None]
>>> g.nodes["KUBE-SEP-QA4PSDNF5R2OJOPA"]["dnat"]
'10.244.0.2:8080'

Introduced in chapter 04.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..kubeproxy.netfilter import Flow, NetfilterResult, Rule, Ruleset
from .style import COLORS, new_axes

if TYPE_CHECKING:
    import networkx as nx

    from ..datapath.trace import Trace

__all__ = ["chain_graph", "chain_layout", "path_edges", "draw_chain_graph", "simulate_connections",
           "draw_load_balancing", "RulesPerPacket", "scaled_ruleset", "rules_per_packet", "draw_rules_per_packet",
           "draw_mode_costs", "rules_per_packet_explorer"]

# Columns of the chain graph, left to right, by what a chain is.
KIND_COLUMN = {"entry": 0, "filter": 0, "nodeports": 1, "verdict": 1, "firewall": 2, "external": 3, "service": 4,
               "endpoint": 5, "mark": 6}
KIND_COLOR = {"entry": COLORS["service"], "nodeports": COLORS["service"], "firewall": COLORS["service"],
              "external": COLORS["service"], "service": COLORS["service"], "endpoint": COLORS["pod"],
              "mark": COLORS["underlay"], "filter": COLORS["underlay"], "verdict": COLORS["highlight"]}
VERDICTS = ("REJECT", "DROP")


def _node(table: str, chain: str) -> str:
    """Graph vertex of a chain: nat chains by their name, others as ``"<table> <chain>"``."""
    return chain if table == "nat" or chain in VERDICTS else f"{table} {chain}"


def _kind(node: str) -> str:
    if node in VERDICTS:
        return "verdict"
    if " " in node:
        return "filter"
    for prefix, kind in (("KUBE-SERVICES", "entry"), ("KUBE-NODEPORTS", "nodeports"), ("KUBE-FW-", "firewall"),
                         ("KUBE-EXT-", "external"), ("KUBE-SVC-", "service"), ("KUBE-SVL-", "service"),
                         ("KUBE-SEP-", "endpoint"), ("KUBE-MARK-MASQ", "mark")):
        if node.startswith(prefix):
            return kind
    return "mark"


def _belongs(comment: str | None, service: str) -> bool:
    """Whether a rule's comment names ``service`` (``ns/name`` or one port of it, ``ns/name:port``)."""
    if not comment:
        return False
    name = comment.split(" ", 1)[0]
    return name == service or (":" not in service and name.startswith(service + ":"))


def _match_label(rule: Rule) -> str:
    """What a rule matches, in iptables' words, without the comment and the random draw."""
    words = []
    for m in rule.matches:
        if m.option == "--probability":
            continue
        value = m.value
        if m.option in ("-s", "-d") and value.prefixlen == value.max_prefixlen:
            value = value.network_address
        if m.option == "--mark":
            value = f"{value[0]:#x}/{value[1]:#x}"
        if m.option == "--ctstate":
            value = ",".join(sorted(value))
        words.append(("! " if m.negated else "") + f"{m.option} {value}")
    return "\n".join(words)


def chain_graph(ruleset: str | Ruleset, service: str) -> nx.DiGraph:
    """The chains a packet to ``service`` can cross, one edge per ``-j`` rule, as a DiGraph.

    ``service`` is ``namespace/name`` (all its ports) or ``namespace/name:port`` (one port), as
    kube-proxy writes it in its comments. Vertices are chain names (``"filter KUBE-SERVICES"``
    for the filter table's, ``REJECT``/``DROP`` for those verdicts); a vertex has ``kind``
    (entry, nodeports, firewall, external, service, endpoint, mark, filter, verdict) and, for a
    ``KUBE-SEP-…``, ``dnat`` (``ip:port``). An edge has ``rule`` (the
    :class:`~kubenet_lab.kubeproxy.netfilter.Rule`), ``match`` (what it matches), ``printed`` (the
    ``--probability`` as kube-proxy prints it, ``None`` without one), ``probability`` (that value
    as an exact :class:`~fractions.Fraction`, 1 without one) and ``label``. Several rules between
    the same chains (two externalIPs) share an edge; ``rules`` lists them all.

    Raises :class:`~kubenet_lab.errors.NotFound` when no rule names the Service.
    """
    import networkx as nx

    rules = ruleset if isinstance(ruleset, Ruleset) else Ruleset.parse(ruleset)
    nat = rules.tables.get("nat", {})
    graph = nx.DiGraph(service=service)

    def add_edge(rule: Rule, target: str) -> None:
        u, v = _node(rule.table, rule.chain), _node(rule.table, target)
        for vertex in (u, v):
            if vertex not in graph:
                graph.add_node(vertex, kind=_kind(vertex), table=rule.table)
        probability = next((m.value for m in rule.matches if m.option == "--probability"), None)
        printed = None if probability is None else rule.text.split("--probability ", 1)[1].split()[0]
        match = _match_label(rule)
        if v == "KUBE-MARK-MASQ" and u.startswith("KUBE-SEP-"):
            match += "\n(hairpin)"
        label = match if probability is None else f"--probability {printed}"
        if probability is None and u.startswith(("KUBE-SVC-", "KUBE-SVL-")) and v.startswith("KUBE-SEP-"):
            label = "last rule: always"
        if graph.has_edge(u, v):
            edge = graph.edges[u, v]
            edge["rules"].append(rule)
            edge["label"] += "\n" + label
            return
        graph.add_edge(u, v, rule=rule, rules=[rule], match=match, label=label, printed=printed,
                       probability=Fraction(1) if probability is None else probability[0])

    pending: list[str] = []
    for entry in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        for rule in nat[entry].rules if entry in nat else ():
            if _belongs(rule.comment, service) and rule.target in nat:
                if entry == "KUBE-NODEPORTS" and not graph.has_edge("KUBE-SERVICES", "KUBE-NODEPORTS"):
                    tail = next((r for r in nat["KUBE-SERVICES"].rules if r.target == "KUBE-NODEPORTS"), None)
                    if tail is not None:
                        add_edge(tail, "KUBE-NODEPORTS")
                add_edge(rule, rule.target)
                pending.append(rule.target)
    seen = set()
    while pending:
        name = pending.pop(0)
        if name in seen or name not in nat or not name.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-",
                                                                     "KUBE-SEP-")):
            continue
        seen.add(name)
        for rule in nat[name].rules:
            if rule.target == "DNAT":
                graph.nodes[name]["dnat"] = rule.option("--to-destination")
                graph.nodes[name]["dnat_rule"] = rule
            elif rule.target in nat:
                add_edge(rule, rule.target)
                pending.append(rule.target)
    chains = rules.tables.get("filter", {})
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"):  # REJECT / DROP: no (local) endpoints
        for rule in chains[chain].rules if chain in chains else ():
            if _belongs(rule.comment, service) and rule.target in VERDICTS:
                add_edge(rule, rule.target)
    if not graph:
        raise NotFound("ruleset", "service", service, "must be named in a kube-proxy rule's comment (namespace/name)")
    return graph


def chain_layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Positions for :func:`draw_chain_graph`: a column per kind of chain, in rule order top to bottom.

    >>> import networkx as nx
    >>> g = nx.DiGraph()
    >>> g.add_node("KUBE-SERVICES", kind="entry"); g.add_node("KUBE-SVC-X", kind="service")
    >>> g.add_node("KUBE-MARK-MASQ", kind="mark")
    >>> chain_layout(g)
    {'KUBE-SERVICES': (0.0, 0.0), 'KUBE-SVC-X': (1.0, 0.0), 'KUBE-MARK-MASQ': (2.0, -1.5)}
    """
    columns: dict[int, list[str]] = {}
    for node, kind in graph.nodes(data="kind"):
        columns.setdefault(KIND_COLUMN.get(kind, max(KIND_COLUMN.values())), []).append(node)
    pos = {}
    for x, column in enumerate(sorted(columns)):
        nodes = [n for n in columns[column] if n != "KUBE-MARK-MASQ"]
        for i, node in enumerate(nodes):
            pos[node] = (float(x), (len(nodes) - 1) / 2 - i)
        if "KUBE-MARK-MASQ" in columns[column]:  # below everything else: its jumps come from all sides
            pos["KUBE-MARK-MASQ"] = (float(x), min([y for _, y in pos.values()] + [0.0]) - (1.5 if pos else 0.0))
    return pos


def _steps(path) -> list[Rule]:
    if path is None:
        return []
    if isinstance(path, NetfilterResult):
        return [s.rule for s in path.steps]
    if hasattr(path, "netfilter"):  # a Trace: the first walk through kube-proxy's rules that DNATed or refused
        results = [r for _, r in path.netfilter]
        chosen = next((r for r in results if r.dnat is not None or r.verdict in VERDICTS), None)
        return [] if chosen is None else [s.rule for s in chosen.steps]
    return [getattr(s, "rule", s) for s in path]


def path_edges(graph: nx.DiGraph, path) -> list[tuple[str, str]]:
    """The edges of ``graph`` a packet took: ``path`` is a Trace, a NetfilterResult or its steps.

    For a Trace, the first walk through kube-proxy's rules that DNATed the packet (or refused it) is
    used: on the node where the packet first met the Service.
    """
    edges = []
    for rule in _steps(path):
        if rule.target is None:
            continue
        edge = (_node(rule.table, rule.chain), _node(rule.table, rule.target))
        if graph.has_edge(*edge) and edge not in edges:
            edges.append(edge)
    return edges


def _node_label(graph, node: str) -> str:
    data = graph.nodes[node]
    if data.get("dnat"):
        return f"{node}\nDNAT → {data['dnat']}"
    if node == "KUBE-SERVICES":
        return "KUBE-SERVICES\n(nat PREROUTING, OUTPUT)"
    return node


def draw_chain_graph(graph: nx.DiGraph, path=None, ax=None, *, title: str | None = None):
    """Draw :func:`chain_graph`'s chains left to right, the packet's ``path`` (see :func:`path_edges`) in red."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    pos = chain_layout(graph)
    width = max(x for x, _ in pos.values()) + 1
    height = max(abs(y) for _, y in pos.values()) * 2 + 1
    ax = new_axes(ax, figsize=(max(9.0, 3.3 * width), max(3.6, 1.3 * height + 1.4)))
    taken = set(path_edges(graph, path))
    boxes = {}
    for node, (x, y) in pos.items():
        kind = graph.nodes[node]["kind"]
        on_path = any(node in e for e in taken)
        boxes[node] = ax.text(x, y, _node_label(graph, node), ha="center", va="center", fontsize=8,
                              fontfamily="monospace", zorder=3,
                              bbox=dict(boxstyle="round,pad=0.35", fc="white", ec=KIND_COLOR[kind],
                                        lw=2.4 if on_path else 1.2))
    ys = [y for _, y in pos.values()]
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    to_screen, to_data = ax.transData.transform, ax.transData.inverted().transform
    for u, v, data in graph.edges(data=True):
        hit = (u, v) in taken
        (x0, y0), (x1, y1) = pos[u], pos[v]
        skip = x1 - x0 > 1.01 or x1 <= x0  # crosses a column: bend around it (down when going down)
        rad = (0.3 if y1 < y0 else -0.3) if skip else 0.0
        ax.annotate("", xy=(0, 0.5) if x1 > x0 else (0.5, 1), xycoords=boxes[v],
                    xytext=(1, 0.5) if x1 > x0 else (0.5, 0), textcoords=boxes[u],
                    arrowprops=dict(arrowstyle="-|>", lw=2.4 if hit else 1.0, shrinkA=4, shrinkB=4,
                                    color=COLORS["highlight"] if hit else "#999999",
                                    connectionstyle=f"arc3,rad={rad}"), zorder=2)
        # halfway along the curve, between the chord's middle and arc3's control point (screen space)
        (sx0, sy0), (sx1, sy1) = to_screen(pos[u]), to_screen(pos[v])
        mid = tuple(to_data(((sx0 + sx1) / 2 + rad * (sy1 - sy0) / 2, (sy0 + sy1) / 2 - rad * (sx1 - sx0) / 2)))
        if not skip and y0 == y1:
            mid = (mid[0], mid[1] + 0.22)
        ax.text(*mid, data["label"], ha="center", va="center", fontsize=6.5, zorder=4, linespacing=1.1,
                color=COLORS["highlight"] if hit else "#333333",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    ax.set_axis_off()
    ax.set_title(title or f"kube-proxy's iptables chains for {graph.graph.get('service', 'a Service')}")
    handles = [Line2D([], [], color="#999999", lw=1.0, label="a rule's jump (-j)")]
    if taken:
        handles.append(Line2D([], [], color=COLORS["highlight"], lw=2.4, label="the packet's path"))
    kinds = {graph.nodes[n]["kind"] for n in graph}
    for kinds_here, text in ((("entry", "service", "external", "nodeports", "firewall"), "Service chains (VIP, pool)"),
                             (("endpoint",), "endpoint chains (DNAT)"), (("mark", "filter"), "marks, filter table"),
                             (("verdict",), "verdict")):
        if kinds & set(kinds_here):
            handles.append(Patch(fc="white", ec=KIND_COLOR[kinds_here[0]], lw=1.5, label=text))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=len(handles))
    return ax


# -- load balancing ---------------------------------------------------------------------------------


def simulate_connections(ruleset: str | Ruleset, flow: Flow, n: int = 10000, seed: int = 0,
                         local: Iterable = ()) -> dict[str | None, int]:
    """Open ``n`` connections like ``flow`` through ``ruleset`` and count where each was DNATed.

    The rules are walked once (:meth:`Ruleset.walk`), which finds every branch the ``-m statistic``
    rules can take; each connection then draws afresh at every statistic rule it reaches, with
    ``random.Random(seed)`` and the probability as printed, exactly as a seeded walk draws. The
    result maps each DNAT destination (in kube-proxy's endpoint order; ``None``: not DNATed) to its
    count, zeros included.

    >>> from kubenet_lab import Cluster
    >>> c = Cluster.load("scenarios/three-node-vxlan.yaml")
    >>> web = c.service("web").cluster_ips[0]
    >>> simulate_connections(c.kube_proxy("node-1").iptables_restore(),
    ...                      Flow("10.244.0.3", web, "tcp", 80, in_interface="cni0"), n=300)
    {'10.244.0.2:8080': 95, '10.244.1.2:8080': 96, '10.244.2.2:8080': 109}
    """
    rules = ruleset if isinstance(ruleset, Ruleset) else Ruleset.parse(ruleset)
    result = rules.walk(flow, local=local)
    # The walk's branches form a tree of decisions; a prefix's chance of going on with True is the
    # share of its probability that the True side holds: the --probability of the rule reached there.
    weight: dict[tuple, Fraction] = {}
    leaves = {}
    for branch in result.branches:
        leaves[branch.decisions] = branch.dnat
        for i in range(len(branch.decisions) + 1):
            prefix = branch.decisions[:i]
            weight[prefix] = weight.get(prefix, Fraction(0)) + branch.probability
    chance = {prefix: float(weight[(*prefix, True)] / w) for prefix, w in weight.items()
              if (*prefix, True) in weight and w}
    counts: dict[str | None, int] = {d: 0 for d in result.probabilities}
    rng = random.Random(seed)
    for _ in range(n):
        prefix: tuple = ()
        while prefix not in leaves:
            prefix = (*prefix, rng.random() < chance[prefix])
        counts[leaves[prefix]] += 1
    return counts


def draw_load_balancing(counts: Mapping[str | None, int], exact_probabilities: Mapping[str | None, Fraction],
                        ax=None, *, title: str | None = None):
    """Bars of each endpoint's simulated share beside its exact probability (a red tick; ±2 standard errors)."""
    ax = new_axes(ax)
    n = sum(counts.values())
    names = [d for d in exact_probabilities if d is not None] or list(counts)
    shares = [counts.get(d, 0) / n for d in names]
    exact = [float(exact_probabilities.get(d, 0)) for d in names]
    errors = [2 * (p * (1 - p) / n) ** 0.5 for p in exact]
    xs = range(len(names))
    ax.bar(xs, shares, width=0.6, color=COLORS["pod"], alpha=0.75, yerr=errors, capsize=6,
           error_kw=dict(ecolor="#555555", lw=1), label=f"simulated share of {n:,} connections (±2 standard errors)")
    uniform = len({round(p, 12) for p in exact}) == 1
    exact_label = f"exact probability (1/{len(names)} each)" if uniform else "exact probability"
    for x, p in zip(xs, exact):
        ax.hlines(p, x - 0.4, x + 0.4, color=COLORS["highlight"], lw=2.2, label=exact_label if x == 0 else None)
    for x, share, count in zip(xs, shares, (counts.get(d, 0) for d in names)):
        ax.text(x, share / 2, f"{count:,}\n{share:.3f}", ha="center", va="center", fontsize=9, color="white")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_xlabel("endpoint (DNAT destination)")
    ax.set_ylabel("share of new connections")
    ax.set_ylim(0, max(max(shares), max(exact)) * 1.3)
    ax.set_title(title or "kube-proxy's random choice: simulated connections vs the exact 1/n")
    ax.legend(loc="upper right")
    return ax


# -- rules evaluated per packet ---------------------------------------------------------------------


@dataclass(frozen=True)
class RulesPerPacket:
    """One cluster size of :func:`rules_per_packet`: its Services, its rules, and what packets cost.

    ``to_last_service`` counts the rules the kernel tries in iptables mode for the first packet
    of a pod's connection to the Service whose rule comes last in ``KUBE-SERVICES``;
    ``no_service`` the same for a packet from pod to pod that is no Service's (it, too, is
    compared with every rule of KUBE-SERVICES). ``nftables`` and ``ipvs`` count the first
    packet to that same Service in the other two modes: a verdict-map lookup and an
    ipset / IPVS-table lookup each count as one rule.
    """

    services: int
    rules: int
    to_last_service: int
    no_service: int
    nftables: int
    ipvs: int


CLIENT = "10.244.0.3"        # a pod on node-1, the node whose rules are walked
OTHER_POD = "10.244.200.2"   # a pod elsewhere, no Service's endpoint
NODE_IP = "192.168.0.11"


def _scaled(services: int, endpoints: int):
    """``services`` ClusterIP Services of ``endpoints`` pods each, and node-1's kube-proxy settings."""
    from ..kubeproxy import ProxierSettings
    from ..objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort

    settings = ProxierSettings("node-1", node_ips=[NODE_IP], cluster_cidrs=["10.244.0.0/16"])
    vip = int(ipaddress.ip_address("10.96.0.10"))
    pod = int(ipaddress.ip_address("10.244.1.2"))
    objects, slices = [], []
    for i in range(services):
        name = f"svc-{i}"
        objects.append(Service(name=name, namespace="default", ports=(ServicePort(80, 8080, name="http"),),
                               cluster_ips=(ipaddress.ip_address(vip + i),)))
        backends = tuple(Endpoint((ipaddress.ip_address(pod + endpoints * i + j),)) for j in range(endpoints))
        slices.append(EndpointSlice(name=f"{name}-abcde", service=name, address_type="IPv4", endpoints=backends,
                                    ports=(EndpointPort(8080, name="http"),)))
    return objects, slices, settings


def scaled_ruleset(services: int, endpoints: int = 2) -> str:
    """kube-proxy's iptables rules on node-1 for ``services`` ClusterIP Services of ``endpoints`` pods each.

    Service ``svc-i`` has ClusterIP ``10.96.0.10 + i``, port 80 → 8080; node-1 is ``192.168.0.11``,
    ``--cluster-cidr 10.244.0.0/16``.

    >>> text = scaled_ruleset(2)
    >>> sum(line.startswith("-A KUBE-SERVICES") and "cluster IP" in line for line in text.splitlines())
    2
    """
    from ..kubeproxy import iptables_restore

    return iptables_restore(*_scaled(services, endpoints))


def rules_per_packet(service_counts: Iterable[int] = (10, 100, 1000, 5000), endpoints: int = 2
                     ) -> tuple[RulesPerPacket, ...]:
    """For each number of Services, the rules the kernel evaluates for one packet, in the three modes.

    The same Services (:func:`scaled_ruleset`) are written by each mode's generator and walked
    by that mode's walk: iptables with :meth:`~kubenet_lab.kubeproxy.netfilter.Ruleset.walk`,
    nftables with :meth:`~kubenet_lab.kubeproxy.nftwalk.NftRuleset.walk`, IPVS with
    :func:`~kubenet_lab.kubeproxy.ipvs.walk_first_packet` (seed 0). Each counts every rule the
    packet is compared with, from the first hook to the last.

    >>> [(r.services, r.to_last_service, r.no_service, r.nftables, r.ipvs) for r in rules_per_packet((10, 11))]
    [(10, 25, 21, 14, 15), (11, 26, 22, 14, 15)]
    """
    from ..kubeproxy import ProxyState
    from ..kubeproxy.ipvs import sync_ipvs_rules, walk_first_packet
    from ..kubeproxy.nftables import sync_nftables_rules
    from ..kubeproxy.nftwalk import NftRuleset

    rows = []
    vip = ipaddress.ip_address("10.96.0.10")
    for count in service_counts:
        services, slices, settings = _scaled(count, endpoints)
        state = ProxyState.build(services, slices, settings, 4)
        last = vip + count - 1
        flow = Flow(CLIENT, last, "tcp", 80, in_interface="cni0")
        rules = Ruleset.parse(scaled_ruleset(count, endpoints))
        to_service = rules.walk(flow, local=[NODE_IP])
        no_service = rules.walk(Flow(CLIENT, OTHER_POD, "tcp", 8080, in_interface="cni0"), local=[NODE_IP])
        nft = NftRuleset.parse(sync_nftables_rules(state, settings)).walk(flow, local=[NODE_IP])
        ipvs = walk_first_packet(sync_ipvs_rules(state, settings), CLIENT, str(last), "tcp", 80, local=[NODE_IP])
        rows.append(RulesPerPacket(count, len(rules), to_service.evaluated, no_service.evaluated,
                                   nft.evaluated, ipvs.evaluated))
    return tuple(rows)


def draw_rules_per_packet(rows: Iterable[RulesPerPacket] | None = None, ax=None, *, title: str | None = None):
    """Rules evaluated for a new connection's first packet against the number of Services (log-log).

    iptables climbs one rule per Service (an ACL read top-down); nftables (one verdict-map
    lookup) and IPVS (ipset and virtual-server hash lookups inside a constant glue) stay flat.
    """
    rows = tuple(rules_per_packet() if rows is None else rows)
    ax = new_axes(ax)
    xs = [r.services for r in rows]
    ax.plot(xs, [r.to_last_service for r in rows], "o-", color=COLORS["highlight"], lw=2,
            label="iptables: first packet to the last Service")
    ax.plot(xs, [r.no_service for r in rows], "s--", color=COLORS["underlay"], lw=1.5,
            label="iptables: a pod-to-pod packet (no Service)")
    ax.plot(xs, [r.nftables for r in rows], "^-", color=COLORS["service"], lw=2,
            label="nftables: verdict map (one lookup)")
    ax.plot(xs, [r.ipvs for r in rows], "D-", color=COLORS["pod"], lw=2,
            label="IPVS: ipset + virtual-server lookups, constant glue")
    for r in rows:
        ax.annotate(f"{r.to_last_service:,}", (r.services, r.to_last_service), textcoords="offset points",
                    xytext=(-6, 8), ha="right", fontsize=8, color=COLORS["highlight"])
    last = rows[-1]
    for value, color in ((last.nftables, COLORS["service"]), (last.ipvs, COLORS["pod"])):
        ax.annotate(f"{value}", (last.services, value), textcoords="offset points", xytext=(6, 0),
                    va="center", fontsize=8, color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Services in the cluster (log scale)")
    ax.set_ylabel("rules evaluated for one packet (log scale)")
    ax.set_title(title or "Cost of a new connection: iptables grows with the Services, nftables and IPVS do not")
    ax.legend(loc="upper left", fontsize=8)
    return ax


MAX_EXPLORER_SERVICES = 3000


def draw_mode_costs(row: RulesPerPacket, ax=None, *, title: str | None = None):
    """One cluster size of :func:`rules_per_packet` as bars: rules a new connection meets in each mode."""
    ax = new_axes(ax)
    labels = ["iptables", "nftables", "IPVS"]
    values = [row.to_last_service, row.nftables, row.ipvs]
    bars = ax.bar(labels, values, color=[COLORS["highlight"], COLORS["service"], COLORS["pod"]])
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:,}", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=9)
    ax.set_yscale("log")
    ax.set_xlabel("kube-proxy mode")
    ax.set_ylabel("rules evaluated for the first packet (log scale)")
    ax.set_title(title or f"{row.services:,} Services: the first packet to the last one")
    return ax


def rules_per_packet_explorer(services: int = 100):
    """A slider of the number of Services, redrawing :func:`draw_mode_costs` for that cluster (chapter 05)."""
    import ipywidgets as widgets

    from .explorers import _wire

    controls = {"services": widgets.IntSlider(value=services, min=10, max=MAX_EXPLORER_SERVICES, step=10,
                                              description="Services", continuous_update=False)}

    def render(services):
        return "", draw_mode_costs(rules_per_packet((services,))[0]).figure

    return _wire(render, controls, [["services"]])
